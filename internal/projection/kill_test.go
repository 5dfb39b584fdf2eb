package projection_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/projection"
	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/mongo/ferrettest"
	"github.com/orderly/orderly/internal/views/viewstore"
)

// The test binary doubles as a projector process: with these variables set,
// TestMain runs a live projector instead of the tests.
const (
	childEventStore = "ORDERLY_PROJECTION_TEST_CHILD_EVENTSTORE"
	childViews      = "ORDERLY_PROJECTION_TEST_CHILD_VIEWS"
)

func TestMain(m *testing.M) {
	if conn := os.Getenv(childEventStore); conn != "" {
		if err := runChild(conn, os.Getenv(childViews)); err != nil {
			fmt.Fprintln(os.Stderr, "child projector:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childStore is where a child projector keeps its views: "sqlite" in a
// data directory, or "mongo" at a URI (embedded FerretDB served by the
// parent), in the database the parent reads.
func childStore(kind, location string) viewstore.Config {
	return viewstore.Config{Kind: kind, DataDir: location, MongoURI: location, MongoDatabase: "views", MongoBulkSize: 64}
}

// runChild projects into the views spec names ("KIND=LOCATION") until
// killed. Small batches make many commits, so a kill lands between and
// inside them.
func runChild(conn, spec string) error {
	es, err := eventlog.Connect(conn, nil)
	if err != nil {
		return err
	}
	kind, location, _ := strings.Cut(spec, "=")
	store, err := viewstore.Open(context.Background(), childStore(kind, location))
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := projection.New(es, store, log, projection.Options{BatchSize: 4, BatchWait: time.Millisecond})
	if err != nil {
		return err
	}
	return p.Run(context.Background())
}

type child struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
}

func startChild(t *testing.T, conn, spec string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(os.Args[0], "-test.run=^$")}
	c.cmd.Env = append(os.Environ(), childEventStore+"="+conn, childViews+"="+spec)
	c.cmd.Stderr = &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.kill(t) })
	return c
}

// kill sends SIGKILL: no deferred function, no graceful shutdown.
func (c *child) kill(t *testing.T) { c.stop(t, os.Kill) }

// dump stops the child with SIGQUIT, on which the Go runtime prints every
// goroutine's stack to the stderr that stop logs: a child that stalls
// shows where.
func (c *child) dump(t *testing.T) { c.stop(t, syscall.SIGQUIT) }

func (c *child) stop(t *testing.T, sig os.Signal) {
	if c.cmd.ProcessState != nil {
		return
	}
	_ = c.cmd.Process.Signal(sig)
	// SIGQUIT ends a Go process once it has printed its stacks; should it
	// not, the kill that follows does.
	killLater := time.AfterFunc(10*time.Second, func() { _ = c.cmd.Process.Kill() })
	defer killLater.Stop()
	_ = c.cmd.Wait()
	if c.stderr.Len() > 0 {
		t.Logf("child projector stderr:\n%s", c.stderr.String())
	}
}

// TestKill9 kills a projector process with SIGKILL while it is projecting,
// restarts it, and compares the views it ends with to a fresh rebuild, on
// both view stores.
func TestKill9(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		kill9(t, openSQLiteAt(t, filepath.Join(dir, viewstore.SQLiteFile)), viewstore.SQLite+"="+dir, 5)
	})
	t.Run("mongo", func(t *testing.T) {
		uri := ferrettest.Start(t)
		kill9(t, openMongoAt(t, uri), viewstore.Mongo+"="+uri, 1) // FerretDB: small data
	})
}

// kill9 runs the kill test with store, the parent's handle on the views the
// child projector writes (spec, see runChild), on a history of 70×scale
// orders of 4×scale customers.
func kill9(t *testing.T, store views.Store, spec string, scale int) {
	conn := estest.Start(t, estest.OnDisk())
	client, esConn := connect(t, conn)
	w := newWriter(t, client)
	workload(w, "a", 2*scale, 30*scale)

	// Writers keep appending while the child projects and dies.
	var wg sync.WaitGroup
	appendMore := func(prefix string) {
		wg.Go(func() { workload(backgroundWriter(t, client), prefix, scale, 20*scale) })
	}
	first := startChild(t, conn, spec)
	appendMore("b")
	killedAt := waitPast(t, store, uint64(40*scale))
	first.kill(t)
	if head := headPosition(t, client); killedAt >= head {
		t.Fatalf("killed at %d with the head at %d: not mid-stream", killedAt, head)
	}

	appendMore("c") // while no projector runs
	wg.Wait()
	second := startChild(t, conn, spec)
	final := headPosition(t, client)
	if _, err := views.WaitCheckpoint(testCtx(t, time.Minute), store, nil, final); err != nil {
		second.dump(t)
		t.Fatalf("restarted projector never reached %d: %v", final, err)
	}
	afterRestart := snap(t, store)

	rb, err := projection.New(esConn, store, quietLog(), projection.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := rb.Rebuild(testCtx(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, "views after kill -9 and restart vs a fresh rebuild", afterRestart, snap(t, store))
	if len(afterRestart.Orders) != 70*scale || len(afterRestart.Customers) != 4*scale {
		t.Errorf("%d orders and %d customers, want %d and %d", len(afterRestart.Orders), len(afterRestart.Customers), 70*scale, 4*scale)
	}
}

// waitPast waits until the views' checkpoint passes pos and returns it.
func waitPast(t *testing.T, r views.Reader, pos uint64) uint64 {
	t.Helper()
	cp, err := views.WaitCheckpoint(testCtx(t, time.Minute), r, nil, pos)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func headPosition(t *testing.T, c *esdb.Client) uint64 {
	t.Helper()
	rs, err := c.ReadAll(testCtx(t, 10*time.Second), esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	ev, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return ev.OriginalEvent().Position.Commit
}
