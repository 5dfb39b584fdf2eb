package eventstore_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/loopback"
)

// crashChildEnv makes the test binary act as a standalone store (the crash
// test's child) instead of running tests.
const crashChildEnv = "ORDERLY_EVENTSTORE_CRASH_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		runCrashChild(dir)
		return
	}
	os.Exit(m.Run())
}

// runCrashChild serves the store in dir and prints its address; it runs until killed.
func runCrashChild(dir string) {
	srv, err := eventstore.Open(eventstore.Config{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(1)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(1)
	}
	fmt.Printf("ADDR %s\n", lis.Addr())
	_ = srv.Serve(lis)
}

// serveDir runs a store on dir until the returned stop is called.
func serveDir(t *testing.T, dir string) (*esdb.Client, func()) {
	t.Helper()
	srv, err := eventstore.Open(eventstore.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	lis := loopback.Listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	cfg, err := esdb.ParseConnectionString(fmt.Sprintf("esdb://%s?tls=false", lis.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = esdb.NoopLogging()
	c, err := esdb.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, func() {
		_ = c.Close()
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Error(err)
		}
	}
}

func TestPersistenceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	c, stop := serveDir(t, dir)
	mustAppend(t, c, "kept", esdb.NoStream{}, events(3, "e")...)
	mustAppend(t, c, "gone", esdb.NoStream{}, events(1, "e")...)
	mustAppend(t, c, "dead", esdb.NoStream{}, events(1, "e")...)
	if _, err := c.DeleteStream(testCtx(t), "gone", esdb.DeleteStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TombstoneStream(testCtx(t), "dead", esdb.TombstoneStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	before := readAll(t, c, esdb.ReadAllOptions{}, 100)
	stop()

	c, stop = serveDir(t, dir)
	defer stop()
	after := readAll(t, c, esdb.ReadAllOptions{}, 100)
	if !sameEvents(before, after) {
		t.Fatalf("$all changed across restart: %v vs %v", ids(before), ids(after))
	}
	res := mustAppend(t, c, "kept", esdb.Revision(2), events(1, "e")...)
	if res.NextExpectedVersion != 3 || res.CommitPosition <= before[len(before)-1].Event.Position.Commit {
		t.Fatalf("append after restart: %+v, want revision 3 after position %v", res, before[len(before)-1].Event.Position)
	}
	_, err := readStream(t, c, "gone", esdb.ReadStreamOptions{}, 10)
	wantCode(t, err, esdb.ErrorCodeResourceNotFound)
	_, err = c.AppendToStream(testCtx(t), "dead", esdb.AppendToStreamOptions{}, events(1, "e")...)
	wantCode(t, err, esdb.ErrorCodeStreamDeleted)
}

// TestCrashRecovery kills a store process with SIGKILL while writers append
// to it, then checks that every acknowledged append survived, in order, and
// that no append survived in part. While the child runs, a second store on its
// directory is refused with an error that says why.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), crashChildEnv+"="+dir)
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		t.Fatalf("child said %q, %v", line, err)
	}
	c := estest.Client(t, "esdb://"+strings.TrimSpace(strings.TrimPrefix(line, "ADDR "))+"?tls=false")
	if _, err := eventstore.Open(eventstore.Config{Dir: dir}); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("a second store on the child's directory: %v, want an error saying it is in use", err)
	}

	const writers, batch = 8, 5
	acked := make([][][]uuid.UUID, writers) // per writer: acknowledged batches of event IDs
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for w := range writers {
		wg.Go(func() {
			var exp esdb.ExpectedRevision = esdb.NoStream{}
			for ctx.Err() == nil {
				evs := events(batch, "crash")
				res, err := c.AppendToStream(ctx, fmt.Sprintf("crash-%d", w), esdb.AppendToStreamOptions{ExpectedRevision: exp}, evs...)
				if err != nil {
					return // the store is gone
				}
				exp = esdb.Revision(res.NextExpectedVersion)
				batchIDs := make([]uuid.UUID, batch)
				for i, ev := range evs {
					batchIDs[i] = ev.EventID
				}
				acked[w] = append(acked[w], batchIDs)
				mu.Lock()
				total++
				mu.Unlock()
			}
		})
	}
	// Kill mid-load, once a fair number of appends have been acknowledged.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := total
		mu.Unlock()
		if n >= 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d appends acknowledged before the deadline", n)
		}
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	cancel()
	wg.Wait()

	rc, stop := serveDir(t, dir)
	defer stop()
	var lastPos uint64
	for w := range writers {
		stream := fmt.Sprintf("crash-%d", w)
		got, err := readStream(t, rc, stream, esdb.ReadStreamOptions{}, 1<<20)
		if err != nil {
			t.Fatalf("%s: %v", stream, err)
		}
		if len(got)%batch != 0 {
			t.Fatalf("%s has %d events: a partial append is visible", stream, len(got))
		}
		if len(got) < len(acked[w])*batch {
			t.Fatalf("%s has %d events, but %d were acknowledged", stream, len(got), len(acked[w])*batch)
		}
		for b, ids := range acked[w] {
			for i, id := range ids {
				ev := got[b*batch+i].Event
				if ev.EventID != id || ev.EventNumber != uint64(b*batch+i) {
					t.Fatalf("%s revision %d: %v, want acknowledged event %v", stream, b*batch+i, ev.EventID, id)
				}
			}
		}
	}
	for i, ev := range readAll(t, rc, esdb.ReadAllOptions{}, 1<<20) {
		if ev.Event.Position.Commit <= lastPos {
			t.Fatalf("$all event %d at %v does not follow %d", i, ev.Event.Position, lastPos)
		}
		lastPos = ev.Event.Position.Commit
	}
	// And the recovered store keeps working.
	mustAppend(t, rc, "crash-0", esdb.Any{}, events(1, "after")...)
}

