// Package sqlite keeps the views in an embedded SQLite database
// (modernc.org/sqlite, pure Go): the all-in-one default.
//
// Each version of a view is a table holding the document as JSON (package
// stored) beside indexed copies of the fields it is looked up, filtered and
// sorted by. The version pointer and checkpoints live in views_state. Every
// write is one transaction — a batch's documents with its checkpoint, a
// switch with the drop of the old version — and every read is one read
// transaction, which in WAL mode is a snapshot: a reader sees a version
// either whole and live or not at all, while the writer goes on.
//
// Several processes may open the same file (the running system and an
// `orderly rebuild`); SQLite's locks order their writes.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/lease"
	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/stored"
)

// Store is a views.Store on one SQLite file.
type Store struct {
	// w has one connection: writes queue here rather than spin on SQLite's
	// busy handler. Its transactions begin IMMEDIATE, taking the write lock
	// up front, so two writers never deadlock upgrading a read lock.
	w *sql.DB
	// r serves reads (and the projection's loads) in parallel.
	r *sql.DB
	// wStmts and rStmts keep the statements prepared on w and r.
	wStmts, rStmts *stmtCache
	// c checkpoints the WAL into the database file, beside the writer
	// (see checkpoints); dirty (capacity 1) tells it a write committed.
	c     *sql.DB
	dirty chan struct{}
	// restartAt is the WAL length, in frames, past which the checkpointer
	// restarts the WAL (restartFrames; tests lower it).
	restartAt int
	stop      context.CancelFunc
	done      chan struct{}
}

var _ views.Store = (*Store)(nil)

// readers bounds the read connections; reads are short and WAL lets them
// run beside the writer.
const readers = 4

// Open opens (creating if needed) the database at path and makes sure every
// view has a live version.
func Open(ctx context.Context, path string) (*Store, error) {
	return open(ctx, path, restartFrames)
}

// open is Open with the WAL length at which the checkpointer restarts the
// WAL (see checkpoint).
func open(ctx context.Context, path string, restartAt int) (*Store, error) {
	// busy_timeout covers another process holding the write lock (a rebuild
	// beside the running system); synchronous=NORMAL in WAL mode loses no
	// committed transaction when the process dies, only on power loss, and
	// a lost batch is re-applied from the checkpoint stored with it.
	q := url.Values{}
	q.Set("_busy_timeout", "10000")
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	// No connection maps the database file. A reader's page cache is
	// dropped whenever another connection has committed, which under a
	// steady load is before nearly every read, and SQLite then unmaps a
	// mapped file whole, to map it again at its new size: a munmap per read
	// transaction, for which the kernel also interrupts the other cores
	// running the process to flush their address translations. Reading the
	// few pages a lookup needs with a pread each costs less: with the map,
	// write-to-visible at 1,000 orders/s had about twice the median and up
	// to 1.5× the p99 (BENCHMARKS.md, "Reading the views without a mapped
	// file"). Set explicitly, whatever the build's default.
	q.Add("_pragma", "mmap_size(0)")
	// The writer's page cache (256 MiB at most, taken as pages are used)
	// keeps a large view's B-tree interior in memory while a rebuild
	// inserts into it; readers keep SQLite's small default.
	// temp_store=MEMORY keeps the writer's statement journals in memory: a
	// multi-row upsert journals every page it touches, a batch's worth is
	// past SQLite's 64 KiB spill threshold, and spilled it went to a temp
	// file through one write call per page and per 4-byte page number —
	// about a quarter of the projector's write time at 1,000 orders/s.
	w, err := sql.Open("sqlite", path+"?"+q.Encode()+"&_txlock=immediate&_pragma=cache_size(-262144)&_pragma=temp_store(memory)&_pragma=wal_autocheckpoint("+strconv.Itoa(backstopFrames)+")")
	if err != nil {
		return nil, fmt.Errorf("open sqlite views %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	q.Del("_journal_mode") // set once, by the writer; readers must not race to change it
	r, err := sql.Open("sqlite", path+"?"+q.Encode()+"&_query_only=1")
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("open sqlite views %s: %w", path, err)
	}
	r.SetMaxOpenConns(readers)
	r.SetMaxIdleConns(readers)
	// The checkpointer waits for a lock only in a restart, holding the
	// writer's connection: restartWait bounds that, not busy_timeout.
	q.Set("_busy_timeout", strconv.Itoa(int(restartWait.Milliseconds())))
	c, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		_ = errors.Join(r.Close(), w.Close())
		return nil, fmt.Errorf("open sqlite views %s: %w", path, err)
	}
	c.SetMaxOpenConns(1)
	bg, stop := context.WithCancel(context.Background())
	s := &Store{w: w, r: r, c: c, wStmts: newStmtCache(w), rStmts: newStmtCache(r), dirty: make(chan struct{}, 1), restartAt: restartAt, stop: stop, done: make(chan struct{})}
	go s.checkpoints(bg)
	if err := s.init(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("open sqlite views %s: %w", path, err)
	}
	return s, nil
}

