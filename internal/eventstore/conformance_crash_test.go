package eventstore_test

// Durability against a simulated crash: Pebble writes to an in-memory
// filesystem that can be cloned as a crash would leave it, keeping exactly the
// data that was synced. Unlike a SIGKILL (the page cache survives it), this
// drops every unsynced write, every run.

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/eventstore/estest"
)

// onFS serves a store whose files live in fs.
func onFS(t *testing.T, fs vfs.FS) (*eventstore.Server, *esdb.Client) {
	t.Helper()
	srv, conn := estest.Serve(t, estest.WithConfig(func(c *eventstore.Config) {
		c.Dir = "store"
		eventstore.UseFS(fs)(c)
	}))
	return srv, estest.Client(t, conn)
}

func eventIDs(evs []*esdb.ResolvedEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Event.StreamID + "/" + ev.Event.EventID.String()
	}
	return out
}

// TestAcknowledgedAppendsSurviveSimulatedCrash: everything acknowledged
// (appends, a soft delete, a tombstone) is on disk when the answer is given.
func TestAcknowledgedAppendsSurviveSimulatedCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	_, c := onFS(t, fs)
	for i := range 10 {
		mustAppend(t, c, "acked-"+string(rune('a'+i%3)), esdb.Any{}, events(3, "e")...)
	}
	mustAppend(t, c, "deleted", esdb.NoStream{}, events(1, "e")...)
	if _, err := c.DeleteStream(testCtx(t), "deleted", esdb.DeleteStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, c, "tombstoned", esdb.NoStream{}, events(1, "e")...)
	if _, err := c.TombstoneStream(testCtx(t), "tombstoned", esdb.TombstoneStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	want := eventIDs(readAll(t, c, esdb.ReadAllOptions{}, 1000))

	// The store is still running: this is the disk as a power cut now would leave it.
	_, rc := onFS(t, fs.CrashClone(vfs.CrashCloneCfg{}))
	if got := eventIDs(readAll(t, rc, esdb.ReadAllOptions{}, 1000)); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("after a crash $all holds %d events, want the %d acknowledged", len(got), len(want))
	}
	_, err := readStream(t, rc, "deleted", esdb.ReadStreamOptions{}, 10)
	wantCode(t, err, esdb.ErrorCodeResourceNotFound)
	_, err = rc.AppendToStream(testCtx(t), "tombstoned", esdb.AppendToStreamOptions{}, events(1, "e")...)
	wantCode(t, err, esdb.ErrorCodeStreamDeleted)
}

// TestReadsNeverShowUnsyncedEvents holds the WAL sync of one append open.
// Pebble makes the append's batch readable meanwhile; the store must neither
// answer the append nor show its event to any read until the sync is done,
// and a crash at that moment takes the event back.
func TestReadsNeverShowUnsyncedEvents(t *testing.T) {
	mem := vfs.NewCrashableMem()
	gate := newSyncGate()
	srv, c := onFS(t, gatedFS{FS: mem, gate: gate})
	t.Cleanup(gate.open) // before the store closes (cleanups run last first)
	res := mustAppend(t, c, "synced", esdb.NoStream{}, events(3, "e")...)
	before := eventIDs(readAll(t, c, esdb.ReadAllOptions{}, 100))

	gate.arm()
	answered := eventstore.AppendPending(srv, "pending")
	ctx := testCtx(t)
	heldInSync(t, srv, gate, res.CommitPosition+1, answered)

	_, err := readStream(t, c, "pending", esdb.ReadStreamOptions{}, 10)
	wantCode(t, err, esdb.ErrorCodeResourceNotFound)
	for _, tc := range []struct {
		name string
		opts esdb.ReadAllOptions
	}{
		{"forwards", esdb.ReadAllOptions{}},
		{"backwards", esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}},
		{"from the pending position", esdb.ReadAllOptions{From: esdb.Position{Commit: res.CommitPosition + 1, Prepare: res.CommitPosition + 1}}},
	} {
		for _, ev := range readAll(t, c, tc.opts, 100) {
			if ev.Event.StreamID == "pending" {
				t.Fatalf("$all read %s shows an event whose WAL sync has not finished", tc.name)
			}
		}
	}

	_, rc := onFS(t, mem.CrashClone(vfs.CrashCloneCfg{}))
	if got := eventIDs(readAll(t, rc, esdb.ReadAllOptions{}, 100)); strings.Join(got, " ") != strings.Join(before, " ") {
		t.Fatalf("after a crash mid-sync $all = %v, want %v", got, before)
	}

	gate.open()
	for !answered() {
		if ctx.Err() != nil {
			t.Fatal("the append was never answered after its sync finished")
		}
		time.Sleep(time.Millisecond)
	}
	if evs, err := readStream(t, c, "pending", esdb.ReadStreamOptions{}, 10); err != nil || len(evs) != 1 {
		t.Fatalf("after the sync the pending stream reads %d events, %v; want 1", len(evs), err)
	}
}

