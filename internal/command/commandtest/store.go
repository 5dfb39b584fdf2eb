package commandtest

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/orderly/orderly/internal/eventstore"
)

// Store is an on-disk embedded event store that a test can stop and start
// again on the same address, to play an outage.
type Store struct {
	t      testing.TB
	dir    string
	addr   string
	srv    *eventstore.Server
	served chan error
}

// StartStore serves a fresh on-disk store on a loopback port; it is stopped
// when the test ends.
func StartStore(t testing.TB) *Store {
	t.Helper()
	s := &Store{t: t, dir: t.TempDir(), addr: "127.0.0.1:0"}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// ConnString is the store's connection string; it survives restarts.
func (s *Store) ConnString() string { return fmt.Sprintf("esdb://%s?tls=false", s.addr) }

// Start serves the store again after Stop, on the same address and data.
func (s *Store) Start() {
	s.t.Helper()
	srv, err := eventstore.Open(eventstore.Config{Dir: s.dir})
	if err != nil {
		s.t.Fatalf("open event store: %v", err)
	}
	lis, err := net.Listen("tcp", s.addr)
	if err != nil {
		_ = srv.Close()
		s.t.Fatalf("listen on %s: %v", s.addr, err)
	}
	s.addr, s.srv, s.served = lis.Addr().String(), srv, make(chan error, 1)
	go func() { s.served <- srv.Serve(lis) }()
}

// Stop closes the store: connections are refused until Start.
func (s *Store) Stop() {
	if s.srv == nil {
		return
	}
	if err := errors.Join(s.srv.Close(), <-s.served); err != nil {
		s.t.Errorf("event store shutdown: %v", err)
	}
	s.srv = nil
}

// SilentStore listens on a loopback port, accepts connections and never
// answers, as a hung store would; it returns its connection string.
func SilentStore(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		_ = lis.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			_ = c.Close()
		}
	})
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	return fmt.Sprintf("esdb://%s?tls=false", lis.Addr())
}
