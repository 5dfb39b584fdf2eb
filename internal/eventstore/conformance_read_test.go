package eventstore_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/orderly/orderly/internal/eventstore/estest"
)

func TestReadStreamDirectionsAndBounds(t *testing.T) {
	stream := streamName(t, "ten")
	c := newClient(t)
	mustAppend(t, c, stream, esdb.NoStream{}, events(10, "e")...)
	cases := []struct {
		name  string
		opts  esdb.ReadStreamOptions
		count uint64
		want  []uint64
	}{
		{"forwards from start", esdb.ReadStreamOptions{From: esdb.Start{}}, 100, []uint64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"forwards from start, count", esdb.ReadStreamOptions{From: esdb.Start{}}, 3, []uint64{0, 1, 2}},
		{"forwards from revision", esdb.ReadStreamOptions{From: esdb.Revision(3)}, 4, []uint64{3, 4, 5, 6}},
		{"forwards past the end", esdb.ReadStreamOptions{From: esdb.Revision(42)}, 4, nil},
		{"forwards from end", esdb.ReadStreamOptions{From: esdb.End{}}, 4, nil},
		{"backwards from end", esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 3, []uint64{9, 8, 7}},
		{"backwards from revision", esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.Revision(2)}, 10, []uint64{2, 1, 0}},
		{"backwards from past the end", esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.Revision(99)}, 2, []uint64{9, 8}},
		{"backwards from start", esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.Start{}}, 10, []uint64{0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := readStream(t, c, stream, tc.opts, tc.count)
			if err != nil {
				t.Fatal(err)
			}
			if got := revisions(evs); !slices.Equal(got, tc.want) {
				t.Fatalf("revisions = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReadMissingStream(t *testing.T) {
	stream := streamName(t, "nobody")
	c := newClient(t)
	_, err := readStream(t, c, stream, esdb.ReadStreamOptions{}, 10)
	wantCode(t, err, esdb.ErrorCodeResourceNotFound)
	_, err = readStream(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 10)
	wantCode(t, err, esdb.ErrorCodeResourceNotFound)
}

func TestReadAllPaging(t *testing.T) {
	estest.Fresh(t)
	c := newClient(t)
	for i := range 5 {
		mustAppend(t, c, fmt.Sprintf("page-%d", i), esdb.NoStream{}, events(5, "e")...)
	}
	all := readAll(t, c, esdb.ReadAllOptions{}, 1000)
	if len(all) != 25 {
		t.Fatalf("$all has %d events, want 25", len(all))
	}

	// Forwards from a position includes it: page from just past the last one seen.
	var forwards []*esdb.ResolvedEvent
	var from esdb.AllPosition = esdb.Start{}
	for {
		page := readAll(t, c, esdb.ReadAllOptions{From: from}, 7)
		forwards = append(forwards, page...)
		if len(page) < 7 {
			break
		}
		last := page[len(page)-1].Event.Position
		from = esdb.Position{Commit: last.Commit + 1, Prepare: last.Prepare + 1}
	}
	// Backwards from a position excludes it: page from the last one seen.
	var backwards []*esdb.ResolvedEvent
	from = esdb.End{}
	for {
		page := readAll(t, c, esdb.ReadAllOptions{Direction: esdb.Backwards, From: from}, 7)
		backwards = append(backwards, page...)
		if len(page) < 7 {
			break
		}
		from = page[len(page)-1].Event.Position
	}
	if !sameEvents(forwards, all) {
		t.Fatalf("forward pages differ from one read: %v vs %v", ids(forwards), ids(all))
	}
	slices.Reverse(backwards)
	if !sameEvents(backwards, all) {
		t.Fatalf("backward pages differ from one read: %v vs %v", ids(backwards), ids(all))
	}

	// Reading forwards from an event's own position starts at that event.
	mid := all[12].Event.Position
	if got := readAll(t, c, esdb.ReadAllOptions{From: mid}, 1); len(got) != 1 || got[0].Event.EventID != all[12].Event.EventID {
		t.Fatalf("forwards from %v = %v, want event 12", mid, ids(got))
	}
	if got := readAll(t, c, esdb.ReadAllOptions{Direction: esdb.Backwards, From: mid}, 1); len(got) != 1 || got[0].Event.EventID != all[11].Event.EventID {
		t.Fatalf("backwards from %v = %v, want event 11", mid, ids(got))
	}
	if got := readAll(t, c, esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, 2); !sameEvents(got, []*esdb.ResolvedEvent{all[24], all[23]}) {
		t.Fatalf("backwards from end = %v", ids(got))
	}
}

func ids(evs []*esdb.ResolvedEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = fmt.Sprintf("%s@%d", ev.Event.StreamID, ev.Event.EventNumber)
	}
	return out
}

func sameEvents(a, b []*esdb.ResolvedEvent) bool {
	return slices.EqualFunc(a, b, func(x, y *esdb.ResolvedEvent) bool { return x.Event.EventID == y.Event.EventID })
}
