package eventstore_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/metrictest"
)

// A stream whose events lie among another's large events, as snapshot page
// keys lie beside their pages, is read block by block: its own blocks, not
// the neighbours' too. An iterator sought from one event to the next
// stepped through the blocks between, so reading the keys of a long
// customer read its pages too, five times the keys' bytes.
func TestReadLoadsOnlyTheBlocksOfItsEvents(t *testing.T) {
	t.Run("forwards", func(t *testing.T) { readSparse(t, esdb.Forwards) })
	t.Run("backwards", func(t *testing.T) { readSparse(t, esdb.Backwards) })
}

func readSparse(t *testing.T, dir esdb.Direction) {
	reg := prometheus.NewRegistry()
	srv, addr := estest.Serve(t, estest.WithConfig(func(c *eventstore.Config) { c.Registerer = reg }))
	c := estest.Client(t, addr)
	const n = 100
	large := func(typ string) esdb.EventData { // larger than a block: a block of its own
		return esdb.EventData{EventID: uuid.New(), EventType: typ, ContentType: esdb.ContentTypeBinary, Data: bytes.Repeat([]byte(typ), 2000)}
	}
	big, sparse := streamName(t, "big"), streamName(t, "sparse")
	for range n {
		mustAppend(t, c, big, esdb.Any{}, large("page"))
		mustAppend(t, c, sparse, esdb.Any{}, large("keys"))
	}
	// And runs of consecutive events, read stepping from one block to the
	// next.
	for range 3 {
		mustAppend(t, c, sparse, esdb.Any{}, large("keys"), large("keys"), large("keys"))
	}
	if err := eventstore.FlushToTables(srv); err != nil {
		t.Fatal(err)
	}
	var from esdb.StreamPosition = esdb.Start{}
	if dir == esdb.Backwards {
		from = esdb.End{}
	}
	before := metrictest.Sum(t, reg, "orderly_eventstore_block_cache_misses_total")
	evs, err := readStream(t, c, sparse, esdb.ReadStreamOptions{Direction: dir, From: from}, n+9)
	if err != nil {
		t.Fatal(err)
	}
	read := metrictest.Sum(t, reg, "orderly_eventstore_block_cache_misses_total") - before
	if len(evs) != n+9 {
		t.Fatalf("read %d events, want %d", len(evs), n+9)
	}
	for i, e := range evs {
		want := uint64(i)
		if dir == esdb.Backwards {
			want = n + 8 - uint64(i)
		}
		if e.Event.EventNumber != want || e.Event.EventType != "keys" {
			t.Fatalf("event %d is %s@%d, want keys@%d", i, e.Event.EventType, e.Event.EventNumber, want)
		}
	}
	// One block per event, and a few of the tables' index and filter
	// blocks and the blocks of the stream's index entries.
	t.Logf("%v blocks read", read)
	if read > n+9+12 {
		t.Errorf("reading %d events read %v blocks from files", n+9, read)
	}
	if hits := metrictest.Sum(t, reg, "orderly_eventstore_block_cache_hits_total"); hits == 0 {
		t.Error("no block cache hits reported")
	}

	// A scrape once the store has closed reports nothing of its cache,
	// and does not touch the closed storage.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "orderly_eventstore_block_cache") {
			t.Errorf("%s reported after the store closed", f.GetName())
		}
	}
}