// heldInSync waits until the append at pos, armed to block in gate, is in
// Pebble's live state with its WAL sync still running and no answer given.
func heldInSync(t *testing.T, srv *eventstore.Server, gate *syncGate, pos uint64, answered func() bool) {
	t.Helper()
	ctx := testCtx(t)
	select {
	case <-gate.entered:
	case <-ctx.Done():
		t.Fatal("the pending append never synced its WAL")
	}
	for !eventstore.Visible(srv, pos) {
		if ctx.Err() != nil {
			t.Fatal("the pending append never became visible in Pebble")
		}
		time.Sleep(time.Millisecond)
	}
	if answered() {
		t.Fatal("the append was answered while its WAL sync was still running")
	}
}

// Metadata whose WAL sync has not finished retires nothing yet: neither a
// read nor a subscription's catch-up applies it.
func TestRetentionNeverComesFromUnsyncedMetadata(t *testing.T) {
	gate := newSyncGate()
	srv, c := onFS(t, gatedFS{FS: vfs.NewCrashableMem(), gate: gate})
	t.Cleanup(gate.open) // before the store closes (cleanups run last first)
	res := mustAppend(t, c, "kept", esdb.NoStream{}, events(3, "e")...)

	gate.arm()
	answered, err := eventstore.MetadataPending(srv, "kept", []byte(`{"$maxCount":1}`))
	if err != nil {
		t.Fatal(err)
	}
	heldInSync(t, srv, gate, res.CommitPosition+1, answered)

	wantRevisions(t, c, "kept", false, 0, 1, 2)
	sub, err := c.SubscribeToStream(testCtx(t), "kept", esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if r := collect(t, sub, 3, 10*time.Second); len(r.events) != 3 || r.caughtUpAt >= 0 {
		t.Fatalf("catch-up under unsynced metadata: got %v (caught up after %d), want revisions 0..2", revisionsOf(r.events), r.caughtUpAt)
	}

	gate.open()
	ctx := testCtx(t)
	for !answered() {
		if ctx.Err() != nil {
			t.Fatal("the metadata append was never answered after its sync finished")
		}
		time.Sleep(time.Millisecond)
	}
	wantRevisions(t, c, "kept", false, 2)
}

// syncGate blocks WAL syncs, once armed, until opened.
type syncGate struct {
	armed       atomic.Bool
	entered     chan struct{} // closed when the first WAL sync blocks
	enteredOnce sync.Once
	release     chan struct{}
	releaseOnce sync.Once
}

func newSyncGate() *syncGate {
	return &syncGate{entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *syncGate) arm()  { g.armed.Store(true) }
func (g *syncGate) open() { g.releaseOnce.Do(func() { close(g.release) }) }

func (g *syncGate) wait() {
	if !g.armed.Load() {
		return
	}
	g.enteredOnce.Do(func() { close(g.entered) })
	<-g.release
}

// gatedFS passes WAL files (*.log) through the gate on every sync.
type gatedFS struct {
	vfs.FS
	gate *syncGate
}

func (fs gatedFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return gatedFile{File: f, gate: fs.gate}, nil
}

func (fs gatedFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, cat)
	return fs.wrap(name, f, err)
}

func (fs gatedFS) ReuseForWrite(oldname, newname string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, cat)
	return fs.wrap(newname, f, err)
}

type gatedFile struct {
	vfs.File
	gate *syncGate
}

func (f gatedFile) Sync() error {
	f.gate.wait()
	return f.File.Sync()
}

func (f gatedFile) SyncData() error {
	f.gate.wait()
	return f.File.SyncData()
}

func (f gatedFile) SyncTo(length int64) (bool, error) {
	f.gate.wait()
	return f.File.SyncTo(length)
}