// Close stops the checkpointer and closes the database.
func (s *Store) Close() error {
	s.stop()
	<-s.done
	s.wStmts.close()
	s.rStmts.close()
	return errors.Join(s.c.Close(), s.r.Close(), s.w.Close())
}

// restartFrames is the WAL length, in frames (pages: 32 MiB), past which
// the checkpointer restarts the WAL from its start. SQLite reuses the WAL
// only from a write that finds every frame of it copied into the database,
// which a checkpointer racing a busy writer never leaves: under steady
// writes the WAL only grows, until something copies its last frames with
// no write in between.
const restartFrames = 8192

// backstopFrames is the writer's own auto-checkpoint threshold, in frames
// (128 MiB): it bounds the WAL only if the checkpointer fails or cannot
// restart it. When the writer checkpoints, it does so inside the commit
// that took the WAL past the threshold, copying what the checkpointer has
// not and syncing both files — a stall of 15–85 ms of that batch, and of
// every write and min_position read behind it, once a second at 1,000
// orders/s when this was the only way the WAL restarted — and again in
// every commit after it until the WAL restarts.
const backstopFrames = 4 * restartFrames

// checkpointPause spaces the checkpointer's runs: each copies the pages
// written since the last one back into the database file and syncs it, so
// a page rewritten by several batches in between is copied once.
const checkpointPause = 100 * time.Millisecond

// checkpointTimeout bounds one checkpoint.
const checkpointTimeout = 30 * time.Second

// restartWait bounds how long a restart waits for another process's write
// or for readers still on the WAL; the writer waits that long at most.
// Readers of this process hold the WAL for well under a millisecond.
const restartWait = 20 * time.Millisecond

// checkpoints copies the WAL into the database file after writes, on its
// own connection. SQLite's default has the writer do it inside the commit
// that takes the WAL past 1,000 pages, stalling that batch — and every
// write and min_position read queued behind it — for the copy and an
// fsync; a PASSIVE checkpoint here runs beside the writer and the readers
// and blocks neither.
func (s *Store) checkpoints(ctx context.Context) {
	defer close(s.done)
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.dirty:
		}
		if _, err := s.checkpoint(ctx); err != nil && ctx.Err() == nil {
			slog.Warn("sqlite views: checkpoint failed; the writer's backstop checkpoints instead", "err", err)
		}
		pause.Reset(checkpointPause)
		select {
		case <-ctx.Done():
			return
		case <-pause.C:
		}
	}
}

// checkpoint copies the WAL into the database file (PASSIVE: beside the
// writer and the readers) and, once the WAL is restartAt frames long,
// restarts it between two writes. The restart holds the writer's only
// connection, so nothing commits while it copies what came during the
// first copy (a few milliseconds of writes), syncs both files and waits
// for readers still on the WAL (restartWait at most); the writer's next
// commit then writes the WAL from its start. It reports whether the WAL
// was restarted.
func (s *Store) checkpoint(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, checkpointTimeout)
	defer cancel()
	var busy, frames, copied int
	if err := s.c.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied); err != nil {
		return false, fmt.Errorf("checkpoint: %w", err)
	}
	if frames < s.restartAt {
		return false, nil
	}
	w, err := s.w.Conn(ctx)
	if err != nil {
		return false, fmt.Errorf("restart the WAL: take the writer: %w", err)
	}
	defer func() { _ = w.Close() }()
	// Busy: another process writing, or a reader slower than restartWait;
	// the next run tries again.
	if err := s.c.QueryRowContext(ctx, `PRAGMA wal_checkpoint(RESTART)`).Scan(&busy, &frames, &copied); err != nil {
		return false, fmt.Errorf("restart the WAL: %w", err)
	}
	return busy == 0, nil
}

