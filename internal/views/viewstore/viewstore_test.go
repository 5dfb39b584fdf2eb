package viewstore_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/mongo/ferrettest"
	"github.com/orderly/orderly/internal/views/viewstore"
)

func parse(t *testing.T, args ...string) viewstore.Config {
	t.Helper()
	var c viewstore.Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return c
}

func checkOpen(t *testing.T, c viewstore.Config) {
	t.Helper()
	s, err := viewstore.Open(context.Background(), c)
	if err != nil {
		t.Fatalf("Open(%+v): %v", c, err)
	}
	defer s.Close()
	if st, err := s.State(context.Background(), views.Orders); err != nil || st.Live != 1 {
		t.Errorf("new store's orders: %+v, %v; want version 1 live", st, err)
	}
}

func TestOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "data")
	c := parse(t, "-data", dir)
	if c.Kind != viewstore.SQLite {
		t.Errorf("default kind %q, want sqlite", c.Kind)
	}
	checkOpen(t, c)
	if _, err := os.Stat(filepath.Join(dir, viewstore.SQLiteFile)); err != nil {
		t.Errorf("SQLite file not in -data: %v", err)
	}

	checkOpen(t, parse(t, "-views", "mongo", "-mongo-uri", ferrettest.Start(t), "-mongo-db", "viewstore", "-mongo-bulk-size", "64"))

	if _, err := viewstore.Open(context.Background(), parse(t, "-views", "cassandra")); err == nil {
		t.Error("Open of an unknown kind: no error")
	}
}
