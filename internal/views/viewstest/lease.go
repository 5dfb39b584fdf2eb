package viewstest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/lease"
	"github.com/orderly/orderly/internal/views"
)

// The lease half of the contract (package lease), and the fenced batches
// built on it.

const (
	proc = "saga"
	// long outlives any test; short is waited out by polling the store's
	// clock, never by a timed assertion.
	long  = time.Hour
	short = 200 * time.Millisecond
)

func setup(t *testing.T, s views.Store, processor string, n int) {
	t.Helper()
	if err := s.SetupLeases(ctxFor(t), processor, n); err != nil {
		t.Fatalf("SetupLeases(%s, %d): %v", processor, n, err)
	}
}

func scan(t *testing.T, s views.Store, processor string) lease.Snapshot {
	t.Helper()
	snap, err := s.ScanLeases(ctxFor(t), processor)
	if err != nil {
		t.Fatalf("ScanLeases(%s): %v", processor, err)
	}
	return snap
}

func claim(t *testing.T, s views.Store, processor string, p int, owner string, seen lease.Epoch, ttl time.Duration) lease.Lease {
	t.Helper()
	l, err := s.Claim(ctxFor(t), processor, p, owner, seen, ttl)
	if err != nil {
		t.Fatalf("Claim(%s %d by %s at epoch %d): %v", processor, p, owner, seen, err)
	}
	if l.Partition != p || l.Owner != owner || l.Epoch != seen+1 {
		t.Fatalf("Claim(%s %d by %s at epoch %d) = %+v", processor, p, owner, seen, l)
	}
	return l
}

// waitFor scans processor until done holds of a snapshot, and returns it.
func waitFor(t *testing.T, s views.Store, processor string, what string, done func(lease.Snapshot) bool) lease.Snapshot {
	t.Helper()
	ctx := ctxFor(t)
	for {
		snap := scan(t, s, processor)
		if done(snap) {
			return snap
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v; last snapshot %+v", what, ctx.Err(), snap)
		case <-time.After(short / 4):
		}
	}
}

func testLeaseClaim(t *testing.T, s views.Store) {
	ctx := ctxFor(t)
	setup(t, s, proc, 4)
	snap := scan(t, s, proc)
	if len(snap.Leases) != 4 || snap.Now.IsZero() {
		t.Fatalf("a new processor's snapshot: %+v", snap)
	}
	for i, l := range snap.Leases {
		if l.Partition != i || l.Owner != "" || l.Epoch != 0 || l.Checkpoint != (lease.Position{}) {
			t.Errorf("new lease %d: %+v, want free at epoch 0", i, l)
		}
	}

	got := claim(t, s, proc, 2, "a", 0, long)
	if !got.Held("a", scan(t, s, proc).Now) {
		t.Errorf("claimed lease %+v not held by a", got)
	}
	for _, seen := range []lease.Epoch{0, 1} {
		if _, err := s.Claim(ctx, proc, 2, "b", seen, long); !errors.Is(err, lease.ErrTaken) {
			t.Errorf("Claim of a held lease at epoch %d = %v, want ErrTaken", seen, err)
		}
	}
	snap = scan(t, s, proc)
	if l := snap.Leases[2]; l.Owner != "a" || l.Epoch != 1 || !l.Expires.Equal(got.Expires) {
		t.Errorf("lease after refused claims: %+v, want %+v", l, got)
	}
	if l := snap.Leases[1]; l.Owner != "" || l.Epoch != 0 {
		t.Errorf("claiming partition 2 touched partition 1: %+v", l)
	}
}

// testLeaseClaimRace: of claims racing for one partition at the same
// epoch, exactly one wins.
func testLeaseClaimRace(t *testing.T, s views.Store) {
	setup(t, s, proc, 2)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, errs[i] = s.Claim(ctxFor(t), proc, 1, fmt.Sprint("owner", i), 0, long) })
	}
	wg.Wait()
	winner := ""
	for i, err := range errs {
		switch {
		case err == nil && winner == "":
			winner = fmt.Sprint("owner", i)
		case err == nil:
			t.Errorf("owner%d and %s both won the claim", i, winner)
		case !errors.Is(err, lease.ErrTaken):
			t.Errorf("owner%d: %v, want ErrTaken", i, err)
		}
	}
	if l := scan(t, s, proc).Leases[1]; winner == "" || l.Owner != winner || l.Epoch != 1 {
		t.Errorf("after the race: %+v, winner %q", l, winner)
	}
}