// TestStatesOfAnOlderLayoutMove opens a store written before stream states
// moved into the index range: every state moves on Open, and the streams
// keep their revisions, metadata, deletes and tombstones.
func TestStatesOfAnOlderLayoutMove(t *testing.T) {
	dir := t.TempDir()
	c, stop := serveDir(t, dir)
	mustAppend(t, c, "kept", esdb.NoStream{}, events(4, "e")...)
	setMeta(t, c, "kept", esdb.NoStream{}, maxCount(2))
	mustAppend(t, c, "plain", esdb.NoStream{}, events(3, "e")...)
	mustAppend(t, c, "deleted", esdb.NoStream{}, events(1, "e")...)
	if _, err := c.DeleteStream(testCtx(t), "deleted", esdb.DeleteStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, c, "dead", esdb.NoStream{}, events(1, "e")...)
	if _, err := c.TombstoneStream(testCtx(t), "dead", esdb.TombstoneStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	// More streams than Open moves in one batch.
	const many = 5000
	var next atomic.Int64
	concurrentRate(t, 16, many, func(int) error {
		_, err := c.AppendToStream(testCtx(t), fmt.Sprintf("many-%d", next.Add(1)-1), esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, events(1, "e")...)
		return err
	})
	before := readAll(t, c, esdb.ReadAllOptions{}, 2*many)
	stop()
	// kept, $$kept, plain, deleted, dead, many-*.
	if n := eventstore.ToLegacyStateKeys(t, dir); n < 5+many {
		t.Fatalf("rewrote %d states to the old layout, want at least %d", n, 5+many)
	}

	c, stop = serveDir(t, dir)
	if after := readAll(t, c, esdb.ReadAllOptions{}, 2*many); !sameEvents(before, after) {
		t.Fatalf("$all changed: %d events before, %d after", len(before), len(after))
	}
	wantRevisions(t, c, "kept", false, 2, 3)
	mustAppend(t, c, "plain", esdb.Revision(2), events(1, "e")...)
	for _, i := range []int{0, many / 2, many - 1} {
		mustAppend(t, c, fmt.Sprintf("many-%d", i), esdb.Revision(0), events(1, "e")...)
	}
	_, err := readStream(t, c, "deleted", esdb.ReadStreamOptions{}, 10)
	wantCode(t, err, esdb.ErrorCodeResourceNotFound)
	_, err = c.AppendToStream(testCtx(t), "dead", esdb.AppendToStreamOptions{}, events(1, "e")...)
	wantCode(t, err, esdb.ErrorCodeStreamDeleted)
	stop()
	if n := eventstore.LegacyStateKeys(t, dir); n != 0 {
		t.Fatalf("%d states left in the old layout", n)
	}
}

// TestStoreOfANewerLayoutIsRefused: a store written by a newer build, in a
// key layout this one does not know, is refused with a reason, not misread.
func TestStoreOfANewerLayoutIsRefused(t *testing.T) {
	dir := t.TempDir()
	_, stop := serveDir(t, dir)
	stop()
	eventstore.SetLayout(t, dir, 99)
	_, err := eventstore.Open(eventstore.Config{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "newer build") {
		t.Fatalf("open of a store in key layout 99: %v, want a refusal naming a newer build", err)
	}
}
