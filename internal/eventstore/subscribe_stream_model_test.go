package eventstore_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/eventstore/estest"
)

// A stream subscription against the stream, while writers append to it and
// to others: from the start or from a revision (before what $tb or a soft
// delete hides, inside what is kept, or past the end), it delivers every
// event after its start that the stream shows, once and in order, across
// the switch from catching up to live.
func TestStreamSubscriptionMatchesStream(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 4, 5, 6} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) { subscribeStreamModel(t, seed) })
	}
}

func subscribeStreamModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	_, addr := estest.Serve(t)
	c := estest.Client(t, addr)
	stream, other := fmt.Sprintf("target-%d", seed), fmt.Sprintf("other-%d", seed)
	some := func(n int) []esdb.EventData {
		evs := make([]esdb.EventData, n)
		for i := range evs {
			evs[i] = esdb.EventData{EventID: uuid.New(), EventType: "e", ContentType: esdb.ContentTypeJson, Data: []byte(`{}`)}
		}
		return evs
	}
	mustAppend(t, c, stream, esdb.NoStream{}, some(60)...)
	// What hides the stream's start: nothing, a $tb, or a soft delete
	// after which the stream goes on.
	var visible uint64
	switch seed % 3 {
	case 1:
		visible = 30
		var m esdb.StreamMetadata
		m.SetTruncateBefore(visible)
		if _, err := c.SetStreamMetadata(testCtx(t), stream, esdb.AppendToStreamOptions{}, m); err != nil {
			t.Fatal(err)
		}
	case 2:
		if _, err := c.DeleteStream(testCtx(t), stream, esdb.DeleteStreamOptions{}); err != nil {
			t.Fatal(err)
		}
		visible = 60
		mustAppend(t, c, stream, esdb.Any{}, some(5)...)
	}

	var writers sync.WaitGroup
	for w := range 2 {
		wrng := rand.New(rand.NewPCG(seed, uint64(100+w)))
		writers.Go(func() {
			for range 60 {
				if !appendFrom(t, c, stream, some(1+wrng.IntN(4))...) || !appendFrom(t, c, other, some(1)...) {
					return
				}
			}
		})
	}
	time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)

	// From the start, or after a revision anywhere up to a little past the
	// stream's end when subscribing.
	var from esdb.StreamPosition = esdb.Start{}
	first, fromName := visible, "the start"
	if rng.IntN(3) > 0 {
		r := rng.Uint64N(200)
		from, first, fromName = esdb.Revision(r), max(visible, r+1), fmt.Sprint("revision ", r)
	}
	sub, err := c.SubscribeToStream(testCtx(t), stream, esdb.SubscribeToStreamOptions{From: from})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	r := readToLast(t, c, sub, &writers, stream, "e")

	all, err := readStream(t, c, stream, esdb.ReadStreamOptions{From: esdb.Start{}}, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	var want []*esdb.RecordedEvent
	for _, e := range all {
		if e.Event.EventNumber >= first {
			want = append(want, e.Event)
		}
	}
	what := fmt.Sprintf("from %s (visible from %d)", fromName, visible)
	t.Logf("%s: %d events, caught up after %d", what, len(r.events), r.caughtUpAt)
	if len(r.events) != len(want) {
		t.Fatalf("%s: delivered %d events (%v…), want %d", what, len(r.events), revisionsOf(r.events[:min(3, len(r.events))]), len(want))
	}
	for i, e := range r.events {
		if e.EventID != want[i].EventID || e.EventNumber != want[i].EventNumber {
			t.Fatalf("%s: event %d is %s@%d, want %s@%d", what, i, e.EventID, e.EventNumber, want[i].EventID, want[i].EventNumber)
		}
	}
}