// testLeaseExpiry: an expired lease goes to the next claimer, at a higher
// epoch, and its old owner can renew it no more; unclaimed, the old owner
// still may.
func testLeaseExpiry(t *testing.T, s views.Store) {
	ctx := ctxFor(t)
	setup(t, s, proc, 2)
	first := claim(t, s, proc, 0, "a", 0, short)
	if _, err := s.Claim(ctx, proc, 0, "b", first.Epoch, long); !errors.Is(err, lease.ErrTaken) {
		t.Fatalf("Claim before the expiry = %v, want ErrTaken", err)
	}
	expired := func(snap lease.Snapshot) bool { return !snap.Leases[0].Held("a", snap.Now) }
	waitFor(t, s, proc, "a's lease to expire", expired)
	second := claim(t, s, proc, 0, "b", first.Epoch, long)
	if lost, err := s.Renew(ctx, proc, "a", map[int]lease.Epoch{0: first.Epoch}, long); err != nil || !slices.Equal(lost, []int{0}) {
		t.Errorf("Renew by the old owner = %v, %v; want [0] lost", lost, err)
	}
	if l := scan(t, s, proc).Leases[0]; l.Owner != "b" || l.Epoch != second.Epoch || !l.Expires.Equal(second.Expires) {
		t.Errorf("the old owner's renew changed the lease: %+v, want %+v", l, second)
	}
	if err := s.Release(ctx, proc, "b", map[int]lease.Epoch{0: second.Epoch}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, proc, 0, "a", first.Epoch-1, long); !errors.Is(err, lease.ErrTaken) {
		t.Errorf("Claim of a free lease at an epoch two claims old = %v, want ErrTaken", err)
	}

	claim(t, s, proc, 1, "a", 0, short)
	waitFor(t, s, proc, "a's lease to expire", func(snap lease.Snapshot) bool { return !snap.Leases[1].Held("a", snap.Now) })
	if lost, err := s.Renew(ctx, proc, "a", map[int]lease.Epoch{1: 1}, long); err != nil || len(lost) != 0 {
		t.Errorf("Renew of an expired lease nobody claimed = %v, %v; want none lost", lost, err)
	}
	if snap := scan(t, s, proc); !snap.Leases[1].Held("a", snap.Now) {
		t.Errorf("renewed lease not held: %+v at %v", snap.Leases[1], snap.Now)
	}
}

func testLeaseRenew(t *testing.T, s views.Store) {
	ctx := ctxFor(t)
	setup(t, s, proc, 3)
	a0 := claim(t, s, proc, 0, "a", 0, time.Minute)
	a1 := claim(t, s, proc, 1, "a", 0, time.Minute)
	b2 := claim(t, s, proc, 2, "b", 0, time.Minute)
	lost, err := s.Renew(ctx, proc, "a", map[int]lease.Epoch{0: a0.Epoch, 1: a1.Epoch}, long)
	if err != nil || len(lost) != 0 {
		t.Fatalf("Renew by the owner = %v, %v; want none lost", lost, err)
	}
	snap := scan(t, s, proc)
	for _, l := range snap.Leases[:2] {
		if !l.Expires.After(snap.Now.Add(long - time.Minute)) {
			t.Errorf("renewed lease %+v expires within the old ttl of %v", l, snap.Now)
		}
	}
	renewed := snap.Leases

	// A stale epoch and another's partition are reported, and left alone.
	lost, err = s.Renew(ctx, proc, "a", map[int]lease.Epoch{0: a0.Epoch + 1, 1: a1.Epoch, 2: b2.Epoch}, 2*long)
	if err != nil || !slices.Equal(lost, []int{0, 2}) {
		t.Errorf("Renew at a stale epoch and of b's partition = %v, %v; want [0 2] lost", lost, err)
	}
	snap = scan(t, s, proc)
	if !snap.Leases[0].Expires.Equal(renewed[0].Expires) || !snap.Leases[2].Expires.Equal(b2.Expires) {
		t.Errorf("Renew changed leases it does not hold: %+v", snap.Leases)
	}
	if lost, err := s.Renew(ctx, proc, "a", nil, long); err != nil || len(lost) != 0 {
		t.Errorf("Renew of nothing = %v, %v", lost, err)
	}
}

