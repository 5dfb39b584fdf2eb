package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/orderly/orderly/internal/lease"
)

// The lease tables: one row per (processor, partition) and one per
// (processor, member). Times are Unix nanoseconds of this host's clock,
// read inside the write transaction: every instance sharing the file runs
// on this host (WAL needs shared memory), so they share one clock, and the
// write lock orders each reading of it with the write it decides.
const leaseDDL = `CREATE TABLE IF NOT EXISTS leases (
	processor TEXT NOT NULL,
	partition INTEGER NOT NULL,
	owner TEXT NOT NULL DEFAULT '',
	epoch INTEGER NOT NULL DEFAULT 0,
	expires_ns INTEGER NOT NULL DEFAULT 0,
	commit_pos INTEGER NOT NULL DEFAULT 0,
	prepare_pos INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (processor, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lease_members (
	processor TEXT NOT NULL,
	owner TEXT NOT NULL,
	expires_ns INTEGER NOT NULL,
	PRIMARY KEY (processor, owner)
) WITHOUT ROWID`

// SetupLeases implements lease.Store.
func (s *Store) SetupLeases(ctx context.Context, processor string, n int) error {
	if n <= 0 {
		return fmt.Errorf("set up leases of %s: %d partitions", processor, n)
	}
	err := s.write(ctx, func(tx *dbTx) error {
		var have int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM leases WHERE processor = ?`, processor).Scan(&have); err != nil {
			return err
		}
		if have == n {
			return nil
		}
		if have != 0 {
			return fmt.Errorf("%d partitions stored, %d asked: %w", have, n, lease.ErrPartitions)
		}
		for p := range n {
			if _, err := tx.ExecContext(ctx, `INSERT INTO leases (processor, partition) VALUES (?, ?)`, processor, p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set up leases of %s: %w", processor, err)
	}
	return nil
}

// ScanLeases implements lease.Store.
func (s *Store) ScanLeases(ctx context.Context, processor string) (lease.Snapshot, error) {
	var snap lease.Snapshot
	err := s.read(ctx, func(tx *dbTx) error {
		snap = lease.Snapshot{Now: time.Now()}
		rows, err := tx.QueryContext(ctx, `SELECT partition, owner, epoch, expires_ns, commit_pos, prepare_pos
			FROM leases WHERE processor = ? ORDER BY partition`, processor)
		if err != nil {
			return err
		}
		for rows.Next() {
			var l lease.Lease
			var expires int64
			if err := rows.Scan(&l.Partition, &l.Owner, &l.Epoch, &expires, &l.Checkpoint.Commit, &l.Checkpoint.Prepare); err != nil {
				_ = rows.Close()
				return err
			}
			l.Expires = time.Unix(0, expires)
			snap.Leases = append(snap.Leases, l)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		rows, err = tx.QueryContext(ctx, `SELECT owner, expires_ns FROM lease_members
			WHERE processor = ? AND expires_ns > ? ORDER BY owner`, processor, snap.Now.UnixNano())
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var m lease.Member
			var expires int64
			if err := rows.Scan(&m.Owner, &expires); err != nil {
				return err
			}
			m.Expires = time.Unix(0, expires)
			snap.Members = append(snap.Members, m)
		}
		return rows.Err()
	})
	if err != nil {
		return lease.Snapshot{}, fmt.Errorf("scan leases of %s: %w", processor, err)
	}
	return snap, nil
}

// Heartbeat implements lease.Store. Members that expired without leaving
// (their process died) are deleted on the way, so the table holds only the
// recent ones.
func (s *Store) Heartbeat(ctx context.Context, processor, owner string, ttl time.Duration) error {
	err := s.write(ctx, func(tx *dbTx) error {
		now := time.Now()
		if _, err := tx.ExecContext(ctx, `DELETE FROM lease_members WHERE processor = ? AND expires_ns <= ?`, processor, now.UnixNano()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO lease_members (processor, owner, expires_ns) VALUES (?, ?, ?)
			ON CONFLICT (processor, owner) DO UPDATE SET expires_ns = excluded.expires_ns`, processor, owner, now.Add(ttl).UnixNano())
		return err
	})
	if err != nil {
		return fmt.Errorf("heartbeat of %s in %s: %w", owner, processor, err)
	}
	return nil
}