func (s *Store) init(ctx context.Context) error {
	return s.write(ctx, func(tx *dbTx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS views_state (
			view TEXT PRIMARY KEY,
			live INTEGER NOT NULL,
			live_checkpoint INTEGER NOT NULL DEFAULT 0,
			building INTEGER NOT NULL DEFAULT 0,
			building_checkpoint INTEGER NOT NULL DEFAULT 0
		)`); err != nil {
			return err
		}
		// The checkpoints fenced batches write, per partition of the
		// projector's leases, for live versions only (see Apply).
		if _, err := tx.ExecContext(ctx, leaseDDL+`;
		CREATE TABLE IF NOT EXISTS views_partitions (
			view TEXT NOT NULL,
			version INTEGER NOT NULL,
			partition INTEGER NOT NULL,
			checkpoint INTEGER NOT NULL,
			PRIMARY KEY (view, version, partition)
		) WITHOUT ROWID`); err != nil {
			return err
		}
		// A table of its own, not a column of views_state: databases made
		// before pauses were kept open without a migration.
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS views_paused (view TEXT PRIMARY KEY)`); err != nil {
			return err
		}
		for _, v := range views.All() {
			res, err := tx.ExecContext(ctx, `INSERT INTO views_state (view, live) VALUES (?, 1) ON CONFLICT (view) DO NOTHING`, string(v))
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				if err := createVersion(ctx, tx, views.Target{View: v, Version: 1}, true); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// write runs fn in a write transaction.
func (s *Store) write(ctx context.Context, fn func(*dbTx) error) error {
	sqlTx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	tx := &dbTx{Tx: sqlTx, stmts: s.wStmts}
	defer func() { s.wStmts.keep(ctx, tx.met) }() // once the connection is free
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	select {
	case s.dirty <- struct{}{}:
	default: // a checkpoint is already due
	}
	return nil
}

// read runs fn in a read transaction: one snapshot of the database.
func (s *Store) read(ctx context.Context, fn func(*dbTx) error) error {
	sqlTx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	tx := &dbTx{Tx: sqlTx, stmts: s.rStmts}
	defer func() {
		_ = tx.Rollback()
		s.rStmts.keep(ctx, tx.met)
	}()
	return fn(tx)
}

// querier is what *sql.Tx and *sql.DB share.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func state(ctx context.Context, q querier, v views.View) (views.State, error) {
	var st views.State
	err := q.QueryRowContext(ctx, `SELECT live, live_checkpoint, building, building_checkpoint,
		EXISTS (SELECT 1 FROM views_paused p WHERE p.view = s.view) FROM views_state s WHERE view = ?`, string(v)).
		Scan(&st.Live, &st.LiveCheckpoint, &st.Building, &st.BuildingCheckpoint, &st.Paused)
	if err != nil {
		return st, fmt.Errorf("state of view %s: %w", v, err)
	}
	return st, nil
}

// liveState is state with the live version's partitions (views.State.Partitions).
func liveState(ctx context.Context, q querier, v views.View) (views.State, error) {
	st, err := state(ctx, q, v)
	if err != nil {
		return st, err
	}
	rows, err := q.QueryContext(ctx, `SELECT coalesce(vp.checkpoint, 0) FROM leases l
		LEFT JOIN views_partitions vp ON vp.view = ? AND vp.version = ? AND vp.partition = l.partition
		WHERE l.processor = ? ORDER BY l.partition`, string(v), st.Live, views.LeaseProcessor)
	if err != nil {
		return st, fmt.Errorf("partitions of view %s: %w", v, err)
	}
	defer rows.Close()
	own := st.LiveCheckpoint
	for rows.Next() {
		var cp uint64
		if err := rows.Scan(&cp); err != nil {
			return st, fmt.Errorf("partitions of view %s: %w", v, err)
		}
		cp = max(cp, own)
		if len(st.Partitions) == 0 || cp < st.LiveCheckpoint {
			st.LiveCheckpoint = cp
		}
		st.Partitions = append(st.Partitions, cp)
	}
	return st, rows.Err()
}

// writable returns t's checkpoint column, or ErrStale.
func writable(ctx context.Context, q querier, t views.Target) (string, error) {
	st, err := state(ctx, q, t.View)
	if err != nil {
		return "", err
	}
	switch t.Version {
	case st.Live:
		return "live_checkpoint", nil
	case st.Building:
		return "building_checkpoint", nil
	}
	return "", fmt.Errorf("%s version %d (live %d, building %d): %w", t.View, t.Version, st.Live, st.Building, views.ErrStale)
}

// createVersion creates the tables of version t. The secondary indexes of a
// shadow are left to createIndexes at its switch: building an index over a
// full table is several times cheaper than maintaining it through every
// upsert of a rebuild, and nothing reads a shadow through them.
func createVersion(ctx context.Context, tx *dbTx, t views.Target, indexes bool) error {
	name := stored.Table(t.View, t.Version)
	var ddl []string
	switch t.View {
	case views.Orders:
		ddl = []string{`CREATE TABLE %[1]s (order_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status INTEGER NOT NULL,
			created_ns INTEGER NOT NULL, revision INTEGER NOT NULL, doc BLOB NOT NULL) WITHOUT ROWID`}
	case views.Customers:
		ddl = []string{`CREATE TABLE %[1]s (customer_id TEXT PRIMARY KEY, registered_position INTEGER NOT NULL,
			revision INTEGER NOT NULL, doc BLOB NOT NULL) WITHOUT ROWID`}
	default:
		return fmt.Errorf("unknown view %q", t.View)
	}
	ddl = append(ddl, `CREATE TABLE %[1]s`+stored.DeadLetterSuffix+` (event_id TEXT PRIMARY KEY, position INTEGER NOT NULL,
		doc BLOB NOT NULL) WITHOUT ROWID`)
	for _, stmt := range ddl {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(stmt, name)); err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
	}
	if indexes {
		return createIndexes(ctx, tx, t)
	}
	return nil
}

// createIndexes creates the secondary indexes of version t if missing.
func createIndexes(ctx context.Context, tx *dbTx, t views.Target) error {
	name := stored.Table(t.View, t.Version)
	var ddl []string
	switch t.View {
	case views.Orders:
		// One index per filter ListOrders offers, each ending in the sort
		// keys, so every listing is an index range read in order.
		ddl = []string{
			`CREATE INDEX IF NOT EXISTS %[1]s_customer_status ON %[1]s (customer_id, status, created_ns, order_id)`,
			`CREATE INDEX IF NOT EXISTS %[1]s_customer ON %[1]s (customer_id, created_ns, order_id)`,
			`CREATE INDEX IF NOT EXISTS %[1]s_status ON %[1]s (status, created_ns, order_id)`,
			`CREATE INDEX IF NOT EXISTS %[1]s_created ON %[1]s (created_ns, order_id)`,
		}
	case views.Customers:
		ddl = []string{`CREATE UNIQUE INDEX IF NOT EXISTS %[1]s_registered ON %[1]s (registered_position)`}
	}
	ddl = append(ddl, `CREATE INDEX IF NOT EXISTS %[1]s`+stored.DeadLetterSuffix+`_position ON %[1]s`+stored.DeadLetterSuffix+` (position)`)
	for _, stmt := range ddl {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(stmt, name)); err != nil {
			return fmt.Errorf("index %s: %w", name, err)
		}
	}
	return nil
}

