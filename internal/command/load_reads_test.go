package command

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/orderly/orderly/internal/eventlog"
)

// storeReads records the store calls made until t ends, each as its client
// span (eventlog.Op), and returns the reads of a stream so far. The tracer
// provider is the process's: t must not run in parallel with tests whose
// calls it would record, or that count allocations.
func storeReads(t *testing.T) func(stream string) int {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	otel.SetTracerProvider(tp)
	t.Cleanup(func() {
		otel.SetTracerProvider(noop.NewTracerProvider())
		_ = tp.Shutdown(context.Background())
	})
	return func(stream string) int {
		n := 0
		for _, s := range exp.GetSpans() {
			if s.Name == "esdb.ReadStream" && hasAttribute(s.Attributes, "orderly.stream", stream) {
				n++
			}
		}
		return n
	}
}

func hasAttribute(attrs []attribute.KeyValue, key, value string) bool {
	for _, a := range attrs {
		if string(a.Key) == key && a.Value.AsString() == value {
			return true
		}
	}
	return false
}

// A cold load reads the last snapshot page first. A customer without pages
// (most customers: a page takes SnapshotEvents events) then costs that one
// read and the read of its events, not a read of its keys and of its pages
// besides; a customer with pages reads its keys and no page but the last.
func TestColdLoadReads(t *testing.T) {
	reads := storeReads(t)

	connString, _, small, _ := storeWithCustomer(t, 1, 20)
	s := serviceOn(t, connString, Options{})
	stream := eventlog.CustomerStream(small)
	loaded(t, s, small)
	if p, k, e := reads(snapshotStream(stream)), reads(keysStream(stream)), reads(stream); p != 1 || k != 0 || e != 1 {
		t.Errorf("customer without pages: %d reads of its pages, %d of its keys, %d of its events; want 1, 0 and 1", p, k, e)
	}

	connString, _, opts, h := storeWithReservations(t, 100)
	stream = eventlog.CustomerStream(h.id)
	pagesBefore, keysBefore := reads(snapshotStream(stream)), reads(keysStream(stream))
	s = serviceOn(t, connString, opts)
	loaded(t, s, h.id)
	if value(s.metrics.pagesDeferred) == 0 {
		t.Fatal("no page deferred to its keys: not a lazy load")
	}
	if p, k := reads(snapshotStream(stream))-pagesBefore, reads(keysStream(stream))-keysBefore; p != 1 || k == 0 {
		t.Errorf("customer with pages: %d reads of its pages, %d of its keys; want 1 (the last page) and some", p, k)
	}
}