func testLeaseRelease(t *testing.T, s views.Store) {
	ctx := ctxFor(t)
	setup(t, s, proc, 2)
	a := claim(t, s, proc, 0, "a", 0, long)
	claim(t, s, proc, 1, "b", 0, long)
	if err := s.Release(ctx, proc, "a", map[int]lease.Epoch{0: a.Epoch + 1, 1: 1}); err != nil {
		t.Fatal(err)
	}
	if snap := scan(t, s, proc); snap.Leases[0].Owner != "a" || snap.Leases[1].Owner != "b" {
		t.Fatalf("Release at a stale epoch or of another's partition freed it: %+v", snap.Leases)
	}
	if err := s.Release(ctx, proc, "a", map[int]lease.Epoch{0: a.Epoch}); err != nil {
		t.Fatal(err)
	}
	if l := scan(t, s, proc).Leases[0]; l.Owner != "" || l.Epoch != a.Epoch {
		t.Errorf("released lease: %+v, want free at epoch %d", l, a.Epoch)
	}
	if _, err := s.Claim(ctx, proc, 0, "b", a.Epoch-1, long); !errors.Is(err, lease.ErrTaken) {
		t.Errorf("Claim of a free lease at a stale epoch = %v, want ErrTaken", err)
	}
	claim(t, s, proc, 0, "b", a.Epoch, long)
}

func testLeaseCheckpoint(t *testing.T, s views.Store) {
	ctx := ctxFor(t)
	setup(t, s, proc, 2)
	a := claim(t, s, proc, 1, "a", 0, long)
	save := func(owner string, e lease.Epoch, pos lease.Position) error {
		return s.SaveCheckpoint(ctx, proc, owner, 1, e, pos)
	}
	want := lease.Position{Commit: 50, Prepare: 40}
	if err := save("a", a.Epoch, want); err != nil {
		t.Fatal(err)
	}
	for _, back := range []lease.Position{{Commit: 50, Prepare: 30}, {Commit: 49, Prepare: 45}} {
		if err := save("a", a.Epoch, back); err != nil {
			t.Fatal(err)
		}
	}
	if got := scan(t, s, proc).Leases[1].Checkpoint; got != want {
		t.Errorf("checkpoint after lower ones = %+v, want %+v", got, want)
	}
	if err := save("a", a.Epoch+1, lease.Position{Commit: 60, Prepare: 60}); !errors.Is(err, lease.ErrLost) {
		t.Errorf("SaveCheckpoint at a stale epoch = %v, want ErrLost", err)
	}
	if err := s.Release(ctx, proc, "a", map[int]lease.Epoch{1: a.Epoch}); err != nil {
		t.Fatal(err)
	}
	b := claim(t, s, proc, 1, "b", a.Epoch, long)
	if b.Checkpoint != want {
		t.Errorf("the claim returned checkpoint %+v, want %+v", b.Checkpoint, want)
	}
	if err := save("a", a.Epoch, lease.Position{Commit: 70, Prepare: 70}); !errors.Is(err, lease.ErrLost) {
		t.Errorf("SaveCheckpoint by the old owner = %v, want ErrLost", err)
	}
	if got := scan(t, s, proc).Leases[1].Checkpoint; got != want {
		t.Errorf("checkpoint after refused saves = %+v, want %+v", got, want)
	}
	if err := save("b", b.Epoch, lease.Position{Commit: 51, Prepare: 0}); err != nil {
		t.Fatal(err)
	}
	if got := scan(t, s, proc).Leases[1].Checkpoint; got != (lease.Position{Commit: 51}) {
		t.Errorf("checkpoint = %+v, want commit 51", got)
	}
}

func owners(ms []lease.Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Owner)
	}
	slices.Sort(out)
	return out
}

func testLeaseMembers(t *testing.T, s views.Store) {
	ctx := ctxFor(t)
	for owner, ttl := range map[string]time.Duration{"a": long, "b": long, "c": short} {
		if err := s.Heartbeat(ctx, proc, owner, ttl); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Heartbeat(ctx, "other", "d", long); err != nil {
		t.Fatal(err)
	}
	if got := owners(scan(t, s, proc).Members); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("members = %v, want [a b c]", got)
	}
	if err := s.Leave(ctx, proc, "b"); err != nil {
		t.Fatal(err)
	}
	var expires time.Time
	for _, m := range scan(t, s, proc).Members {
		if m.Owner == "c" {
			expires = m.Expires
		}
	}
	snap := waitFor(t, s, proc, "c's heartbeat to expire", func(snap lease.Snapshot) bool { return !snap.Now.Before(expires) })
	if got := owners(snap.Members); !slices.Equal(got, []string{"a"}) {
		t.Errorf("members after b left and c expired = %v, want [a]", got)
	}
	// A member that comes back counts again.
	if err := s.Heartbeat(ctx, proc, "c", long); err != nil {
		t.Fatal(err)
	}
	if got := owners(scan(t, s, proc).Members); !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("members after c's new heartbeat = %v, want [a c]", got)
	}
}

