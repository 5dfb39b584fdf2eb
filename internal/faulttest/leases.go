package faulttest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/lease"
	"github.com/orderly/orderly/internal/saga"
	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/viewstore"
)

// Processors are the lease processors of a system: the projector's and
// the saga's.
var Processors = []string{views.LeaseProcessor, saga.DefaultProcessor}

// LeaseWatch scans a system's leases and view checkpoints every
// WatchEvery while a test runs, and records every broken promise of the
// sharing: an epoch that went down, an epoch held by two owners, a
// checkpoint that moved back.
type LeaseWatch struct {
	t     testing.TB
	store Watched
	every time.Duration
	// atomic is set for stores whose conditional updates are atomic;
	// without (FerretDB), what the watch finds is logged, not failed.
	atomic bool
	stop   chan struct{}
	done   chan struct{}

	mu sync.Mutex
	// last is each processor's last snapshot.
	last map[string]lease.Snapshot
	// owners is who held each (processor, partition, epoch).
	owners map[string]map[int]map[lease.Epoch]string
	// checkpoints is each view's live version and partitioned checkpoints
	// at the last scan.
	checkpoints map[views.View]views.State
	problems    []string
	found       int
	scans       int
}

// Watched is what a LeaseWatch reads: a view store's leases and states.
type Watched interface {
	lease.Store
	State(ctx context.Context, v views.View) (views.State, error)
}

// WatchLeases starts watching the leases in store, every every, until the
// test ends (or Stop). Broken promises fail the test if atomic is set: the
// store applies a filtered update atomically, as SQLite and MongoDB do.
// FerretDB does not — it reads the matching document, then writes it back
// whole — so a claim landing on an old owner's write in flight can undo
// that write (or the claim); the fences and guards keep the views and the
// credit right regardless, which the test checks anyway.
func WatchLeases(t testing.TB, store Watched, every time.Duration, atomic bool) *LeaseWatch {
	w := &LeaseWatch{t: t, store: store, every: every, atomic: atomic, stop: make(chan struct{}), done: make(chan struct{}),
		last: map[string]lease.Snapshot{}, owners: map[string]map[int]map[lease.Epoch]string{}, checkpoints: map[views.View]views.State{}}
	go w.run()
	t.Cleanup(func() { w.Stop() })
	return w
}

func (w *LeaseWatch) run() {
	defer close(w.done)
	tick := time.NewTicker(w.every)
	defer tick.Stop()
	for {
		w.scan()
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
	}
}

func (w *LeaseWatch) problem(format string, args ...any) {
	w.found++
	if len(w.problems) < 20 {
		w.problems = append(w.problems, fmt.Sprintf(format, args...))
	}
}

func (w *LeaseWatch) scan() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snaps := map[string]lease.Snapshot{}
	for _, proc := range Processors {
		snap, err := w.store.ScanLeases(ctx, proc)
		if err != nil {
			return // the store is busy or down: the next scan looks again
		}
		snaps[proc] = snap
	}
	states := map[views.View]views.State{}
	for _, v := range views.All() {
		st, err := w.store.State(ctx, v)
		if err != nil {
			return
		}
		states[v] = st
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.scans++
	for proc, snap := range snaps {
		prev := w.last[proc]
		if w.owners[proc] == nil {
			w.owners[proc] = map[int]map[lease.Epoch]string{}
		}
		for _, l := range snap.Leases {
			if l.Partition < len(prev.Leases) {
				was := prev.Leases[l.Partition]
				if l.Epoch < was.Epoch {
					w.problem("%s partition %d: epoch went from %d to %d", proc, l.Partition, was.Epoch, l.Epoch)
				}
				if l.Checkpoint.Commit < was.Checkpoint.Commit {
					w.problem("%s partition %d: checkpoint moved back from %d to %d", proc, l.Partition, was.Checkpoint.Commit, l.Checkpoint.Commit)
				}
			}
			if l.Owner == "" {
				continue // released: the epoch stays, nobody holds it
			}
			byEpoch := w.owners[proc][l.Partition]
			if byEpoch == nil {
				byEpoch = map[lease.Epoch]string{}
				w.owners[proc][l.Partition] = byEpoch
			}
			if o, ok := byEpoch[l.Epoch]; ok && o != l.Owner {
				w.problem("%s partition %d: epoch %d held by %s and by %s", proc, l.Partition, l.Epoch, o, l.Owner)
			}
			byEpoch[l.Epoch] = l.Owner
		}
		w.last[proc] = snap
	}
	for v, st := range states {
		prev, ok := w.checkpoints[v]
		if ok && prev.Live == st.Live && len(prev.Partitions) == len(st.Partitions) {
			for p := range st.Partitions {
				if st.Partitions[p] < prev.Partitions[p] {
					w.problem("view %s v%d partition %d: checkpoint moved back from %d to %d", v, st.Live, p, prev.Partitions[p], st.Partitions[p])
				}
			}
		}
		w.checkpoints[v] = st
	}
}

