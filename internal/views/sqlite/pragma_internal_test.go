package sqlite

import (
	"context"
	"path/filepath"
	"testing"
)

// The writer's statement journals stay in memory (temp_store=MEMORY, 2):
// spilled to a temp file they cost the projector a write call per page.
func TestWriterTempStoreMemory(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "views.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	var mode int
	if err := s.w.QueryRowContext(ctx, `PRAGMA temp_store`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != 2 {
		t.Fatalf("writer temp_store = %d, want 2 (MEMORY)", mode)
	}
}
