package eventstore_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/eventstore/estest"
)

// Stream reads against a model, over random histories: streams appended to
// in turn, in batches of random sizes, with events smaller and larger than a
// block, part flushed to tables and part in the memtable, some streams with
// a $maxCount or a $tb, one soft-deleted and written on. A read takes a stream's index entries in batches and
// reads each run of consecutive positions on its own, backward runs in parts
// (scan.go), so every way a batch can cut a run, and a run a part, has to
// give the events the stream holds, and only those, in order.
func TestReadStreamMatchesModel(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) { readModel(t, seed) })
	}
}

// modelStream is what a stream holds: its events in revision order, and the
// first revision its metadata leaves visible.
type modelStream struct {
	name    string
	events  []esdb.EventData
	visible uint64
}

func readModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	srv, addr := estest.Serve(t)
	c := estest.Client(t, addr)
	streams := make([]*modelStream, 4)
	for i := range streams {
		streams[i] = &modelStream{name: fmt.Sprintf("model-%d-%d", seed, i)}
	}
	event := func(s *modelStream) esdb.EventData {
		size := 8 + rng.IntN(64)
		if rng.IntN(4) == 0 {
			size = 4096 + rng.IntN(4096) // a block or more of its own
		}
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		return esdb.EventData{EventID: uuid.New(), EventType: "e" + s.name, ContentType: esdb.ContentTypeBinary, Data: data}
	}
	for round := range 2 {
		for range 120 {
			s := streams[rng.IntN(len(streams))]
			batch := make([]esdb.EventData, 1+rng.IntN(rng.IntN(24)+1))
			for i := range batch {
				batch[i] = event(s)
			}
			mustAppend(t, c, s.name, esdb.Any{}, batch...)
			s.events = append(s.events, batch...)
		}
		if round == 0 {
			if err := eventstore.FlushToTables(srv); err != nil {
				t.Fatal(err)
			}
			// A soft delete: the stream goes on from its next revision,
			// its earlier events hidden.
			s := streams[2]
			if _, err := c.DeleteStream(testCtx(t), s.name, esdb.DeleteStreamOptions{}); err != nil {
				t.Fatal(err)
			}
			s.visible = uint64(len(s.events))
			batch := []esdb.EventData{event(s)}
			mustAppend(t, c, s.name, esdb.Any{}, batch...)
			s.events = append(s.events, batch...)
		}
	}
	// Retention: one stream keeps its last 40 events, one is truncated
	// before a third of its events (EventStoreDB hides both from reads).
	for i, s := range streams[:2] {
		var m esdb.StreamMetadata
		if i == 0 {
			m.SetMaxCount(40)
			s.visible = uint64(max(0, len(s.events)-40))
		} else {
			s.visible = uint64(len(s.events) / 3)
			m.SetTruncateBefore(s.visible)
		}
		if _, err := c.SetStreamMetadata(testCtx(t), s.name, esdb.AppendToStreamOptions{}, m); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range streams {
		t.Logf("%s: %d events, visible from %d", s.name, len(s.events), s.visible)
	}

	counts := []uint64{1, 2, 7, 8, 9, 17, 127, 128, 129, 300, 10_000}
	for range 300 {
		s := streams[rng.IntN(len(streams))]
		n := uint64(len(s.events))
		dir, dirName := esdb.Forwards, "forwards"
		if rng.IntN(2) == 0 {
			dir, dirName = esdb.Backwards, "backwards"
		}
		count := counts[rng.IntN(len(counts))]
		var from esdb.StreamPosition
		var first uint64 // the revision the read starts from, as the model has it
		fromName := "the start"
		switch k := rng.IntN(6); {
		case k == 0:
			from, first = esdb.Start{}, 0
		case k == 1:
			from, first, fromName = esdb.End{}, n-1, "the end"
		default:
			first = rng.Uint64N(n + 4)
			from, fromName = esdb.Revision(first), fmt.Sprint("revision ", first)
		}
		var want []uint64
		if dir == esdb.Forwards {
			if _, end := from.(esdb.End); !end {
				for r := max(first, s.visible); r < n && uint64(len(want)) < count; r++ {
					want = append(want, r)
				}
			}
		} else {
			for r := int64(min(first, n-1)); r >= int64(s.visible) && uint64(len(want)) < count; r-- {
				want = append(want, uint64(r))
			}
		}
		what := fmt.Sprintf("%s (%d events, visible from %d) read %s from %s, count %d", s.name, n, s.visible, dirName, fromName, count)
		got, err := readStream(t, c, s.name, esdb.ReadStreamOptions{Direction: dir, From: from}, count)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d events, want %d (revisions %v, want %v)", what, len(got), len(want), revisions(got), want)
		}
		for i, e := range got {
			r, ev := want[i], e.Event
			if ev.EventNumber != r || ev.EventID != s.events[r].EventID || !bytes.Equal(ev.Data, s.events[r].Data) {
				t.Fatalf("%s: event %d is %s@%d, want %s@%d with its data", what, i, ev.EventID, ev.EventNumber, s.events[r].EventID, r)
			}
		}
	}
}