// Leave implements lease.Store.
func (s *Store) Leave(ctx context.Context, processor, owner string) error {
	err := s.write(ctx, func(tx *dbTx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM lease_members WHERE processor = ? AND owner = ?`, processor, owner)
		return err
	})
	if err != nil {
		return fmt.Errorf("leave of %s from %s: %w", owner, processor, err)
	}
	return nil
}

// Claim implements lease.Store.
func (s *Store) Claim(ctx context.Context, processor string, p int, owner string, seen lease.Epoch, ttl time.Duration) (lease.Lease, error) {
	if owner == "" {
		return lease.Lease{}, fmt.Errorf("claim of %s partition %d: no owner", processor, p)
	}
	l := lease.Lease{Partition: p, Owner: owner}
	err := s.write(ctx, func(tx *dbTx) error {
		now := time.Now()
		var expires int64
		err := tx.QueryRowContext(ctx, `UPDATE leases SET owner = ?, epoch = epoch + 1, expires_ns = ?
			WHERE processor = ? AND partition = ? AND epoch = ? AND (owner = '' OR expires_ns <= ?)
			RETURNING epoch, expires_ns, commit_pos, prepare_pos`,
			owner, now.Add(ttl).UnixNano(), processor, p, seen, now.UnixNano()).
			Scan(&l.Epoch, &expires, &l.Checkpoint.Commit, &l.Checkpoint.Prepare)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("held, or claimed since epoch %d: %w", seen, lease.ErrTaken)
		}
		l.Expires = time.Unix(0, expires)
		return err
	})
	if err != nil {
		return lease.Lease{}, fmt.Errorf("claim of %s partition %d for %s: %w", processor, p, owner, err)
	}
	return l, nil
}

// heldBy is the condition that owner holds each of held at its epoch (the
// expiry aside), and its arguments: one row-value IN over all of them, so
// a fence of 16 partitions is one statement.
func heldBy(processor, owner string, held map[int]lease.Epoch) (string, []any) {
	args := []any{processor, owner}
	rows := make([]string, 0, len(held))
	for _, p := range slices.Sorted(maps.Keys(held)) {
		rows = append(rows, "(?, ?)")
		args = append(args, p, held[p])
	}
	return `processor = ? AND owner = ? AND (partition, epoch) IN (VALUES ` + strings.Join(rows, ", ") + `)`, args
}

// lostOf returns the partitions of held not in kept, in order.
func lostOf(held map[int]lease.Epoch, kept []int) []int {
	var lost []int
	for _, p := range slices.Sorted(maps.Keys(held)) {
		if !slices.Contains(kept, p) {
			lost = append(lost, p)
		}
	}
	return lost
}

// partitionsOf runs query, which returns partition numbers.
func partitionsOf(ctx context.Context, q querier, query string, args ...any) ([]int, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var p int
		if err := rows.Scan(&p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Renew implements lease.Store.
func (s *Store) Renew(ctx context.Context, processor, owner string, held map[int]lease.Epoch, ttl time.Duration) ([]int, error) {
	if len(held) == 0 {
		return nil, nil
	}
	var lost []int
	err := s.write(ctx, func(tx *dbTx) error {
		cond, args := heldBy(processor, owner, held)
		renewed, err := partitionsOf(ctx, tx, `UPDATE leases SET expires_ns = ? WHERE `+cond+` RETURNING partition`,
			append([]any{time.Now().Add(ttl).UnixNano()}, args...)...)
		lost = lostOf(held, renewed)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("renew of %s leases for %s: %w", processor, owner, err)
	}
	return lost, nil
}

// Release implements lease.Store.
func (s *Store) Release(ctx context.Context, processor, owner string, held map[int]lease.Epoch) error {
	if len(held) == 0 {
		return nil
	}
	err := s.write(ctx, func(tx *dbTx) error {
		cond, args := heldBy(processor, owner, held)
		_, err := tx.ExecContext(ctx, `UPDATE leases SET owner = '', expires_ns = ? WHERE `+cond,
			append([]any{time.Now().UnixNano()}, args...)...)
		return err
	})
	if err != nil {
		return fmt.Errorf("release of %s leases for %s: %w", processor, owner, err)
	}
	return nil
}

// SaveCheckpoint implements lease.Store. Positions compare as (commit,
// prepare) pairs, so the stored one only moves forward, as a whole.
func (s *Store) SaveCheckpoint(ctx context.Context, processor, owner string, p int, e lease.Epoch, pos lease.Position) error {
	err := s.write(ctx, func(tx *dbTx) error {
		res, err := tx.ExecContext(ctx, `UPDATE leases SET
			commit_pos = CASE WHEN (?1, ?2) > (commit_pos, prepare_pos) THEN ?1 ELSE commit_pos END,
			prepare_pos = CASE WHEN (?1, ?2) > (commit_pos, prepare_pos) THEN ?2 ELSE prepare_pos END
			WHERE processor = ?3 AND partition = ?4 AND owner = ?5 AND epoch = ?6`,
			pos.Commit, pos.Prepare, processor, p, owner, e)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return errors.Join(err, fmt.Errorf("not held at epoch %d: %w", e, lease.ErrLost))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("save checkpoint of %s partition %d for %s: %w", processor, p, owner, err)
	}
	return nil
}
