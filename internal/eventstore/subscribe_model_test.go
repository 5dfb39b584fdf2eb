package eventstore_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/eventstore/estest"
)

// A filtered $all subscription (by event type, as the projector's and the
// saga's are, or by stream name) against the log it subscribes to, while
// writers append: started from the start or from an event's position, it
// delivers every matching event after its start once, in order, through the
// switch from catching up to live that the appends race; and no checkpoint
// passes a matching event not yet delivered, since a subscriber resuming
// from a checkpoint would never see that event.
func TestFilteredSubscriptionMatchesLog(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 4} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) { subscribeModel(t, seed) })
	}
}

func subscribeModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	_, addr := estest.Serve(t)
	c := estest.Client(t, addr)
	prefix := fmt.Sprintf("s%d-", seed)
	appendSome := func(rng *rand.Rand, n int) {
		for range n {
			batch := make([]esdb.EventData, 1+rng.IntN(5))
			for i := range batch {
				typ := "noise"
				if rng.IntN(3) == 0 {
					typ = "match"
				}
				batch[i] = esdb.EventData{EventID: uuid.New(), EventType: typ, ContentType: esdb.ContentTypeJson, Data: []byte(`{}`)}
			}
			if !appendFrom(t, c, fmt.Sprintf("%s%d", prefix, rng.IntN(8)), batch...) {
				return
			}
		}
	}
	appendSome(rng, 40)

	// Writers append before, while and after the subscription catches up
	// and goes live; the last event, appended once they are done, ends the
	// subscriber's read.
	var writers sync.WaitGroup
	var batches atomic.Int64
	for w := range 4 {
		wrng := rand.New(rand.NewPCG(seed, uint64(100+w)))
		writers.Go(func() {
			for range 80 {
				appendSome(wrng, 1)
				batches.Add(1)
			}
		})
	}
	for batches.Load() < 40 {
		time.Sleep(time.Millisecond)
	}

	// Start from the start, or just after a random event of the log so far.
	var from esdb.AllPosition = esdb.Start{}
	var fromPos uint64
	if seed%2 == 0 {
		before := readAll(t, c, esdb.ReadAllOptions{}, 10_000)
		fromPos = before[rng.IntN(len(before))].OriginalEvent().Position.Commit
		from = esdb.Position{Commit: fromPos, Prepare: fromPos}
	}
	// By event type, or by stream name: two of the eight streams and the
	// one the last event goes to.
	filter := &esdb.SubscriptionFilter{Type: esdb.EventFilterType, Prefixes: []string{"match"}}
	matches := func(e *esdb.RecordedEvent) bool { return e.EventType == "match" }
	if seed > 2 {
		filter = &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{prefix + "3", prefix + "5", prefix + "end"}}
		matches = func(e *esdb.RecordedEvent) bool {
			return e.StreamID == prefix+"3" || e.StreamID == prefix+"5" || e.StreamID == prefix+"end"
		}
	}
	sub, err := c.SubscribeToAll(testCtx(t), esdb.SubscribeToAllOptions{From: from, Filter: filter, MaxSearchWindow: 3, CheckpointInterval: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	r := readToLast(t, c, sub, &writers, prefix+"end", "match")

	var want []*esdb.RecordedEvent
	for _, e := range readAll(t, c, esdb.ReadAllOptions{}, 100_000) {
		if ev := e.OriginalEvent(); matches(ev) && ev.Position.Commit > fromPos {
			want = append(want, ev)
		}
	}
	t.Logf("from %d: %d matching events, %d checkpoints, caught up after %d", fromPos, len(want), len(r.checkpoints), r.caughtUpAt)
	if len(r.events) != len(want) {
		t.Fatalf("delivered %d events, want %d", len(r.events), len(want))
	}
	for i, e := range r.events {
		if e.EventID != want[i].EventID || e.Position != want[i].Position {
			t.Fatalf("event %d is %s at %d, want %s at %d", i, e.EventID, e.Position.Commit, want[i].EventID, want[i].Position.Commit)
		}
	}
	if r.caughtUpAt < 0 {
		t.Error("never caught up")
	}
	var prev uint64
	for i, cp := range r.checkpoints {
		after := r.checkpointAfter[i]
		if cp.Commit < prev {
			t.Fatalf("checkpoint %d after %d", cp.Commit, prev)
		}
		prev = cp.Commit
		// Every matching event at or before the checkpoint came before it.
		if after < len(want) && want[after].Position.Commit <= cp.Commit {
			t.Fatalf("checkpoint %d after %d events passes undelivered event %d", cp.Commit, after, want[after].Position.Commit)
		}
	}
}

// appendFrom appends evs to stream from any goroutine: a failure fails t
// without stopping the goroutine's caller, and is reported as false.
func appendFrom(t *testing.T, c *esdb.Client, stream string, evs ...esdb.EventData) bool {
	if _, err := c.AppendToStream(testCtx(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, evs...); err != nil {
		t.Errorf("append to %s: %v", stream, err)
		return false
	}
	return true
}
