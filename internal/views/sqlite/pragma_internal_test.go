package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/viewstest"
)

func openAt(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// The writer's statement journals stay in memory (temp_store=MEMORY, 2):
// spilled to a temp file they cost the projector a write call per page.
func TestWriterTempStoreMemory(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, filepath.Join(t.TempDir(), "views.db"))
	var mode int
	if err := s.w.QueryRowContext(ctx, `PRAGMA temp_store`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != 2 {
		t.Fatalf("writer temp_store = %d, want 2 (MEMORY)", mode)
	}
}

// Writes reach the database file without a commit taking the WAL past the
// writer's backstop: the checkpointer copies them there in the background.
// The backstop lies well past the length at which the checkpointer restarts
// the WAL, so that the writer checkpoints only if the checkpointer cannot.
// In WAL mode a new database's file holds only its header page (written when
// the writer switched it to WAL) until a checkpoint copies the views' tables.
func TestCheckpointerCopiesWrites(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "views.db")
	s := openAt(t, path)
	var backstop int
	if err := s.w.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&backstop); err != nil {
		t.Fatal(err)
	}
	if backstop != backstopFrames || backstopFrames < 2*restartFrames {
		t.Fatalf("writer wal_autocheckpoint = %d, want %d, at least twice the restart length %d", backstop, backstopFrames, restartFrames)
	}
	var page int64
	if err := s.w.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&page); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > page {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("database file still one page 30 s after the views were created: nothing checkpointed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// No connection maps the database file: SQLite unmaps it whole at each
// read transaction after a commit elsewhere, which stalls the process on
// every core (see open). The setting is pinned here, as a build's default
// could change it.
func TestConnectionsDoNotMapTheFile(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, filepath.Join(t.TempDir(), "views.db"))
	for name, db := range map[string]interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}{"writer": s.w, "reader": s.r, "checkpointer": s.c} {
		var n int64
		if err := db.QueryRowContext(ctx, `PRAGMA mmap_size`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s mmap_size = %d, want 0", name, n)
		}
	}
}

// Once the WAL is restartAt frames long, a checkpoint restarts it: the next
// commit writes the WAL from its start, and what the WAL held is read from
// the database file. Below that length a checkpoint only copies, and the
// WAL goes on growing while writes race the copies (that race, which the
// checkpoint's hold on the writer settles, is the benchmarks' to show). The
// test runs the checkpointer's steps itself.
func TestCheckpointRestartsTheWAL(t *testing.T) {
	ctx := context.Background()
	const restartAt = 64
	path := filepath.Join(t.TempDir(), "views.db")
	s, err := open(ctx, path, restartAt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	s.stop()
	<-s.done
	var page int64
	if err := s.w.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&page); err != nil {
		t.Fatal(err)
	}
	// Until something checkpoints, the WAL is as long as its file: a
	// 32-byte header, then a 24-byte header and a page for each frame.
	fileFrames := func() int64 {
		t.Helper()
		fi, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		return (fi.Size() - 32) / (24 + page)
	}
	probe, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = probe.Close() })
	// walFrames is the WAL's length now, as a checkpoint reports it.
	walFrames := func() int {
		t.Helper()
		var busy, log, copied int
		if err := probe.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &log, &copied); err != nil {
			t.Fatal(err)
		}
		return log
	}
	orders := views.Target{View: views.Orders, Version: 1}
	created := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	n := 0
	write := func(docs int) {
		t.Helper()
		var b views.Batch
		for range docs {
			n++
			b.Orders = append(b.Orders, viewstest.Order(fmt.Sprintf("order-%06d", n), "c1", created, domain.StatusPending, 0))
		}
		if err := s.Apply(ctx, orders, b); err != nil {
			t.Fatal(err)
		}
	}
	for fileFrames() < restartAt {
		write(20)
	}
	long := fileFrames()
	if restarted, err := s.checkpoint(ctx); err != nil || !restarted {
		t.Fatalf("checkpoint of a WAL of %d frames: restarted %v, err %v; want restarted", long, restarted, err)
	}
	write(1)
	short := walFrames()
	if short == 0 || short >= restartAt || fileFrames() != long {
		t.Fatalf("WAL %d frames after one write following the restart (file %d frames, was %d); want that write's few, from the start",
			short, fileFrames(), long)
	}
	if restarted, err := s.checkpoint(ctx); err != nil || restarted {
		t.Fatalf("checkpoint of a WAL of %d frames: restarted %v, err %v; want a copy only", short, restarted, err)
	}
	if left := walFrames(); left != short {
		t.Fatalf("WAL %d frames after a checkpoint below the restart length, was %d", left, short)
	}
	for _, id := range []string{"order-000001", fmt.Sprintf("order-%06d", n)} {
		if _, err := s.GetOrder(ctx, id); err != nil {
			t.Fatalf("order %s after the restart: %v", id, err)
		}
	}
}

// Statements are prepared once per text and pool: a batch of the shape of
// one before, and a read like one before, prepare nothing.
func TestStatementsAreKept(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, filepath.Join(t.TempDir(), "views.db"))
	st, err := s.State(ctx, views.Orders)
	if err != nil {
		t.Fatal(err)
	}
	target := views.Target{View: views.Orders, Version: st.Live}
	now := time.Now()
	batch := func(i int) views.Batch {
		var b views.Batch
		for j := range 3 {
			b.Orders = append(b.Orders, viewstest.Order(fmt.Sprintf("order-%d-%d", i, j), "c", now, domain.StatusPending, 1))
		}
		b.Checkpoint = uint64(10 * (i + 1))
		return b
	}
	read := func(id string) views.OrderDoc {
		t.Helper()
		d, err := s.GetOrder(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if err := s.Apply(ctx, target, batch(0)); err != nil {
		t.Fatal(err)
	}
	read("order-0-0")
	writes, reads := s.wStmts.misses.Load(), s.rStmts.misses.Load()
	if writes == 0 || reads == 0 {
		t.Fatalf("first batch and read ran %d and %d statements from their text; want some", writes, reads)
	}
	for i := 1; i < 4; i++ {
		if err := s.Apply(ctx, target, batch(i)); err != nil {
			t.Fatal(err)
		}
		read(fmt.Sprintf("order-%d-1", i))
	}
	if w, r := s.wStmts.misses.Load()-writes, s.rStmts.misses.Load()-reads; w != 0 || r != 0 {
		t.Fatalf("later batches and reads of the same shapes ran %d and %d statements from their text; want none", w, r)
	}
	if got := read("order-3-2"); got.OrderID != "order-3-2" {
		t.Fatalf("read back %+v", got)
	}
}