// dropExcept drops every table of view v whose version is not in keep.
func dropExcept(ctx context.Context, tx *dbTx, v views.View, keep ...views.Version) error {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type = 'table'`)
	if err != nil {
		return err
	}
	var drop []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			_ = rows.Close()
			return err
		}
		if ver, ok := stored.ParseTable(v, name); ok && !containsVersion(keep, ver) {
			drop = append(drop, name)
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	for _, name := range drop {
		if _, err := tx.ExecContext(ctx, `DROP TABLE `+name); err != nil {
			return fmt.Errorf("drop %s: %w", name, err)
		}
	}
	return nil
}

func containsVersion(vs []views.Version, v views.Version) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// State implements views.Reader.
func (s *Store) State(ctx context.Context, v views.View) (views.State, error) {
	var st views.State
	err := s.read(ctx, func(tx *dbTx) error {
		var err error
		st, err = liveState(ctx, tx, v)
		return err
	})
	return st, err
}

// Checkpoint implements views.Reader.
func (s *Store) Checkpoint(ctx context.Context) (uint64, error) {
	var cp uint64
	var n int
	// liveState's lowest partition, over every view at once.
	if err := s.r.QueryRowContext(ctx, `SELECT coalesce(min(cp), 0), count(DISTINCT view) FROM (
		SELECT s.view AS view, max(s.live_checkpoint, coalesce(vp.checkpoint, 0)) AS cp FROM views_state s
		LEFT JOIN leases l ON l.processor = ?
		LEFT JOIN views_partitions vp ON vp.view = s.view AND vp.version = s.live AND vp.partition = l.partition)`,
		views.LeaseProcessor).Scan(&cp, &n); err != nil {
		return 0, fmt.Errorf("views checkpoint: %w", err)
	}
	if n != len(views.All()) {
		return 0, fmt.Errorf("views checkpoint: %d views in views_state, want %d", n, len(views.All()))
	}
	return cp, nil
}

// BeginRebuild implements views.Writer.
func (s *Store) BeginRebuild(ctx context.Context, v views.View) (views.Target, error) {
	var t views.Target
	err := s.write(ctx, func(tx *dbTx) error {
		st, err := state(ctx, tx, v)
		if err != nil {
			return err
		}
		t = views.Target{View: v, Version: max(st.Live, st.Building) + 1}
		if err := dropExcept(ctx, tx, v, st.Live); err != nil {
			return err
		}
		if err := createVersion(ctx, tx, t, false); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE views_state SET building = ?, building_checkpoint = 0 WHERE view = ?`, t.Version, string(v))
		return err
	})
	if err != nil {
		return views.Target{}, fmt.Errorf("begin rebuild of %s: %w", v, err)
	}
	return t, nil
}

