package tracing_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/projection"
	"github.com/orderly/orderly/internal/saga"
	"github.com/orderly/orderly/internal/tracing"
	"github.com/orderly/orderly/internal/views/sqlite"
)

// TestTraceSpansTheEventHop: one client request's trace goes from the
// client through command-svc's gRPC server and its append into the event
// store's own server span, and on the other side of the store into the
// saga's step (and the reads and append that step makes) and the
// projector's write, which continue it from the event's $traceId/$spanId
// metadata.
func TestTraceSpansTheEventHop(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	otel.SetTracerProvider(tp)
	tracing.UsePropagator()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	// Only the aggregate last used stays cached, so the saga's step loads
	// the customer (the order was used since): the trace has a read.
	env := commandtest.Start(t, command.Options{CacheBytes: 1}, estest.WithConfig(func(c *eventstore.Config) { c.Traced = true }))
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	vs, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "views.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vs.Close() })
	credit, err := saga.New(env.Conn, env.Service, log, saga.Options{Registerer: prometheus.NewRegistry(), Leases: vs})
	if err != nil {
		t.Fatal(err)
	}
	projector, err := projection.New(env.Conn, vs, log, projection.Options{})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = credit.Run(runCtx); done <- struct{}{} }()
	go func() { _ = projector.Run(runCtx); done <- struct{}{} }()
	t.Cleanup(func() { stop(); <-done; <-done })

	cust := env.RegisterCustomer(t, 10_000)
	ctx, root := tp.Tracer("test").Start(commandtest.Ctx(t, 30*time.Second), "client request")
	resp, err := env.API.PlaceOrder(ctx, &orderlyv1.PlaceOrderRequest{CustomerId: cust,
		Lines: []*orderlyv1.OrderLine{{Sku: "A", Quantity: 1, UnitPrice: commandtest.USD(100)}}})
	root.End()
	if err != nil {
		t.Fatal(err)
	}
	traceID := root.SpanContext().TraceID()

	// The event carries the append's span.
	placed := env.History(t, eventlog.OrderStream(resp.OrderId))[0]
	if placed.Meta.TraceID != traceID.String() || placed.Meta.SpanID == "" {
		t.Fatalf("OrderPlaced metadata %+v; want trace %s", placed.Meta, traceID)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		doc, err := vs.GetOrder(ctx, resp.OrderId)
		if err == nil && doc.Status == domain.StatusApproved && hasSpan(exp, traceID, "projection orders", placed.Meta.SpanID) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("order not approved and projected within 20s: %+v %v\n%s", doc, err, dump(exp, traceID))
		}
		time.Sleep(20 * time.Millisecond)
	}

	// command → event store: the server span is the client's child, the
	// append the server's.
	server := find(t, exp, traceID, "orderly.v1.CommandService/PlaceOrder", trace.SpanKindServer)
	appendSpan := find(t, exp, traceID, "eventstore.append", trace.SpanKindProducer)
	if appendSpan.SpanContext.SpanID().String() != placed.Meta.SpanID {
		t.Errorf("the event names span %s; the append is %s", placed.Meta.SpanID, appendSpan.SpanContext.SpanID())
	}
	if appendSpan.Parent.SpanID() != server.SpanContext.SpanID() {
		t.Errorf("append's parent %s; want the server span %s", appendSpan.Parent.SpanID(), server.SpanContext.SpanID())
	}
	// event store → saga: its step is the append's child, and the
	// reservation it appends is the step's.
	step := find(t, exp, traceID, "saga orderly.OrderPlaced", trace.SpanKindConsumer)
	if step.Parent.SpanID().String() != placed.Meta.SpanID || !step.Parent.IsRemote() {
		t.Errorf("saga step's parent %v; want the append %s (remote)", step.Parent, placed.Meta.SpanID)
	}
	var reserved bool
	for _, s := range exp.GetSpans() {
		reserved = reserved || (s.Name == "eventstore.append" && s.Parent.SpanID() == step.SpanContext.SpanID())
	}
	if !reserved {
		t.Errorf("no append under the saga's step:\n%s", dump(exp, traceID))
	}
	// event store → projector: has been checked by the wait above.

	// Inside the event store: the official client's call is a client span
	// under the append, and the store's server span for it (recorded by its
	// stats handler from the call's metadata) is that span's child. Reads
	// go the same way: the saga's step loads the customer.
	call := childOf(t, exp, appendSpan, "esdb.AppendToStream", trace.SpanKindClient)
	childOf(t, exp, call, "event_store.client.streams.Streams/Append", trace.SpanKindServer)
	read := childOf(t, exp, step, "esdb.ReadStream", trace.SpanKindClient)
	childOf(t, exp, read, "event_store.client.streams.Streams/Read", trace.SpanKindServer)
}

func childOf(t *testing.T, exp *tracetest.InMemoryExporter, parent tracetest.SpanStub, name string, kind trace.SpanKind) tracetest.SpanStub {
	t.Helper()
	for _, s := range exp.GetSpans() {
		if s.Parent.SpanID() == parent.SpanContext.SpanID() && s.Name == name && s.SpanKind == kind {
			return s
		}
	}
	t.Fatalf("no %s span %q under %q:\n%s", kind, name, parent.Name, dump(exp, parent.SpanContext.TraceID()))
	return tracetest.SpanStub{}
}

func hasSpan(exp *tracetest.InMemoryExporter, traceID trace.TraceID, name, parent string) bool {
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID() == traceID && s.Name == name && s.Parent.SpanID().String() == parent {
			return true
		}
	}
	return false
}

func find(t *testing.T, exp *tracetest.InMemoryExporter, traceID trace.TraceID, name string, kind trace.SpanKind) tracetest.SpanStub {
	t.Helper()
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID() == traceID && s.Name == name && s.SpanKind == kind {
			return s
		}
	}
	t.Fatalf("no %s span %q in the trace:\n%s", kind, name, dump(exp, traceID))
	return tracetest.SpanStub{}
}

func dump(exp *tracetest.InMemoryExporter, traceID trace.TraceID) string {
	var out string
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID() == traceID {
			out += fmt.Sprintf("  %s %q span %s parent %s\n", s.SpanKind, s.Name, s.SpanContext.SpanID(), s.Parent.SpanID())
		}
	}
	return out
}
