// Package lease shares a processor's work among its instances: the work is
// cut into a fixed number of partitions by key, and each partition is owned
// by at most one live instance at a time through a lease kept in the view
// store — the engine the deployment already runs, so there is no consensus
// of our own.
//
// A lease has an owner, an expiry by the store's clock (never the
// instances': their clocks may disagree) and an epoch that every claim
// increments. Whatever the owner writes for a partition — a view batch's
// checkpoint, the saga's checkpoint — is checked against the owner and the
// epoch in the same write, so an instance that lost its lease (paused past
// its expiry, cut off from the store) can no longer move a checkpoint,
// whatever it still believes. Work done twice across a takeover is absorbed
// downstream: view documents are guarded by revision, saga steps are
// idempotent.
//
// The Manager (manager.go) claims, renews, balances and releases one
// instance's leases; adapters of package views implement Store.
package lease

import (
	"context"
	"errors"
	"hash/fnv"
	"time"
)

// Epoch counts the claims of one partition; it only grows.
type Epoch uint64

// Position is a processor's checkpoint in the event store's $all: every
// event up to it is done.
type Position struct {
	Commit, Prepare uint64
}

// Lease is one partition of a processor as the store holds it.
type Lease struct {
	Partition int
	// Owner is the instance holding it; "" when free (never claimed or
	// released).
	Owner string
	Epoch Epoch
	// Expires is when the lease ends unless renewed, by the store's clock.
	Expires time.Time
	// Checkpoint is the partition's own checkpoint, for processors that
	// keep it with the lease (the saga); zero when none was saved.
	Checkpoint Position
}

// Held reports whether owner holds l at now (the store's clock).
func (l Lease) Held(owner string, now time.Time) bool {
	return l.Owner == owner && l.Owner != "" && now.Before(l.Expires)
}

// Member is an instance that takes part in a processor's work; it counts
// in the fair share until its heartbeat expires.
type Member struct {
	Owner   string
	Expires time.Time
}

// Snapshot is a processor's leases and members read at one time.
type Snapshot struct {
	// Now is the store's clock when it was read.
	Now time.Time
	// Leases holds every partition, by partition number.
	Leases []Lease
	// Members are the instances whose heartbeat had not expired at Now.
	Members []Member
}

// Errors stores return; test them with errors.Is.
var (
	// ErrLost: the owner does not hold the partition at that epoch any
	// more (another claimed it, or it was released); nothing was written.
	ErrLost = errors.New("lease: lost")
	// ErrTaken: a claim found the partition held, or claimed by another
	// since the caller's snapshot (its epoch moved).
	ErrTaken = errors.New("lease: taken")
	// ErrPartitions: the processor was set up with another partition count.
	ErrPartitions = errors.New("lease: partition count differs from the store's")
)

// Store keeps leases. Every method is one conditional write (or one read)
// in the store, safe for any number of instances at once; times are the
// store's own clock.
type Store interface {
	// SetupLeases makes sure processor has partitions 0..n-1 (free, epoch
	// 0, when new). It returns ErrPartitions if the store already holds
	// another count for processor.
	SetupLeases(ctx context.Context, processor string, n int) error
	// ScanLeases reads processor's leases and live members.
	ScanLeases(ctx context.Context, processor string) (Snapshot, error)
	// Heartbeat records owner as a member of processor until ttl from now.
	Heartbeat(ctx context.Context, processor, owner string, ttl time.Duration) error
	// Leave ends owner's membership at once.
	Leave(ctx context.Context, processor, owner string) error
	// Claim gives partition p to owner until ttl from now, with the epoch
	// incremented, if p is still at epoch seen and is free or expired. It
	// returns the new lease, or ErrTaken.
	Claim(ctx context.Context, processor string, p int, owner string, seen Epoch, ttl time.Duration) (Lease, error)
	// Renew extends each partition owner holds at the given epoch to ttl
	// from now, and returns those it no longer holds (their leases are
	// left alone). A lease past its expiry but not claimed by another is
	// still renewed: nobody else wrote in between.
	Renew(ctx context.Context, processor, owner string, held map[int]Epoch, ttl time.Duration) (lost []int, err error)
	// Release frees the partitions owner holds at the given epochs, so
	// others may claim them at once; partitions it no longer holds are
	// left alone.
	Release(ctx context.Context, processor, owner string, held map[int]Epoch) error
	// SaveCheckpoint sets partition p's Checkpoint to pos if owner holds
	// it at epoch e (expired or not, as Renew), never moving it back; it
	// returns ErrLost otherwise, writing nothing.
	SaveCheckpoint(ctx context.Context, processor, owner string, p int, e Epoch, pos Position) error
}

// Of is the partition of key among n: FNV-1a, stable across builds and
// instances, which must agree on it.
func Of(key string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}
