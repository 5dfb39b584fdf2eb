// Package estest starts an embedded event store for tests and connects the
// official client to it, so every package tests against the real protocol.
package estest

import (
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/orderly/orderly/internal/eventstore"
)

// Option adjusts the store Start opens.
type Option func(*eventstore.Config, testing.TB)

// OnDisk stores events in a fresh t.TempDir instead of memory.
func OnDisk() Option {
	return func(c *eventstore.Config, t testing.TB) { c.Dir = t.TempDir() }
}

// WithConfig edits the store's configuration (limits, buffer sizes, logger, Dir).
func WithConfig(edit func(*eventstore.Config)) Option {
	return func(c *eventstore.Config, _ testing.TB) { edit(c) }
}

// Start serves an event store on a loopback port until the test ends and
// returns its connection string.
func Start(t testing.TB, opts ...Option) string {
	t.Helper()
	_, connString := Serve(t, opts...)
	return connString
}

// Serve is Start, also returning the server (for tests that look inside).
func Serve(t testing.TB, opts ...Option) (*eventstore.Server, string) {
	t.Helper()
	var cfg eventstore.Config
	for _, o := range opts {
		o(&cfg, t)
	}
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
