package query_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/loopback"
	"github.com/orderly/orderly/internal/query"
	"github.com/orderly/orderly/internal/serve"
	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/mongo"
	"github.com/orderly/orderly/internal/views/mongo/ferrettest"
	"github.com/orderly/orderly/internal/views/sqlite"
)

// env is a query service over real gRPC and REST, on an embedded event store
// and a view store the test writes directly (standing in for the projector,
// whose own tests cover folding events into views).
type env struct {
	t      testing.TB
	ctx    context.Context
	store  *eventlog.Conn
	views  views.Store
	client orderlyv1.QueryServiceClient
	http   string // base URL of the REST gateway
}

type storeFactory func(t testing.TB) views.Store

// small reports whether the store under test is the FerretDB-backed one,
// which scans whole collections on every lookup: tests keep its data small.
func (e *env) small() bool { _, ok := e.views.(*mongo.Store); return ok }

func sqliteStore(t testing.TB) views.Store {
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "views.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// mongoStore is the MongoDB adapter on embedded FerretDB.
func mongoStore(t testing.TB) views.Store {
	s, err := mongo.Open(context.Background(), mongo.Config{URI: ferrettest.Start(t), BulkSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// stores are the view store adapters every test runs on.
var stores = map[string]storeFactory{"sqlite": sqliteStore, "mongo": mongoStore}

// eachStore runs fn once per view store adapter.
func eachStore(t *testing.T, fn func(t *testing.T, e *env)) {
	for name, f := range stores {
		t.Run(name, func(t *testing.T) { fn(t, start(t, f(t))) })
	}
}

func start(t testing.TB, vs views.Store) *env {
	t.Helper()
	return startOn(t, vs, estest.Start(t), 0)
}

// startOn is start on the event store at connString, with a store timeout
// (0: the default).
func startOn(t testing.TB, vs views.Store, connString string, storeTimeout time.Duration) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))

	conn, err := eventlog.Connect(connString, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	svc := query.New(conn, vs, query.Options{PageTokenKey: []byte("test"), MaxWait: time.Second, StoreTimeout: storeTimeout, Log: log})
	metrics := serve.NewMetrics()
	gs, _ := serve.NewGRPCServer(log, metrics, serve.Security{})
	svc.Register(gs)
	glis := loopback.Listen(t)
	hlis := loopback.Listen(t)
	handler, closeConns, err := serve.NewGateway(ctx, metrics, serve.Security{}, serve.Upstream{Server: gs, Register: query.RegisterGateway})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeConns() })
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}

	runDone := make(chan error, 1)
	go func() { runDone <- svc.Run(ctx) }()
	go func() { _ = gs.Serve(glis) }()
	go func() { _ = hs.Serve(hlis) }()
	t.Cleanup(func() {
		_ = hs.Close()
		gs.Stop()
		cancel()
		<-runDone
	})

	cc, err := grpc.NewClient(glis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return &env{t: t, ctx: ctx, store: conn, views: vs, client: orderlyv1.NewQueryServiceClient(cc), http: "http://" + hlis.Addr().String()}
}

// with returns e reporting to t, for use inside a subtest.
func (e *env) with(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// target is the live version of view v.
func (e *env) target(v views.View) views.Target {
	e.t.Helper()
	st, err := e.views.State(e.ctx, v)
	if err != nil {
		e.t.Fatal(err)
	}
	return views.Target{View: v, Version: st.Live}
}

// apply writes docs to the live views, each view's checkpoint set to cp.
func (e *env) apply(cp uint64, orders []views.OrderDoc, customers []views.CustomerDoc) {
	e.t.Helper()
	const chunk = 200 // keeps each batch modest on every adapter
	for from := 0; from == 0 || from < len(orders); from += chunk {
		e.applyTo(views.Orders, views.Batch{Orders: orders[from:min(from+chunk, len(orders))], Checkpoint: cp})
	}
	e.applyTo(views.Customers, views.Batch{Customers: customers, Checkpoint: cp})
}

func (e *env) applyTo(v views.View, b views.Batch) {
	e.t.Helper()
	if err := e.views.Apply(e.ctx, e.target(v), b); err != nil {
		e.t.Fatal(err)
	}
}

// rest sends a request to the gateway and decodes the JSON answer into out
// (when not nil); it returns the HTTP status and the raw body.
func (e *env) rest(method, path string, body string, out any) (int, string) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.ctx, method, e.http+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, string(raw)
}

// restError is the JSON error body grpc-gateway writes.
type restError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type            string `json:"@type"`
		FieldViolations []struct {
			Field       string `json:"field"`
			Description string `json:"description"`
		} `json:"fieldViolations"`
	} `json:"details"`
}

// wantRESTError checks an error answer's HTTP status and, when field is set,
// that the body names it in a BadRequest violation.
func (e *env) wantRESTError(method, path string, status int, field string) {
	e.t.Helper()
	code, raw := e.rest(method, path, "", nil)
	if code != status {
		e.t.Fatalf("%s %s = %d %s, want %d", method, path, code, raw, status)
	}
	var re restError
	if err := json.Unmarshal([]byte(raw), &re); err != nil || re.Message == "" {
		e.t.Fatalf("%s %s: error body %q is not a JSON error: %v", method, path, raw, err)
	}
	if field == "" {
		return
	}
	for _, d := range re.Details {
		for _, v := range d.FieldViolations {
			if v.Field == field && v.Description != "" {
				return
			}
		}
	}
	e.t.Fatalf("%s %s: body %s does not name field %q", method, path, raw, field)
}
