package lease_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/lease"
	"github.com/orderly/orderly/internal/views/sqlite"
)

// The managers here run on one SQLite lease store, as instances on one
// host do, with a short TTL so that takeovers happen within a test.
const (
	partitions = 16
	ttl        = 600 * time.Millisecond
	tick       = ttl / 10
	// within bounds every wait: many TTLs, for a loaded machine.
	within = 30 * time.Second
)

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "leases.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// instance is a running manager; stop ends its Run without releasing
// (the instance died), release as a clean shutdown does.
type instance struct {
	*lease.Manager
	stop func()
}

func start(t *testing.T, store lease.Store, owner string) *instance {
	t.Helper()
	return startWith(t, store, owner, ttl)
}

// startWith is start with a TTL of the test's own (and a tick of a tenth of
// it).
func startWith(t *testing.T, store lease.Store, owner string, ttl time.Duration) *instance {
	t.Helper()
	m, err := lease.NewManager(store, lease.Config{Processor: "test", Owner: owner, Partitions: partitions, TTL: ttl, Tick: ttl / 10},
		slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: Run: %v", owner, err)
			}
		})
	}
	t.Cleanup(stop)
	return &instance{Manager: m, stop: stop}
}

func (in *instance) release(t *testing.T) {
	t.Helper()
	in.stop()
	if err := in.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func held(in *instance) map[int]lease.Epoch {
	h, _ := in.Held()
	return h
}

// eventually polls cond until it holds or within passes.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, within, why)
		}
		time.Sleep(tick / 2)
	}
}

// balanced reports whether ins hold every partition between them, each
// exactly once, in shares at most one apart.
func balanced(ins ...*instance) (bool, string) {
	owner := map[int]string{}
	lo, hi := partitions, 0
	for _, in := range ins {
		h := held(in)
		lo, hi = min(lo, len(h)), max(hi, len(h))
		for p := range h {
			if o, dup := owner[p]; dup {
				return false, fmt.Sprintf("partition %d held by %s and %s", p, o, in.Owner())
			}
			owner[p] = in.Owner()
		}
	}
	if len(owner) != partitions || hi-lo > 1 {
		return false, fmt.Sprintf("%d of %d partitions held, shares %d to %d", len(owner), partitions, lo, hi)
	}
	return true, ""
}

// TestJoiningInstancesShareEvenly: one instance takes every partition at
// once; two more join and the partitions spread to shares one apart, then
// stay put (no flapping).
//
// A renewal or heartbeat later than the TTL rightly moves partitions. On a
// starved CI machine (two cores, the race detector, other packages' tests)
// a partition once moved after balancing with the 600 ms TTL, most likely
// so (the failure held no timings): a TTL of seconds here, where what is
// tested is that nothing moves while everyone is on time.
func TestJoiningInstancesShareEvenly(t *testing.T) {
	const ttl = 3 * time.Second
	store := openStore(t)
	a := startWith(t, store, "a", ttl)
	eventually(t, "the first instance holds everything", func() (bool, string) { return balanced(a) })
	b, c := startWith(t, store, "b", ttl), startWith(t, store, "c", ttl)
	eventually(t, "three share", func() (bool, string) { return balanced(a, b, c) })
	settled := []map[int]lease.Epoch{held(a), held(b), held(c)}
	time.Sleep(ttl) // ten ticks
	for i, in := range []*instance{a, b, c} {
		if !maps.Equal(held(in), settled[i]) {
			t.Errorf("%s moved after balancing: %v, then %v", in.Owner(), settled[i], held(in))
		}
	}
}

// TestDeadInstanceIsTakenOver: an instance that stops without releasing
// keeps its partitions until their leases expire; then the others take
// them, each at a higher epoch.
func TestDeadInstanceIsTakenOver(t *testing.T) {
	store := openStore(t)
	a, b := start(t, store, "a"), start(t, store, "b")
	eventually(t, "two share", func() (bool, string) { return balanced(a, b) })
	dead := held(b)
	b.stop()
	eventually(t, "the survivor holds everything", func() (bool, string) { return balanced(a) })
	now := held(a)
	for p, e := range dead {
		if now[p] <= e {
			t.Errorf("partition %d taken over at epoch %d, not past the dead owner's %d", p, now[p], e)
		}
	}
}