// Stop ends the watch and fails the test with what it found broken.
func (w *LeaseWatch) Stop() {
	select {
	case <-w.stop:
		return
	default:
	}
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	report := w.t.Errorf
	if !w.atomic {
		report = w.t.Logf
	}
	for _, p := range w.problems {
		report("leases: %s", p)
	}
	w.t.Logf("leases: %d scans, %d broken promises found", w.scans, w.found)
}

// Owners returns who holds each partition of proc at the last scan, by
// partition ("" for a free or expired lease), with the epochs.
func (w *LeaseWatch) Owners(proc string) ([]string, []lease.Epoch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	snap := w.last[proc]
	owners, epochs := make([]string, len(snap.Leases)), make([]lease.Epoch, len(snap.Leases))
	for i, l := range snap.Leases {
		if l.Owner != "" && snap.Now.Before(l.Expires) {
			owners[i] = l.Owner
		}
		epochs[i] = l.Epoch
	}
	return owners, epochs
}

// Shares counts the partitions of proc each owner holds at the last scan.
func (w *LeaseWatch) Shares(proc string) map[string]int {
	owners, _ := w.Owners(proc)
	shares := map[string]int{}
	for _, o := range owners {
		shares[o]++
	}
	return shares
}

// WaitOwned waits until every partition of proc has a live owner among
// want (any owner when want is empty), in shares at most one apart
// between want's, and returns how long it took; it fails the test after
// within.
func (w *LeaseWatch) WaitOwned(within time.Duration, proc string, want ...string) time.Duration {
	w.t.Helper()
	start := time.Now()
	for {
		ok, why := w.owned(proc, want)
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > within {
			w.t.Fatalf("leases not settled within %v: %s", within, why)
		}
		time.Sleep(w.every)
	}
}

func (w *LeaseWatch) owned(proc string, want []string) (bool, string) {
	shares := w.Shares(proc)
	if n := shares[""]; n > 0 || len(shares) == 0 {
		return false, fmt.Sprintf("%s: %d partitions unowned (%v)", proc, n, shares)
	}
	if len(want) == 0 {
		return true, ""
	}
	for o := range shares {
		if !slices.Contains(want, o) {
			return false, fmt.Sprintf("%s: %s holds partitions (%v), want only %v", proc, o, shares, want)
		}
	}
	lo, hi := 1<<30, 0
	for _, o := range want {
		lo, hi = min(lo, shares[o]), max(hi, shares[o])
	}
	if hi-lo > 1 {
		return false, fmt.Sprintf("%s: shares %v not balanced among %v", proc, shares, want)
	}
	return true, ""
}

// WaitTakenOver waits until none of proc's partitions is held by victim
// any more and each of those it held at its epochs then has a live owner
// at a higher epoch, and returns how long it took; it fails the test
// after within.
func (w *LeaseWatch) WaitTakenOver(proc, victim string, held map[int]lease.Epoch, within time.Duration) time.Duration {
	w.t.Helper()
	start := time.Now()
	for {
		owners, epochs := w.Owners(proc)
		left := 0
		for p, e := range held {
			if p >= len(owners) || owners[p] == "" || owners[p] == victim || epochs[p] <= e {
				left++
			}
		}
		if left == 0 {
			return time.Since(start)
		}
		if time.Since(start) > within {
			w.t.Fatalf("%s: %d of %s's %d partitions not taken over within %v (owners %v)", proc, left, victim, len(held), within, owners)
		}
		time.Sleep(w.every)
	}
}

// HeldBy returns the partitions of proc owner holds at the last scan,
// with their epochs.
func (w *LeaseWatch) HeldBy(proc, owner string) map[int]lease.Epoch {
	owners, epochs := w.Owners(proc)
	held := map[int]lease.Epoch{}
	for p, o := range owners {
		if o == owner {
			held[p] = epochs[p]
		}
	}
	return held
}

// Metric sums the samples of metric name with labels containing match
// (e.g. `processor="projector"`) that the process serves on /metrics.
func (p *Proc) Metric(name, match string) (float64, error) {
	resp, err := http.Get("http://" + p.HTTP + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for lines.Scan() {
		line := lines.Text()
		if !strings.HasPrefix(line, name) || !strings.Contains(line, match) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue // another metric whose name starts with this one
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
	}
	return sum, lines.Err()
}

// RebuildAlone rebuilds every view from the whole event store, by one
// projector process (`projector rebuild`), into a SQLite store of its own,
// and returns that store, open until the test ends.
func (s *System) RebuildAlone(t testing.TB) views.Store {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(Binary(t, "projector"), "rebuild", "-create", "-eventstore", s.ConnString, "-data", dir, "-log-level", "warn")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("projector rebuild: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vs, err := viewstore.Open(ctx, viewstore.Config{Kind: viewstore.SQLite, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vs.Close() })
	return vs
}