// Switch implements views.Writer.
func (s *Store) Switch(ctx context.Context, t views.Target, liveAhead bool) error {
	err := s.write(ctx, func(tx *dbTx) error {
		st, err := liveState(ctx, tx, t.View)
		if err != nil {
			return err
		}
		if st.Building != t.Version {
			return fmt.Errorf("building version is %d: %w", st.Building, views.ErrStale)
		}
		if st.BuildingCheckpoint < st.LiveCheckpoint && !liveAhead {
			return fmt.Errorf("shadow at %d, live at %d: %w", st.BuildingCheckpoint, st.LiveCheckpoint, views.ErrBehind)
		}
		if err := createIndexes(ctx, tx, t); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE views_state SET live = building, live_checkpoint = building_checkpoint,
			building = 0, building_checkpoint = 0 WHERE view = ?`, string(t.View)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM views_partitions WHERE view = ? AND version <> ?`, string(t.View), t.Version); err != nil {
			return err
		}
		return dropExcept(ctx, tx, t.View, t.Version)
	})
	if err != nil {
		return fmt.Errorf("switch %s to version %d: %w", t.View, t.Version, err)
	}
	return nil
}

var _ views.GroupWriter = (*Store)(nil)

// Apply implements views.Writer.
func (s *Store) Apply(ctx context.Context, t views.Target, b views.Batch) error {
	return s.ApplyGroup(ctx, []views.Write{{Target: t, Batch: b}})
}

// ApplyGroup implements views.GroupWriter: one transaction, so one commit
// (its WAL frames and the pages every batch touches, the checkpoint rows)
// for all the writes.
func (s *Store) ApplyGroup(ctx context.Context, writes []views.Write) error {
	for _, w := range writes {
		if err := w.Batch.Check(w.Target.View); err != nil {
			return err
		}
	}
	return s.write(ctx, func(tx *dbTx) error {
		for _, w := range writes {
			if err := applyBatch(ctx, tx, w.Target, w.Batch); err != nil {
				return fmt.Errorf("apply batch to %s v%d: %w", w.Target.View, w.Target.Version, err)
			}
		}
		return nil
	})
}

// applyBatch writes b to t inside tx: documents, dead letters, checkpoint.
func applyBatch(ctx context.Context, tx *dbTx, t views.Target, b views.Batch) error {
	column, err := writable(ctx, tx, t)
	if err != nil {
		return err
	}
	if b.Fence != nil && column != "live_checkpoint" {
		return fmt.Errorf("a fenced batch for version %d, which is not live", t.Version)
	}
	name := stored.Table(t.View, t.Version)
	if err := upsertOrders(ctx, tx, name, b.Orders); err != nil {
		return err
	}
	if err := upsertCustomers(ctx, tx, name, b.Customers); err != nil {
		return err
	}
	if err := insertDeadLetters(ctx, tx, name+stored.DeadLetterSuffix, b.DeadLetters); err != nil {
		return err
	}
	if b.Fence != nil {
		return fencedCheckpoint(ctx, tx, t, b)
	}
	_, err = tx.ExecContext(ctx, `UPDATE views_state SET `+column+` = max(`+column+`, ?) WHERE view = ?`, b.Checkpoint, string(t.View))
	return err
}

