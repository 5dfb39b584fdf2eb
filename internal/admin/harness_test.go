package admin_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/admin"
	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/loopback"
	"github.com/orderly/orderly/internal/projection"
	"github.com/orderly/orderly/internal/saga"
	"github.com/orderly/orderly/internal/serve"
	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/sqlite"
)

// system is a command service with its saga, a projector into SQLite and
// an AdminService over them, served on loopback over gRPC and REST, as the
// all-in-one serves it.
type system struct {
	env       *commandtest.Env
	views     views.Store
	projector *projection.Projector
	saga      *saga.Saga
	admin     orderlyv1.AdminServiceClient
	restURL   string
	stopSaga  func()
}

// hosting says which processors the admin service's process runs, on
// which view store (a new one when nil).
type hosting struct {
	projector, saga bool
	views           views.Store
}

func start(t *testing.T, h hosting) *system {
	t.Helper()
	env := commandtest.Start(t, command.Options{})
	return startOn(t, env, h)
}

func startOn(t *testing.T, env *commandtest.Env, h hosting) *system {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	sys := &system{env: env}
	opts := admin.Options{Conn: env.Conn, Process: "admin-test", Log: log}
	// The view store holds the views and both processors' leases (the
	// saga's checkpoints with them).
	vs := h.views
	if vs == nil {
		opened, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "views.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = opened.Close() })
		vs = opened
	}
	sys.views = vs
	if h.projector {
		p, err := projection.New(env.Conn, vs, log, projection.Options{Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		background(t, p.Run)
		sys.projector = p
		opts.Projector, opts.Views = p, vs
	}
	if h.saga {
		s, err := saga.New(env.Conn, env.Service, log, saga.Options{MinBackoff: 20 * time.Millisecond, Registerer: prometheus.NewRegistry(), Leases: vs})
		if err != nil {
			t.Fatal(err)
		}
		sys.stopSaga = background(t, s.Run)
		sys.saga = s
		opts.Saga = s
	}
	svc := admin.New(opts)
	background(t, svc.Run)

	metrics := serve.NewMetrics()
	gs, _ := serve.NewGRPCServer(log, metrics, serve.Security{})
	svc.Register(gs)
	lis := loopback.Listen(t)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	sys.admin = orderlyv1.NewAdminServiceClient(cc)

	handler, closeConns, err := serve.NewGateway(context.Background(), metrics, serve.Security{}, serve.Upstream{Server: gs, Register: admin.RegisterGateway})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeConns() })
	hs := httptest.NewServer(handler)
	t.Cleanup(hs.Close)
	sys.restURL = hs.URL
	return sys
}

// background runs fn until the test ends or stop is called.
func background(t *testing.T, fn func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("background work: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func ctx(t *testing.T) context.Context { return commandtest.Ctx(t, 30*time.Second) }

const converge = 20 * time.Second

// eventually polls cond until it holds, failing the test after converge.
func eventually(t *testing.T, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(converge)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", converge, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processor returns processor name as ListProcessors (gRPC) lists it.
func (s *system) processor(t *testing.T, name string) *orderlyv1.Processor {
	t.Helper()
	resp, err := s.admin.ListProcessors(ctx(t), &orderlyv1.ListProcessorsRequest{})
	if err != nil {
		t.Fatalf("ListProcessors: %v", err)
	}
	for _, p := range resp.Processors {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("ListProcessors lists no %s: %v", name, resp.Processors)
	return nil
}

// appendRaw writes an event as another build (or a broken writer) would.
func (s *system) appendRaw(t *testing.T, stream, typ string, schema int, payload string) uint64 {
	t.Helper()
	res, err := s.env.Store.AppendToStream(ctx(t), stream, esdb.AppendToStreamOptions{}, esdb.EventData{
		EventType: typ, ContentType: esdb.ContentTypeJson, Data: []byte(payload), Metadata: fmt.Appendf(nil, `{"schema":%d}`, schema),
	})
	if err != nil {
		t.Fatal(err)
	}
	return res.CommitPosition
}

// rest calls the REST gateway and decodes its JSON answer into out (when
// not nil); it returns the status code.
func (s *system) rest(t *testing.T, method, path, body string, out any) int {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), method, s.restURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := commandtest.HTTPClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

// restError is a REST error body.
type restError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type            string `json:"@type"`
		Reason          string `json:"reason"`
		FieldViolations []struct {
			Field       string `json:"field"`
			Description string `json:"description"`
		} `json:"fieldViolations"`
	} `json:"details"`
}

func (e restError) fields() []string {
	var out []string
	for _, d := range e.Details {
		for _, v := range d.FieldViolations {
			out = append(out, v.Field)
		}
	}
	return out
}

func (e restError) reason() string {
	for _, d := range e.Details {
		if d.Reason != "" {
			return d.Reason
		}
	}
	return ""
}

// violations returns the fields a gRPC status names as bad.
func violations(err error) []string {
	var out []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.FieldViolations {
				out = append(out, v.Field)
			}
		}
	}
	return out
}

// reason returns a gRPC status's ErrorInfo reason.
func reason(err error) string {
	for _, d := range status.Convert(err).Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei.Reason
		}
	}
	return ""
}

func wantCode(t *testing.T, err error, code codes.Code, what string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: %v; want %v", what, err, code)
	}
}

// ndjson reads a REST stream's lines (each {"result":...} or {"error":...}).
func ndjson(t *testing.T, body io.Reader, each func(line []byte) bool) {
	t.Helper()
	sc := bufio.NewScanner(body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if !each(bytes.TrimSpace(sc.Bytes())) {
			return
		}
	}
}

// orphanOrder appends an OrderPlaced for customer (which does not exist),
// which the saga's reservation is refused for: a dead letter, for real.
func (s *system) orphanOrder(t *testing.T, customer string) (orderID string, pos uint64) {
	t.Helper()
	orderID = uuid.NewString()
	pos = s.appendRaw(t, "order-"+orderID, "orderly.OrderPlaced", 2, fmt.Sprintf(
		`{"order_id":%q,"customer_id":%q,"lines":[{"sku":"A","quantity":1,"unit_price":{"currency_code":"USD","minor_units":5}}],"total":{"currency_code":"USD","minor_units":5}}`,
		orderID, customer))
	return orderID, pos
}

func readRaw(t *testing.T, sys *system, stream string) []*esdb.RecordedEvent {
	t.Helper()
	raw, err := eventlog.ReadRaw(ctx(t), sys.env.Store, stream, 0, 0)
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	return raw
}
