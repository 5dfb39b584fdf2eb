// Package commandtest runs a command service for tests: an embedded event
// store, the service on a loopback gRPC server with its REST gateway, and
// helpers that fold aggregates straight from the store to check outcomes.
package commandtest

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/loopback"
	"github.com/orderly/orderly/internal/serve"
)

// Env is a running command service.
type Env struct {
	// ConnString is the event store's connection string.
	ConnString string
	// Conn is the service's connection to the store.
	Conn *eventlog.Conn
	// Store is an official client of its own, for checks.
	Store   *esdb.Client
	Service *command.Service
	// API calls the service over gRPC.
	API orderlyv1.CommandServiceClient
	// GatewayURL is the REST gateway's base URL.
	GatewayURL string
}

// Start runs a command service on a fresh store (estest options apply to
// the store) until the test ends.
func Start(t testing.TB, opts command.Options, storeOpts ...estest.Option) *Env {
	t.Helper()
	return StartOn(t, estest.Start(t, storeOpts...), opts)
}

// StartOn runs a command service on the store at connString.
func StartOn(t testing.TB, connString string, opts command.Options) *Env {
	t.Helper()
	// Warnings and errors are shown with the test's output (on failure or -v).
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	conn, err := eventlog.Connect(connString, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	svc, err := command.New(conn, log, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Before the connection closes (cleanups run last first): a page written
	// after the test would log to a finished test.
	t.Cleanup(func() { _ = svc.WaitSnapshots(context.Background()) })

	// Served as command-svc serves it: the gateway calls the gRPC listener.
	metrics := serve.NewMetrics()
	gs, _ := serve.NewGRPCServer(log, metrics, serve.Security{})
	svc.Register(gs)
	lis := loopback.Listen(t)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })

	gateway, closeConns, err := serve.NewGateway(context.Background(), metrics, serve.Security{}, serve.Upstream{Server: gs, Register: command.RegisterGateway})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeConns() })
	hs := httptest.NewServer(gateway)
	t.Cleanup(hs.Close)

	return &Env{
		ConnString: connString,
		Conn:       conn,
		Store:      estest.Client(t, connString),
		Service:    svc,
		API:        orderlyv1.NewCommandServiceClient(cc),
		GatewayURL: hs.URL,
	}
}

// HTTPClient is the client tests should use against GatewayURL.
var HTTPClient = &http.Client{Timeout: 10 * time.Second}

// Ctx is a context that ends with the test or after d.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// USD is an amount in US cents.
func USD(minor int64) *orderlyv1.Money {
	return &orderlyv1.Money{CurrencyCode: "USD", MinorUnits: minor}
}

// RegisterCustomer registers a customer with a limit in US cents and
// returns its ID.
func (e *Env) RegisterCustomer(t testing.TB, limit int64) string {
	t.Helper()
	resp, err := e.API.RegisterCustomer(Ctx(t, 10*time.Second), &orderlyv1.RegisterCustomerRequest{
		Name: "Ada Lovelace", Email: "ada@example.com", CreditLimit: USD(limit),
	})
	if err != nil {
		t.Fatalf("RegisterCustomer: %v", err)
	}
	return resp.CustomerId
}

// PlaceOrder places a one-line order of total cents and returns its ID.
func (e *Env) PlaceOrder(t testing.TB, customerID string, total int64) string {
	t.Helper()
	resp, err := e.API.PlaceOrder(Ctx(t, 10*time.Second), &orderlyv1.PlaceOrderRequest{
		CustomerId: customerID,
		Lines:      []*orderlyv1.OrderLine{{Sku: "SKU-1", Quantity: 1, UnitPrice: USD(total)}},
	})
	if err != nil {
		t.Fatalf("PlaceOrder: %v", err)
	}
	return resp.OrderId
}

// History reads a stream's events; a missing stream has none.
func (e *Env) History(t testing.TB, stream string) []eventlog.Recorded {
	t.Helper()
	recs, err := eventlog.Read(Ctx(t, 10*time.Second), e.Store, eventcodec.Default(), stream, 0, 0)
	if err != nil && !errors.Is(err, eventlog.ErrStreamNotFound) {
		t.Fatalf("read %s: %v", stream, err)
	}
	return recs
}

// Customer folds a customer from its stream.
func (e *Env) Customer(t testing.TB, id string) *domain.Customer {
	t.Helper()
	c := domain.NewCustomer(id)
	for _, r := range e.History(t, eventlog.CustomerStream(id)) {
		c.Apply(r.Event)
	}
	return c
}

// Order folds an order from its stream.
func (e *Env) Order(t testing.TB, id string) *domain.Order {
	t.Helper()
	o := domain.NewOrder(id)
	for _, r := range e.History(t, eventlog.OrderStream(id)) {
		o.Apply(r.Event)
	}
	return o
}

// Head is the commit position of the last event in the store.
func (e *Env) Head(t testing.TB) uint64 {
	t.Helper()
	rs, err := e.Store.ReadAll(Ctx(t, 10*time.Second), esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if err != nil {
		t.Fatalf("read $all: %v", err)
	}
	defer rs.Close()
	ev, err := rs.Recv()
	if err != nil {
		t.Fatalf("read $all: %v", err)
	}
	return ev.Event.Position.Commit
}