// fencedCheckpoint raises the checkpoint of t for each partition b.Fence
// holds, in one statement that also checks the leases; if any is lost the
// transaction is rolled back, documents and all.
func fencedCheckpoint(ctx context.Context, tx *dbTx, t views.Target, b views.Batch) error {
	if len(b.Fence.Held) == 0 {
		return nil
	}
	cond, args := heldBy(views.LeaseProcessor, b.Fence.Owner, b.Fence.Held)
	res, err := tx.ExecContext(ctx, `INSERT INTO views_partitions (view, version, partition, checkpoint)
		SELECT ?, ?, partition, ? FROM leases WHERE `+cond+`
		ON CONFLICT (view, version, partition) DO UPDATE SET checkpoint = max(checkpoint, excluded.checkpoint)`,
		append([]any{string(t.View), t.Version, b.Checkpoint}, args...)...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == int64(len(b.Fence.Held)) {
		return err
	}
	kept, err := partitionsOf(ctx, tx, `SELECT partition FROM leases WHERE `+cond, args...)
	if err != nil {
		return err
	}
	return fmt.Errorf("partitions %v not held by %s: %w", lostOf(b.Fence.Held, kept), b.Fence.Owner, lease.ErrLost)
}

// rowsPerInsert bounds the rows of one multi-row upsert: fewer statements
// to step through, and well under SQLite's limit on bound parameters.
const rowsPerInsert = 64

// upsertRows runs a guarded multi-row upsert: head is the INSERT up to
// VALUES, tail the ON CONFLICT clause, and each row binds width values.
//
// A tail with fixed columns updates only the columns a later event can
// change, and only rows whose fixed columns (an order's customer and
// creation time, a customer's registration) are as stored: every index
// over fixed columns alone is then left as it is, where setting such a
// column, even to the value it has, has SQLite rewrite its index entry —
// a third of the pages an order's status change writes. A row whose fixed
// columns did change (a stream deleted and created anew) is left by that
// statement, found by the count of rows changed falling short, and written
// by a second statement setting every column; so is a row the revision
// guard refused, which the second refuses again.
func upsertRows(ctx context.Context, tx *dbTx, head string, tail upsertTail, width, n int, args func(i int) ([]any, error)) error {
	row := "(" + strings.Repeat("?,", width-1) + "?)"
	for start := 0; start < n; start += rowsPerInsert {
		k := min(rowsPerInsert, n-start)
		vals := make([]any, 0, k*width)
		for i := start; i < start+k; i++ {
			a, err := args(i)
			if err != nil {
				return err
			}
			vals = append(vals, a...)
		}
		values := head + strings.Repeat(row+",", k-1) + row
		res, err := tx.ExecContext(ctx, values+tail.fixed, vals...)
		if err != nil {
			return err
		}
		if tail.all == "" {
			continue
		}
		changed, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if changed == int64(k) {
			continue
		}
		if _, err := tx.ExecContext(ctx, values+tail.all, vals...); err != nil {
			return err
		}
	}
	return nil
}

// upsertTail is an upsert's ON CONFLICT clause (fixed), and, when it leaves
// rows whose fixed columns changed, the one setting every column (all).
type upsertTail struct{ fixed, all string }

// guardedTail returns the tails of an upsert into table on key that
// replaces a row with a newer revision: fixed sets the columns in set and
// requires the columns in same to be as stored; all sets both.
func guardedTail(table, key string, set, same []string) upsertTail {
	assign := func(cols []string) string {
		parts := make([]string, len(cols))
		for i, c := range cols {
			parts[i] = c + " = excluded." + c
		}
		return strings.Join(parts, ", ")
	}
	guard := ` WHERE excluded.revision > ` + table + `.revision`
	fixed := ` ON CONFLICT (` + key + `) DO UPDATE SET ` + assign(set) + guard
	for _, c := range same {
		fixed += ` AND excluded.` + c + ` = ` + table + `.` + c
	}
	return upsertTail{fixed: fixed, all: ` ON CONFLICT (` + key + `) DO UPDATE SET ` + assign(append(slices.Clone(same), set...)) + guard}
}

func upsertOrders(ctx context.Context, tx *dbTx, table string, docs []views.OrderDoc) error {
	return upsertRows(ctx, tx,
		`INSERT INTO `+table+` (order_id, customer_id, status, created_ns, revision, doc) VALUES `,
		guardedTail(table, "order_id", []string{"status", "revision", "doc"}, []string{"customer_id", "created_ns"}),
		6, len(docs), func(i int) ([]any, error) {
			rec := stored.FromOrder(docs[i])
			doc, err := json.Marshal(rec)
			if err != nil {
				return nil, fmt.Errorf("encode order %s: %w", rec.OrderID, err)
			}
			return []any{rec.OrderID, rec.CustomerID, rec.Status, rec.CreatedNS, rec.Revision, doc}, nil
		})
}

func upsertCustomers(ctx context.Context, tx *dbTx, table string, docs []views.CustomerDoc) error {
	return upsertRows(ctx, tx,
		`INSERT INTO `+table+` (customer_id, registered_position, revision, doc) VALUES `,
		guardedTail(table, "customer_id", []string{"revision", "doc"}, []string{"registered_position"}),
		4, len(docs), func(i int) ([]any, error) {
			rec := stored.FromCustomer(docs[i])
			doc, err := json.Marshal(rec)
			if err != nil {
				return nil, fmt.Errorf("encode customer %s: %w", rec.CustomerID, err)
			}
			return []any{rec.CustomerID, rec.RegisteredPosition, rec.Revision, doc}, nil
		})
}

func insertDeadLetters(ctx context.Context, tx *dbTx, table string, letters []views.DeadLetter) error {
	return upsertRows(ctx, tx,
		`INSERT INTO `+table+` (event_id, position, doc) VALUES `,
		upsertTail{fixed: ` ON CONFLICT (event_id) DO NOTHING`},
		3, len(letters), func(i int) ([]any, error) {
			rec := stored.FromDeadLetter(letters[i])
			doc, err := json.Marshal(rec)
			if err != nil {
				return nil, fmt.Errorf("encode dead letter %s: %w", rec.EventID, err)
			}
			return []any{rec.EventID, rec.Position, doc}, nil
		})
}

// idsPerQuery bounds the IDs of one IN (...) lookup.
const idsPerQuery = 500

// loadDocs reads the documents of t among ids into fn, after checking that
// t is still writable (in the same snapshot).
func (s *Store) loadDocs(ctx context.Context, t views.Target, key string, ids []string, fn func(doc []byte) error) error {
	return s.read(ctx, func(tx *dbTx) error {
		if _, err := writable(ctx, tx, t); err != nil {
			return err
		}
		for start := 0; start < len(ids); start += idsPerQuery {
			chunk := ids[start:min(start+idsPerQuery, len(ids))]
			args := make([]any, len(chunk))
			for i, id := range chunk {
				args[i] = id
			}
			query := `SELECT doc FROM ` + stored.Table(t.View, t.Version) + ` WHERE ` + key +
				` IN (` + strings.Repeat("?,", len(chunk)-1) + `?)`
			if err := scanDocs(ctx, tx, query, args, fn); err != nil {
				return err
			}
		}
		return nil
	})
}

func scanDocs(ctx context.Context, q querier, query string, args []any, fn func(doc []byte) error) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var doc []byte
		if err := rows.Scan(&doc); err != nil {
			return err
		}
		if err := fn(doc); err != nil {
			return err
		}
	}
	return rows.Err()
}