func testLeaseSetup(t *testing.T, s views.Store) {
	ctx := ctxFor(t)
	setup(t, s, proc, 4)
	claim(t, s, proc, 3, "a", 0, long)
	setup(t, s, proc, 4)
	if l := scan(t, s, proc).Leases; len(l) != 4 || l[3].Owner != "a" {
		t.Errorf("setting up again changed the leases: %+v", l)
	}
	for _, n := range []int{3, 5} {
		if err := s.SetupLeases(ctx, proc, n); !errors.Is(err, lease.ErrPartitions) {
			t.Errorf("SetupLeases with %d partitions over 4 = %v, want ErrPartitions", n, err)
		}
	}
	if err := s.SetupLeases(ctx, "other", 0); err == nil {
		t.Error("SetupLeases with 0 partitions: no error")
	}

	// Instances starting at once set up the same processor.
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if err := s.SetupLeases(ctxFor(t), "other", 3); err != nil {
				t.Errorf("concurrent SetupLeases: %v", err)
			}
		})
	}
	wg.Wait()
	if l := scan(t, s, "other").Leases; len(l) != 3 {
		t.Errorf("after concurrent setups: %d leases, want 3: %+v", len(l), l)
	}
	if l := scan(t, s, proc).Leases; len(l) != 4 {
		t.Errorf("another processor's setup changed %s: %+v", proc, l)
	}
}

// fenced holds partitions 0..n-1 of the projector for owner.
func fenced(t *testing.T, s views.Store, n int, owner string) *views.Fence {
	t.Helper()
	setup(t, s, views.LeaseProcessor, n)
	f := &views.Fence{Owner: owner, Held: map[int]lease.Epoch{}}
	for p := range n {
		f.Held[p] = claim(t, s, views.LeaseProcessor, p, owner, 0, long).Epoch
	}
	return f
}

// only is f narrowed to partitions ps.
func only(f *views.Fence, ps ...int) *views.Fence {
	g := &views.Fence{Owner: f.Owner, Held: map[int]lease.Epoch{}}
	for _, p := range ps {
		g.Held[p] = f.Held[p]
	}
	return g
}

func partitions(t *testing.T, s views.Store, v views.View, want []uint64, low uint64) {
	t.Helper()
	st, err := s.State(ctxFor(t), v)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Partitions, want) || st.LiveCheckpoint != low {
		t.Errorf("State(%s): partitions %v, live checkpoint %d; want %v, %d", v, st.Partitions, st.LiveCheckpoint, want, low)
	}
}

func checkpoint(t *testing.T, s views.Store, want uint64) {
	t.Helper()
	if cp, err := s.Checkpoint(ctxFor(t)); err != nil || cp != want {
		t.Errorf("Checkpoint = %d, %v; want %d", cp, err, want)
	}
}

