package projection_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/projection"
	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/sqlite"
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

// runChild projects into the SQLite views at path until killed. Small
// batches make many commits, so a kill lands between and inside them.
func runChild(conn, path string) error {
	es, err := eventlog.Connect(conn, nil)
	if err != nil {
		return err
	}
	store, err := sqlite.Open(context.Background(), path)
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

func startChild(t *testing.T, conn, path string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(os.Args[0], "-test.run=^$")}
	c.cmd.Env = append(os.Environ(), childEventStore+"="+conn, childViews+"="+path)
	c.cmd.Stderr = &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.kill(t) })
	return c
}

// kill sends SIGKILL: no deferred function, no graceful shutdown.
func (c *child) kill(t *testing.T) {
	if c.cmd.ProcessState != nil {
		return
	}
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
	if c.stderr.Len() > 0 {
		t.Logf("child projector stderr:\n%s", c.stderr.String())
	}
}

// TestKill9 kills a projector process with SIGKILL while it is projecting,
// restarts it, and compares the views it ends with to a fresh rebuild.
func TestKill9(t *testing.T) {
	conn := estest.Start(t, estest.OnDisk())
	client, esConn := connect(t, conn)
	path := filepath.Join(t.TempDir(), "views.db")
	store := openSQLiteAt(t, path) // the same file the child writes
	w := newWriter(t, client)
	workload(w, "a", 10, 150)

	// Writers keep appending while the child projects and dies.
	var wg sync.WaitGroup
	appendMore := func(prefix string) {
		wg.Go(func() { workload(backgroundWriter(t, client), prefix, 5, 100) })
	}
	first := startChild(t, conn, path)
	appendMore("b")
	killedAt := waitPast(t, store, 200)
	first.kill(t)
	if head := headPosition(t, client); killedAt >= head {
		t.Fatalf("killed at %d with the head at %d: not mid-stream", killedAt, head)
	}

	appendMore("c") // while no projector runs
	wg.Wait()
	startChild(t, conn, path)
	final := headPosition(t, client)
	if _, err := views.WaitCheckpoint(testCtx(t, time.Minute), store, nil, final); err != nil {
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
	if len(afterRestart.Orders) != 350 || len(afterRestart.Customers) != 20 {
		t.Errorf("%d orders and %d customers, want 350 and 20", len(afterRestart.Orders), len(afterRestart.Customers))
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