// LoadOrders implements views.Writer.
func (s *Store) LoadOrders(ctx context.Context, t views.Target, ids []string) (map[string]views.OrderDoc, error) {
	out := make(map[string]views.OrderDoc, len(ids))
	err := s.loadDocs(ctx, t, "order_id", ids, func(doc []byte) error {
		d, err := decodeOrder(doc)
		out[d.OrderID] = d
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("load orders from v%d: %w", t.Version, err)
	}
	return out, nil
}

// LoadCustomers implements views.Writer.
func (s *Store) LoadCustomers(ctx context.Context, t views.Target, ids []string) (map[string]views.CustomerDoc, error) {
	out := make(map[string]views.CustomerDoc, len(ids))
	err := s.loadDocs(ctx, t, "customer_id", ids, func(doc []byte) error {
		d, err := decodeCustomer(doc)
		out[d.CustomerID] = d
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("load customers from v%d: %w", t.Version, err)
	}
	return out, nil
}

func decodeOrder(doc []byte) (views.OrderDoc, error) {
	var rec stored.Order
	if err := json.Unmarshal(doc, &rec); err != nil {
		return views.OrderDoc{}, fmt.Errorf("decode order: %w", err)
	}
	return rec.Doc(), nil
}

func decodeCustomer(doc []byte) (views.CustomerDoc, error) {
	var rec stored.Customer
	if err := json.Unmarshal(doc, &rec); err != nil {
		return views.CustomerDoc{}, fmt.Errorf("decode customer: %w", err)
	}
	return rec.Doc(), nil
}

// liveTable returns the table of v's live version.
func liveTable(ctx context.Context, q querier, v views.View) (string, error) {
	var live views.Version
	if err := q.QueryRowContext(ctx, `SELECT live FROM views_state WHERE view = ?`, string(v)).Scan(&live); err != nil {
		return "", fmt.Errorf("live version of %s: %w", v, err)
	}
	return stored.Table(v, live), nil
}

// GetOrder implements views.Reader.
func (s *Store) GetOrder(ctx context.Context, orderID string) (views.OrderDoc, error) {
	var d views.OrderDoc
	err := s.read(ctx, func(tx *dbTx) error {
		table, err := liveTable(ctx, tx, views.Orders)
		if err != nil {
			return err
		}
		var doc []byte
		if err := tx.QueryRowContext(ctx, `SELECT doc FROM `+table+` WHERE order_id = ?`, orderID).Scan(&doc); err != nil {
			return err
		}
		d, err = decodeOrder(doc)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return d, fmt.Errorf("order %s: %w", orderID, views.ErrNotFound)
	}
	if err != nil {
		return d, fmt.Errorf("get order %s: %w", orderID, err)
	}
	return d, nil
}

// ListOrders implements views.Reader.
func (s *Store) ListOrders(ctx context.Context, q views.OrderQuery) ([]views.OrderDoc, error) {
	if q.Limit <= 0 {
		return nil, fmt.Errorf("list orders: limit %d must be positive", q.Limit)
	}
	var where []string
	var args []any
	if q.CustomerID != "" {
		where, args = append(where, "customer_id = ?"), append(args, q.CustomerID)
	}
	if q.Status != domain.StatusNone {
		where, args = append(where, "status = ?"), append(args, int32(q.Status))
	}
	if q.After != nil {
		where, args = append(where, "(created_ns, order_id) < (?, ?)"), append(args, stored.Nanos(q.After.CreatedAt), q.After.OrderID)
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, q.Limit)
	out := make([]views.OrderDoc, 0, q.Limit)
	err := s.read(ctx, func(tx *dbTx) error {
		table, err := liveTable(ctx, tx, views.Orders)
		if err != nil {
			return err
		}
		return scanDocs(ctx, tx, `SELECT doc FROM `+table+cond+` ORDER BY created_ns DESC, order_id DESC LIMIT ?`, args, func(doc []byte) error {
			d, err := decodeOrder(doc)
			out = append(out, d)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	return out, nil
}

// GetCustomer implements views.Reader.
func (s *Store) GetCustomer(ctx context.Context, customerID string) (views.CustomerDoc, error) {
	docs, err := s.customers(ctx, `WHERE customer_id = ?`, customerID)
	if err != nil {
		return views.CustomerDoc{}, fmt.Errorf("get customer %s: %w", customerID, err)
	}
	if len(docs) == 0 {
		return views.CustomerDoc{}, fmt.Errorf("customer %s: %w", customerID, views.ErrNotFound)
	}
	return docs[0], nil
}

// ListCustomers implements views.Reader.
func (s *Store) ListCustomers(ctx context.Context, q views.CustomerQuery) ([]views.CustomerDoc, error) {
	if q.Limit <= 0 {
		return nil, fmt.Errorf("list customers: limit %d must be positive", q.Limit)
	}
	docs, err := s.customers(ctx, `WHERE registered_position > ? ORDER BY registered_position LIMIT ?`, q.After, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("list customers: %w", err)
	}
	return docs, nil
}

// customers reads customers (cond follows FROM) with their order counts,
// both from one snapshot.
func (s *Store) customers(ctx context.Context, cond string, args ...any) ([]views.CustomerDoc, error) {
	var out []views.CustomerDoc
	err := s.read(ctx, func(tx *dbTx) error {
		table, err := liveTable(ctx, tx, views.Customers)
		if err != nil {
			return err
		}
		index := map[string]int{}
		err = scanDocs(ctx, tx, `SELECT doc FROM `+table+` `+cond, args, func(doc []byte) error {
			d, err := decodeCustomer(doc)
			index[d.CustomerID] = len(out)
			out = append(out, d)
			return err
		})
		if err != nil || len(out) == 0 {
			return err
		}
		orders, err := liveTable(ctx, tx, views.Orders)
		if err != nil {
			return err
		}
		ids := make([]any, len(out))
		for i, d := range out {
			ids[i] = d.CustomerID
		}
		rows, err := tx.QueryContext(ctx, `SELECT customer_id, status, count(*) FROM `+orders+
			` WHERE customer_id IN (`+strings.Repeat("?,", len(ids)-1)+`?) GROUP BY customer_id, status`, ids...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var st domain.OrderStatus
			var n int64
			if err := rows.Scan(&id, &st, &n); err != nil {
				return err
			}
			out[index[id]].OrderCounts.Add(st, n)
		}
		return rows.Err()
	})
	return out, err
}

// DeadLetters implements views.Writer.
func (s *Store) DeadLetters(ctx context.Context, v views.View) ([]views.DeadLetter, error) {
	var out []views.DeadLetter
	err := s.read(ctx, func(tx *dbTx) error {
		table, err := liveTable(ctx, tx, v)
		if err != nil {
			return err
		}
		return scanDocs(ctx, tx, `SELECT doc FROM `+table+stored.DeadLetterSuffix+` ORDER BY position`, nil, func(doc []byte) error {
			var rec stored.DeadLetter
			if err := json.Unmarshal(doc, &rec); err != nil {
				return fmt.Errorf("decode dead letter: %w", err)
			}
			out = append(out, rec.Letter())
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("dead letters of %s: %w", v, err)
	}
	return out, nil
}

// SetPaused implements views.Writer.
func (s *Store) SetPaused(ctx context.Context, v views.View, paused bool) error {
	if !v.Valid() {
		return fmt.Errorf("pause: unknown view %q", v)
	}
	stmt := `DELETE FROM views_paused WHERE view = ?`
	if paused {
		stmt = `INSERT INTO views_paused (view) VALUES (?) ON CONFLICT (view) DO NOTHING`
	}
	if err := s.write(ctx, func(tx *dbTx) error {
		_, err := tx.ExecContext(ctx, stmt, string(v))
		return err
	}); err != nil {
		return fmt.Errorf("pause of %s: %w", v, err)
	}
	return nil
}
