package eventstore_test

// Scavenging while the store is busy, and when it crashes part-way.

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/eventstore/estest"
)

// TestScavenge_UnderAppendLoad: while appends go on to the streams being
// scavenged and to others, and metadata of one flips between retiring and
// relaxed, every read sees a whole stream (its last revisions, no gaps), and
// afterwards every acknowledged append is where it should be.
func TestScavenge_UnderAppendLoad(t *testing.T) {
	st := newScavStore(t)
	c := st.c
	names := manyRetiring(t, c, 20)
	ctx, cancel := context.WithCancel(testCtx(t))
	var wg sync.WaitGroup
	var failed atomic.Value
	fail := func(err error) {
		failed.CompareAndSwap(nil, err)
		cancel()
	}
	plain := make([]int, 4)
	for w := range plain {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				s := names[(w*7+i)%len(names)]
				if _, err := c.AppendToStream(ctx, s, esdb.AppendToStreamOptions{}, events(1, "e")...); err != nil && ctx.Err() == nil {
					fail(fmt.Errorf("append to %s: %w", s, err))
				}
				if _, err := c.AppendToStream(ctx, fmt.Sprintf("plain-%d", w), esdb.AppendToStreamOptions{}, events(1, "e")...); err != nil {
					if ctx.Err() == nil {
						fail(fmt.Errorf("append to plain-%d: %w", w, err))
					}
					return
				}
				plain[w]++
			}
		}()
	}
	wg.Add(1)
	go func() { // reads must always see a retired-free, gap-free tail
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			s := names[i%len(names)]
			rs, err := c.ReadStream(ctx, s, esdb.ReadStreamOptions{}, 1000)
			evs, err := drainRead(t, rs, err)
			if ctx.Err() != nil {
				return
			}
			got := revisions(evs)
			if err != nil || len(got) != 2 || got[1] != got[0]+1 {
				fail(fmt.Errorf("read %s during scavenge = %v, %v; want its last two revisions", s, got, err))
			}
		}
	}()
	mustAppend(t, c, "flip", esdb.NoStream{}, events(20, "e")...)
	for range 3 {
		setMeta(t, c, "flip", esdb.Any{}, maxCount(2))
		res := st.scavenge(t)
		setMeta(t, c, "flip", esdb.Any{}, esdb.StreamMetadata{})
		if res.Removed == 0 {
			t.Errorf("scavenge under load removed nothing")
		}
	}
	cancel()
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	for w, n := range plain {
		s := fmt.Sprintf("plain-%d", w)
		evs, err := readStream(t, c, s, esdb.ReadStreamOptions{}, 1_000_000)
		// One more than acknowledged may be there: the append in flight
		// when the load stopped.
		if got := revisions(evs); err != nil || len(got) < n || len(got) > n+1 || !slices.Equal(got, revs(0, uint64(len(got)-1))) {
			t.Fatalf("read %s = %d events, %v; want the %d acknowledged", s, len(got), err, n)
		}
	}
	st.scavenge(t)
	for s, got := range onDisk(t, c, names...) {
		if len(got) != 2 || got[1] != got[0]+1 {
			t.Fatalf("after scavenging under load $all holds %s %v, want its last two", s, got)
		}
	}
	// "flip" lost to each scavenge what $maxCount 2 retired then, and
	// nothing while relaxed: its first scavenge left 18, 19.
	wantRevisions(t, c, "flip", false, 18, 19)
}

// TestScavenge_CrashMidwayLosesNothingLive: the disk as a power cut leaves it
// part-way through a scavenge holds every live event, readable by stream and
// in $all, the retired ones of the slices done are gone, and a scavenge of
// the recovered store finishes the job.
func TestScavenge_CrashMidwayLosesNothingLive(t *testing.T) {
	fs := vfs.NewCrashableMem()
	onDisk := estest.WithConfig(func(c *eventstore.Config) {
		c.Dir = "store"
		eventstore.UseFS(fs)(c)
	})
	st := newScavStore(t, onDisk)
	names := manyRetiring(t, st.c, 12)
	mustAppend(t, st.c, "gone", esdb.NoStream{}, events(5, "e")...)
	if _, err := st.c.TombstoneStream(testCtx(t), "gone", esdb.TombstoneStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	live := map[string][]string{}
	for _, s := range names {
		evs, err := readStream(t, st.c, s, esdb.ReadStreamOptions{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		live[s] = eventIDs(evs)
	}
	var crashed vfs.FS
	var slicesSeen atomic.Int32
	eventstore.SetScavengeHook(st.srv, func(context.Context) {
		if slicesSeen.Add(1) == 6 {
			crashed = fs.CrashClone(vfs.CrashCloneCfg{})
		}
	})
	st.scavenge(t)

	rs := newScavStore(t, estest.WithConfig(func(c *eventstore.Config) {
		c.Dir = "store"
		eventstore.UseFS(crashed)(c)
	}))
	checkLive := func(when string) {
		t.Helper()
		all := map[string]bool{}
		for _, id := range eventIDs(readAll(t, rs.c, esdb.ReadAllOptions{}, 100_000)) {
			all[id] = true
		}
		for _, s := range names {
			evs, err := readStream(t, rs.c, s, esdb.ReadStreamOptions{}, 100)
			if err != nil || !slices.Equal(eventIDs(evs), live[s]) {
				t.Fatalf("%s: read %s = %v, %v; want %v", when, s, eventIDs(evs), err, live[s])
			}
			for _, id := range live[s] {
				if !all[id] {
					t.Fatalf("%s: live event %s is missing from $all", when, id)
				}
			}
		}
		_, err := readStream(t, rs.c, "gone", esdb.ReadStreamOptions{}, 10)
		wantCode(t, err, esdb.ErrorCodeStreamDeleted)
	}
	checkLive("after the crash")
	// The first five slices (the tombstoned stream's, then four others)
	// were committed before the crash; the sixth was not.
	want := map[string][]uint64{"gone": {1<<63 - 1}}
	for i, s := range names {
		want[s] = revs(0, 9)
		if i < 4 {
			want[s] = revs(8, 9)
		}
	}
	wantOnDisk(t, rs.c, want)
	rs.scavenge(t)
	checkLive("after a second scavenge")
	for _, s := range names {
		want[s] = revs(8, 9)
	}
	wantOnDisk(t, rs.c, want)
}