// TestReleaseHandsOverAtOnce: a clean shutdown frees the partitions and
// leaves, so the others take them without waiting for expiry — within a
// couple of ticks, far less than the TTL.
func TestReleaseHandsOverAtOnce(t *testing.T) {
	store := openStore(t)
	a, b := start(t, store, "a"), start(t, store, "b")
	eventually(t, "two share", func() (bool, string) { return balanced(a, b) })
	b.release(t)
	snap, err := store.ScanLeases(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range snap.Leases {
		if l.Owner == "b" {
			t.Fatalf("partition %d still owned by the released instance: %+v", l.Partition, l)
		}
	}
	for _, m := range snap.Members {
		if m.Owner == "b" {
			t.Fatalf("the released instance is still a member: %+v", snap.Members)
		}
	}
	eventually(t, "the other holds everything", func() (bool, string) { return balanced(a) })
}

// cuttable passes calls to a real lease store until cut, then fails them
// all, as a network partition between an instance and the store does.
type cuttable struct {
	lease.Store
	cut atomic.Bool
	// heartbeats fails heartbeats alone, as a store too slow for some
	// calls does.
	heartbeats atomic.Bool
}

var errCut = errors.New("cut off from the store")

func (c *cuttable) Heartbeat(ctx context.Context, processor, owner string, ttl time.Duration) error {
	if c.cut.Load() || c.heartbeats.Load() {
		return errCut
	}
	return c.Store.Heartbeat(ctx, processor, owner, ttl)
}

func (c *cuttable) Renew(ctx context.Context, processor, owner string, held map[int]lease.Epoch, ttl time.Duration) ([]int, error) {
	if c.cut.Load() {
		return nil, errCut
	}
	return c.Store.Renew(ctx, processor, owner, held, ttl)
}

// TestCutOffInstanceStopsBeforeItsLeasesExpire: an instance that cannot
// renew gives up every partition by itself before its leases expire for
// the others, so it never believes it holds a partition another has
// claimed; and its writes with the old epochs are refused.
func TestCutOffInstanceStopsBeforeItsLeasesExpire(t *testing.T) {
	store := openStore(t)
	link := &cuttable{Store: store}
	a := start(t, link, "a")
	eventually(t, "a holds everything", func() (bool, string) { return balanced(a) })
	stale := held(a)
	link.cut.Store(true)
	b := start(t, store, "b")
	// Watch a's belief while b takes over: once b holds a partition, a
	// must not believe it holds it too.
	eventually(t, "b takes over", func() (bool, string) {
		hb, ha := held(b), held(a)
		for p := range hb {
			if _, both := ha[p]; both {
				t.Fatalf("partition %d held by b while the cut-off a still believes it holds it", p)
			}
		}
		return balanced(b)
	})
	for p, e := range stale {
		err := store.SaveCheckpoint(context.Background(), "test", "a", p, e, lease.Position{Commit: 1, Prepare: 1})
		if !errors.Is(err, lease.ErrLost) {
			t.Fatalf("a's checkpoint for partition %d at its old epoch %d: %v, want lease.ErrLost", p, e, err)
		}
	}
	// Back in touch, a rejoins and the two share.
	link.cut.Store(false)
	eventually(t, "they share again", func() (bool, string) { return balanced(a, b) })
}

// TestFailingHeartbeatsDoNotCostTheLeases: an instance whose heartbeats
// fail while its renewals succeed keeps its partitions at their epochs.
func TestFailingHeartbeatsDoNotCostTheLeases(t *testing.T) {
	link := &cuttable{Store: openStore(t)}
	a := start(t, link, "a")
	eventually(t, "a holds everything", func() (bool, string) { return balanced(a) })
	before := held(a)
	link.heartbeats.Store(true)
	for deadline := time.Now().Add(3 * ttl); time.Now().Before(deadline); time.Sleep(tick) {
		if now := held(a); !maps.Equal(now, before) {
			t.Fatalf("with heartbeats failing, a went from %v to %v", before, now)
		}
	}
}

// TestPartitionCountIsFixed: an instance started with another count than
// the store's is refused, not silently split differently.
func TestPartitionCountIsFixed(t *testing.T) {
	store := openStore(t)
	start(t, store, "a")
	eventually(t, "set up", func() (bool, string) {
		snap, err := store.ScanLeases(context.Background(), "test")
		return err == nil && len(snap.Leases) == partitions, fmt.Sprintf("%d leases (%v)", len(snap.Leases), err)
	})
	m, err := lease.NewManager(store, lease.Config{Processor: "test", Owner: "b", Partitions: partitions * 2, TTL: ttl, Tick: tick}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); !errors.Is(err, lease.ErrPartitions) {
		t.Fatalf("Run with %d partitions on a store of %d: %v, want lease.ErrPartitions", partitions*2, partitions, err)
	}
}

// TestOfIsStable: the partition of a key never changes between builds —
// instances of two releases must agree during a rolling upgrade.
func TestOfIsStable(t *testing.T) {
	// FNV-1a of "a" is 0xe40c292c: pinned, so a change of hash fails here.
	if got := lease.Of("a", 1<<16); got != 0x292c {
		t.Fatalf("Of(\"a\", 65536) = %#x, want 0x292c", got)
	}
}
