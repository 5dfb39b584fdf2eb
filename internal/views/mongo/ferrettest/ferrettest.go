// Package ferrettest serves an embedded FerretDB (the MongoDB wire protocol
// over SQLite) for tests, so code that speaks MongoDB through the official
// driver is tested against a real server without one installed. FerretDB
// scans a collection on every lookup: keep the data small (see
// DESIGN.md and notes/ferretdb.md).
package ferrettest

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// newMu serializes ferretdb.New, which writes a package-level global and
// races with itself when parallel tests start servers.
var newMu sync.Mutex

// Server is an embedded FerretDB that a test can stop and start again on
// the same address and data, to play a database outage.
type Server struct {
	t      testing.TB
	dir    string
	addr   string
	cancel context.CancelFunc
	done   chan struct{}
}

// Start serves FerretDB on a loopback port with its data in a fresh
// t.TempDir, until the test ends, and returns its connection URI. Clients
// made after Start are cleaned up before it (cleanups run last-in first-out),
// which is what lets FerretDB stop at once instead of waiting on them.
func Start(t testing.TB) string {
	t.Helper()
	return StartServer(t).URI()
}

// StartServer is Start for a test that also needs to stop the server.
func StartServer(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, dir: t.TempDir(), addr: "127.0.0.1:0"}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// URI is the server's MongoDB connection string.
func (s *Server) URI() string { return "mongodb://" + s.addr + "/" }

// Stop shuts the server down; clients see connection errors until Restart.
func (s *Server) Stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	<-s.done
	s.cancel = nil
}

// Restart starts a stopped server again, on the same address and data.
func (s *Server) Restart() {
	s.t.Helper()
	if s.cancel != nil {
		s.t.Fatal("ferrettest: Restart of a running server")
	}
	f, err := newFerret(s.addr, s.dir)
	if err != nil {
		s.t.Fatalf("ferrettest: %v", err)
	}
	if s.addr == "127.0.0.1:0" {
		u, err := url.Parse(f.MongoDBURI())
		if err != nil {
			s.t.Fatalf("ferrettest: address of %s: %v", f.MongoDBURI(), err)
		}
		s.addr = u.Host // keep the port across restarts
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		_ = f.Run(ctx)
	}()
}

func newFerret(addr, dir string) (*ferretdb.FerretDB, error) {
	newMu.Lock()
	defer newMu.Unlock()
	// A port just released by Stop may linger briefly; retry binding it.
	var err error
	for range 50 {
		var f *ferretdb.FerretDB
		f, err = ferretdb.New(&ferretdb.Config{
			Listener:  ferretdb.ListenerConfig{TCP: addr},
			Handler:   "sqlite",
			SQLiteURL: "file:" + dir + "/",
			// Failed commands are logged whole at WARN; tests provoke some.
			Logger: slog.New(slog.DiscardHandler),
		})
		if err == nil {
			return f, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, errors.Join(errors.New("start FerretDB on "+addr), err)
}

// Serve runs FerretDB on addr with its data in dir until ctx is done: for
// a test that needs the database in a process of its own, to kill it.
func Serve(ctx context.Context, addr, dir string) error {
	f, err := newFerret(addr, dir)
	if err != nil {
		return err
	}
	return f.Run(ctx)
}
