package sqlite

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"
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
	if backstop != backstopFrames {
		t.Fatalf("writer wal_autocheckpoint = %d, want %d", backstop, backstopFrames)
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

// Every connection maps the database file: readers, whose page cache each
// commit elsewhere empties, then read pages without a system call each.
func TestConnectionsMapTheFile(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, filepath.Join(t.TempDir(), "views.db"))
	for name, db := range map[string]interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}{"writer": s.w, "reader": s.r, "checkpointer": s.c} {
		var n int64
		if err := db.QueryRowContext(ctx, `PRAGMA mmap_size`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != mmapBytes {
			t.Errorf("%s mmap_size = %d, want %d", name, n, mmapBytes)
		}
	}
}