func testFencedApply(t *testing.T, s views.Store) {
	ctx := ctxFor(t)
	orders, customers := live(t, s, views.Orders), live(t, s, views.Customers)
	apply(t, s, orders, views.Batch{Checkpoint: 10})
	apply(t, s, customers, views.Batch{Checkpoint: 10})
	partitions(t, s, views.Orders, nil, 10)

	f := fenced(t, s, 4, "a")
	partitions(t, s, views.Orders, []uint64{10, 10, 10, 10}, 10)
	apply(t, s, orders, views.Batch{Orders: []views.OrderDoc{Order("o1", "c1", base, domain.StatusPending, 0)}, Checkpoint: 30, Fence: only(f, 0, 1)})
	partitions(t, s, views.Orders, []uint64{30, 30, 10, 10}, 10)
	apply(t, s, orders, views.Batch{Checkpoint: 20, Fence: only(f, 2, 3)})
	apply(t, s, orders, views.Batch{Checkpoint: 25, Fence: only(f, 0)})
	partitions(t, s, views.Orders, []uint64{30, 30, 20, 20}, 20)
	partitions(t, s, views.Customers, []uint64{10, 10, 10, 10}, 10)
	checkpoint(t, s, 10)
	apply(t, s, customers, views.Batch{Checkpoint: 50, Fence: f})
	checkpoint(t, s, 20)

	// b takes partition 3 over: a's batches that cover it are refused and
	// move no checkpoint of it.
	if err := s.Release(ctx, views.LeaseProcessor, "a", map[int]lease.Epoch{3: f.Held[3]}); err != nil {
		t.Fatal(err)
	}
	claim(t, s, views.LeaseProcessor, 3, "b", f.Held[3], long)
	err := s.Apply(ctx, orders, views.Batch{Orders: []views.OrderDoc{Order("o2", "c1", base, domain.StatusPending, 0)}, Checkpoint: 40, Fence: only(f, 2, 3)})
	if !errors.Is(err, lease.ErrLost) || !strings.Contains(err.Error(), "[3]") {
		t.Errorf("Apply fenced by a lost lease = %v, want ErrLost naming partition [3]", err)
	}
	if err := s.Apply(ctx, orders, views.Batch{Checkpoint: 40, Fence: only(f, 3)}); !errors.Is(err, lease.ErrLost) {
		t.Errorf("Apply fenced by a lost lease = %v, want ErrLost", err)
	}
	st, err := s.State(ctx, views.Orders)
	if err != nil || st.Partitions[3] != 20 || st.Partitions[0] != 30 {
		t.Errorf("State after refused batches = %+v, %v; want partition 3 at 20, 0 at 30", st, err)
	}

	shadow, err := s.BeginRebuild(ctx, views.Orders)
	if err != nil {
		t.Fatal(err)
	}
	// Refused, not stale: the shadow is still the one to fill, unfenced.
	if err := s.Apply(ctx, shadow, views.Batch{Checkpoint: 5, Fence: only(f, 0)}); err == nil || errors.Is(err, views.ErrStale) {
		t.Errorf("Apply of a fenced batch to a building version = %v, want an error other than ErrStale", err)
	}
	if st, _ := s.State(ctx, views.Orders); st.BuildingCheckpoint != 0 {
		t.Errorf("the refused fenced batch moved the shadow's checkpoint: %+v", st)
	}
}

// testSwitchPartitioned: a shadow switches live when it has caught up with
// the lowest partition, and then stands at its own checkpoint in each.
func testSwitchPartitioned(t *testing.T, s views.Store) {
	ctx := ctxFor(t)
	orders := live(t, s, views.Orders)
	apply(t, s, orders, views.Batch{Checkpoint: 10})
	f := fenced(t, s, 3, "a")
	apply(t, s, orders, views.Batch{Checkpoint: 30, Fence: only(f, 0)})
	apply(t, s, orders, views.Batch{Checkpoint: 20, Fence: only(f, 1, 2)})

	shadow, err := s.BeginRebuild(ctx, views.Orders)
	if err != nil {
		t.Fatal(err)
	}
	partitions(t, s, views.Orders, []uint64{30, 20, 20}, 20)
	apply(t, s, shadow, views.Batch{Orders: []views.OrderDoc{Order("o1", "c1", base, domain.StatusApproved, 1)}, Checkpoint: 15})
	if err := s.Switch(ctx, shadow, false); !errors.Is(err, views.ErrBehind) {
		t.Fatalf("Switch with the shadow at 15 and the lowest partition at 20 = %v, want ErrBehind", err)
	}
	apply(t, s, shadow, views.Batch{Checkpoint: 25})
	if err := s.Switch(ctx, shadow, false); err != nil {
		t.Fatalf("Switch with the shadow past the lowest partition: %v", err)
	}
	partitions(t, s, views.Orders, []uint64{25, 25, 25}, 25)
	apply(t, s, shadow, views.Batch{Checkpoint: 35, Fence: only(f, 1)})
	partitions(t, s, views.Orders, []uint64{25, 35, 25}, 25)

	// The versions after it start afresh too.
	again, err := s.BeginRebuild(ctx, views.Orders)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, s, again, views.Batch{Checkpoint: 25})
	if err := s.Switch(ctx, again, false); err != nil {
		t.Fatal(err)
	}
	partitions(t, s, views.Orders, []uint64{25, 25, 25}, 25)
}
