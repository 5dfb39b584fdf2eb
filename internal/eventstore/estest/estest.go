// Package estest starts an embedded event store for tests and connects the
// official client to it, so every package tests against the real protocol.
//
// With ORDERLY_TEST_EVENTSTORE set to a connection string (esdb://...), Start
// hands that server to the tests that can share one (they say so with
// Shareable), so they run against a real EventStoreDB or KurrentDB. The
// server is shared by every test and every run: the other tests (a
// configured embedded store, an empty $all, fixed stream names or
// checkpoints) are skipped there, saying why. A server that cannot be
// reached fails the test; it never falls back to the embedded store.
package estest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/orderly/orderly/internal/eventstore"
)

// ServerEnv names the connection string of a real server to test against.
const ServerEnv = "ORDERLY_TEST_EVENTSTORE"

// Real reports whether tests run against the server ServerEnv names.
func Real() bool { return os.Getenv(ServerEnv) != "" }

// Fresh skips a test that needs an event store nobody else writes to (it
// reads $all from the start, or reuses fixed stream names) when tests run
// against a shared real server.
func Fresh(t testing.TB) {
	t.Helper()
	if Real() {
		t.Skipf("needs an event store of its own; %s names a shared server", ServerEnv)
	}
}

// checked remembers, per connection string, whether the real server answered.
var checked sync.Map // string -> error

// realServer returns connString once the server has answered a read.
func realServer(t testing.TB, connString string) string {
	t.Helper()
	v, ok := checked.Load(connString)
	if !ok {
		v, _ = checked.LoadOrStore(connString, reach(connString))
	}
	if err, _ := v.(error); err != nil {
		t.Fatalf("estest: %s=%q: %v", ServerEnv, connString, err)
	}
	return connString
}

// reach reads a stream that need not exist: not found is an answer.
func reach(connString string) error {
	cfg, err := esdb.ParseConnectionString(connString)
	if err != nil {
		return fmt.Errorf("not a connection string: %w", err)
	}
	cfg.Logger = esdb.NoopLogging()
	c, err := esdb.NewClient(cfg)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rs, err := c.ReadStream(ctx, "orderly-estest-reach", esdb.ReadStreamOptions{}, 1)
	if err == nil {
		defer rs.Close()
		_, err = rs.Recv()
	}
	var esErr *esdb.Error
	if err == nil || errors.Is(err, io.EOF) || (errors.As(err, &esErr) && esErr.Code() == esdb.ErrorCodeResourceNotFound) {
		return nil
	}
	return fmt.Errorf("the server did not answer a read: %w", err)
}

// Option adjusts the store Start opens.
type Option func(*settings, testing.TB)

type settings struct {
	cfg       eventstore.Config
	shareable bool
}

// Shareable says the test can run on a server others write to (ServerEnv):
// its stream names are its own, and it reads no more of $all than it wrote.
func Shareable() Option {
	return func(s *settings, _ testing.TB) { s.shareable = true }
}

// OnDisk stores events in a fresh t.TempDir instead of memory.
func OnDisk() Option {
	return func(s *settings, t testing.TB) { s.cfg.Dir = t.TempDir() }
}

// WithConfig edits the store's configuration (limits, buffer sizes, logger, Dir).
func WithConfig(edit func(*eventstore.Config)) Option {
	return func(s *settings, _ testing.TB) { edit(&s.cfg) }
}

// Start serves an event store on a loopback port until the test ends and
// returns its connection string; with ServerEnv set it returns that server's,
// and skips a test whose options configure the embedded store.
func Start(t testing.TB, opts ...Option) string {
	t.Helper()
	if !Real() {
		_, connString := Serve(t, opts...)
		return connString
	}
	set := configure(t, opts)
	set.cfg.Dir = "" // on disk or not is the server's business
	switch {
	case !set.shareable:
		t.Skipf("needs an event store of its own; %s names a shared server", ServerEnv)
	case set.cfg != (eventstore.Config{}):
		t.Skipf("configures the embedded event store; %s names another server", ServerEnv)
	}
	return realServer(t, os.Getenv(ServerEnv))
}

// Serve is Start, also returning the server (for tests that look inside);
// it always serves an embedded store, so with ServerEnv set it skips.
func Serve(t testing.TB, opts ...Option) (*eventstore.Server, string) {
	t.Helper()
	if Real() {
		t.Skipf("looks inside the embedded event store; %s names another server", ServerEnv)
	}
	cfg := configure(t, opts).cfg
	srv, err := eventstore.Open(cfg)
	if err != nil {
		t.Fatalf("estest: open event store: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = srv.Close()
		t.Fatalf("estest: listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		if err := errors.Join(srv.Close(), <-served); err != nil {
			t.Errorf("estest: event store shutdown: %v", err)
		}
	})
	return srv, fmt.Sprintf("esdb://%s?tls=false", lis.Addr())
}

// Client returns an official client for connString, closed when the test ends.
// Its logging is off: the client logs every expected error (a deleted stream,
// a dropped subscription) on stdout.
func Client(t testing.TB, connString string) *esdb.Client {
	t.Helper()
	cfg, err := esdb.ParseConnectionString(connString)
	if err != nil {
		t.Fatalf("estest: parse %q: %v", connString, err)
	}
	cfg.Logger = esdb.NoopLogging()
	c, err := esdb.NewClient(cfg)
	if err != nil {
		t.Fatalf("estest: new client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func configure(t testing.TB, opts []Option) settings {
	var s settings
	for _, o := range opts {
		o(&s, t)
	}
	return s
}
