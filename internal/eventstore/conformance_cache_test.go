package eventstore_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/eventstore/estest"
)

// With a stream cache too small to keep anything between group commits,
// every write reads its stream's state from storage, and writers racing on
// the same expected revision must still see exactly one of them win: no
// revision is written twice, none is skipped, and every success's answer
// matches what was written.
func TestExpectedRevisionHoldsOnColdStreams(t *testing.T) {
	c := newClient(t, estest.WithConfig(func(c *eventstore.Config) { c.StreamCacheBytes = 1 }))
	const streams, writersPer, rounds = 6, 6, 15
	type win struct {
		stream string
		rev    uint64
	}
	var mu sync.Mutex
	var wins []win
	var wg sync.WaitGroup
	for s := range streams {
		name := fmt.Sprintf("cold-%d", s)
		for range writersPer {
			wg.Go(func() {
				for range rounds {
					evs, err := readStream(t, c, name, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
					exp := esdb.ExpectedRevision(esdb.NoStream{})
					if err == nil && len(evs) == 1 {
						exp = esdb.Revision(evs[0].Event.EventNumber)
					}
					res, err := c.AppendToStream(testCtx(t), name, esdb.AppendToStreamOptions{ExpectedRevision: exp}, events(1, "e")...)
					if err != nil {
						if code, _ := errorCode(err); code != esdb.ErrorCodeWrongExpectedVersion {
							t.Error(err)
							return
						}
						continue
					}
					mu.Lock()
					wins = append(wins, win{name, res.NextExpectedVersion})
					mu.Unlock()
				}
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
		name := fmt.Sprintf("cold-%d", s)
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
	}
}
