package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/sqlite"
	"github.com/orderly/orderly/internal/views/viewstest"
)

func open(t *testing.T) views.Store {
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "views.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestContract(t *testing.T) { viewstest.Run(t, open) }

func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "views.db")
	viewstest.RunReopen(t, func(t *testing.T) views.Store {
		s, err := sqlite.Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}
