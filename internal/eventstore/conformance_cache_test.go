package eventstore_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/eventstore/estest"
)

// coldStore serves a store whose stream cache is too small to keep anything
// between group commits: every write reads its streams' states from storage.
func coldStore(t *testing.T) *esdb.Client {
	return newClient(t, estest.WithConfig(func(c *eventstore.Config) { c.StreamCacheBytes = 1 }))
}

// lastRevision is the revision to expect for stream's next write, read from
// its newest event (NoStream when there is none).
func lastRevision(t *testing.T, c *esdb.Client, stream string) esdb.ExpectedRevision {
	evs, err := readStream(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if err == nil && len(evs) == 1 {
		return esdb.Revision(evs[0].Event.EventNumber)
	}
	return esdb.NoStream{}
}

// With every stream cold, writers racing on the same expected revision must
// still see exactly one of them win: no revision is written twice, none is
// skipped, and every success's answer matches what was written. Metadata
// writers race on the metadata stream alongside: a write to "$$x" changes
// x's state too, so it must load x's state, not start it afresh.
func TestExpectedRevisionHoldsOnColdStreams(t *testing.T) {
	c := coldStore(t)
	const streams, writersPer, metaWritersPer, rounds = 6, 6, 2, 15
	type win struct {
		stream string
		rev    uint64
	}
	var mu sync.Mutex
	var wins []win
	var wg sync.WaitGroup
	race := func(stream string, write func(esdb.ExpectedRevision) (*esdb.WriteResult, error)) {
		for range rounds {
			res, err := write(lastRevision(t, c, stream))
			if err != nil {
				if code, _ := errorCode(err); code != esdb.ErrorCodeWrongExpectedVersion {
					t.Error(err)
					return
				}
				continue
			}
			mu.Lock()
			wins = append(wins, win{stream, res.NextExpectedVersion})
			mu.Unlock()
		}
	}
	for s := range streams {
		name := streamName(t, fmt.Sprintf("cold-%d", s))
		for range writersPer {
			wg.Go(func() {
				race(name, func(exp esdb.ExpectedRevision) (*esdb.WriteResult, error) {
					return c.AppendToStream(testCtx(t), name, esdb.AppendToStreamOptions{ExpectedRevision: exp}, events(1, "e")...)
				})
			})
		}
		for range metaWritersPer {
			wg.Go(func() {
				race("$$"+name, func(exp esdb.ExpectedRevision) (*esdb.WriteResult, error) {
					// Large enough to retire nothing this test writes.
					return c.SetStreamMetadata(testCtx(t), name, esdb.AppendToStreamOptions{ExpectedRevision: exp}, maxCount(1000))
				})
			})
		}
	}
	wg.Wait()
	seen := map[win]bool{}
	perStream := map[string]int{}
	for _, w := range wins {
		if seen[w] {
			t.Fatalf("revision %d of %s acknowledged twice", w.rev, w.stream)
		}
		seen[w] = true
		perStream[w.stream]++
	}
	for s := range streams {
		name := streamName(t, fmt.Sprintf("cold-%d", s))
		evs, err := readStream(t, c, name, esdb.ReadStreamOptions{}, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != perStream[name] {
			t.Fatalf("%s holds %d events; %d appends were acknowledged", name, len(evs), perStream[name])
		}
		for i, ev := range evs {
			if ev.Event.EventNumber != uint64(i) || !seen[win{name, uint64(i)}] {
				t.Fatalf("%s: event %d has revision %d (acknowledged: %v)", name, i, ev.Event.EventNumber, seen[win{name, uint64(i)}])
			}
		}
		// A metadata stream reads only its latest event.
		if n := perStream["$$"+name]; n > 0 {
			wantRevisions(t, c, "$$"+name, false, uint64(n-1))
		}
	}
}

// evictAll writes to enough other streams that nothing written before is
// still cached, however the cache orders them.
func evictAll(t *testing.T, c *esdb.Client) {
	t.Helper()
	for i := range 20 {
		mustAppend(t, c, streamName(t, fmt.Sprintf("filler-%d", i)), esdb.Any{}, events(1, "e")...)
	}
}

// What a stream's metadata says still holds once its state has left the
// writer's cache: the state read back from storage carries $maxCount and $tb,
// so reads and the next writes apply them.
func TestMetadataOfEvictedStreamsHolds(t *testing.T) {
	c := coldStore(t)

	capped := streamName(t, "capped")
	mustAppend(t, c, capped, esdb.NoStream{}, events(5, "e")...)
	setMeta(t, c, capped, esdb.NoStream{}, maxCount(2))
	evictAll(t, c)
	wantRevisions(t, c, capped, false, 3, 4)
	// The append rewrites the stream's state from what the writer loaded.
	mustAppend(t, c, capped, esdb.Revision(4), events(1, "e")...)
	evictAll(t, c)
	wantRevisions(t, c, capped, false, 4, 5)

	deleted := streamName(t, "deleted")
	mustAppend(t, c, deleted, esdb.NoStream{}, events(2, "e")...)
	if _, err := c.DeleteStream(testCtx(t), deleted, esdb.DeleteStreamOptions{ExpectedRevision: esdb.Revision(1)}); err != nil {
		t.Fatal(err)
	}
	evictAll(t, c)
	_, err := readStream(t, c, deleted, esdb.ReadStreamOptions{}, 10)
	wantCode(t, err, esdb.ErrorCodeResourceNotFound)
	// New metadata for it keeps it truncated: it reads empty.
	setMeta(t, c, deleted, esdb.Revision(0), maxCount(100))
	evictAll(t, c)
	wantRevisions(t, c, deleted, false)
	if tb := getMeta(t, c, deleted).TruncateBefore(); tb == nil || *tb != 2 {
		t.Fatalf("$tb of the evicted soft-deleted stream = %v, want 2", tb)
	}

	// An append recreates a soft-deleted stream where it stopped.
	recreated := streamName(t, "recreated")
	mustAppend(t, c, recreated, esdb.NoStream{}, events(2, "e")...)
	if _, err := c.DeleteStream(testCtx(t), recreated, esdb.DeleteStreamOptions{ExpectedRevision: esdb.Revision(1)}); err != nil {
		t.Fatal(err)
	}
	evictAll(t, c)
	if res := mustAppend(t, c, recreated, esdb.NoStream{}, events(1, "again")...); res.NextExpectedVersion != 2 {
		t.Fatalf("recreating append: next %d, want 2", res.NextExpectedVersion)
	}
	wantRevisions(t, c, recreated, false, 2)
	// Its metadata stream goes on too: the soft delete's, then the recreation's.
	wantRevisions(t, c, "$$"+recreated, false, 1)
	if tb := getMeta(t, c, recreated).TruncateBefore(); tb == nil || *tb != 2 {
		t.Fatalf("$tb of the recreated stream = %v, want 2", tb)
	}

	// A stream with metadata and no events may be soft-deleted.
	metaOnly := streamName(t, "meta-only")
	setMeta(t, c, metaOnly, esdb.NoStream{}, maxCount(3))
	evictAll(t, c)
	if _, err := c.DeleteStream(testCtx(t), metaOnly, esdb.DeleteStreamOptions{ExpectedRevision: esdb.Any{}}); err != nil {
		t.Fatalf("soft delete of a stream with only metadata: %v", err)
	}

	// A tombstone deletes the metadata stream, cached or not.
	tombstoned := streamName(t, "tombstoned")
	mustAppend(t, c, tombstoned, esdb.NoStream{}, events(1, "e")...)
	if _, err := c.TombstoneStream(testCtx(t), tombstoned, esdb.TombstoneStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	evictAll(t, c)
	_, err = c.SetStreamMetadata(testCtx(t), tombstoned, esdb.AppendToStreamOptions{}, maxCount(1))
	wantCode(t, err, esdb.ErrorCodeStreamDeleted)
}
