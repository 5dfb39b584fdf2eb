package mongo_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	driver "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/mongo"
	"github.com/orderly/orderly/internal/views/mongo/ferrettest"
	"github.com/orderly/orderly/internal/views/viewstest"
)

// serverEnv names a MongoDB to run the adapter suite against instead of an
// embedded FerretDB; each test then gets a database of its own, dropped when
// it ends. One that cannot be reached fails the tests, never falls back.
const serverEnv = "ORDERLY_TEST_MONGODB_URI"

// server is where the suite's databases live.
type server struct {
	uri  string
	real bool
}

func newServer(t *testing.T) server {
	if uri := os.Getenv(serverEnv); uri != "" {
		return server{uri: uri, real: true}
	}
	return server{uri: ferrettest.Start(t)}
}

var databases atomic.Int64

// open opens a store on a database no other test (or run) uses.
func (s server) open(t *testing.T) views.Store {
	t.Helper()
	name := fmt.Sprintf("views%d", databases.Add(1))
	if s.real {
		name = "orderlytest_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:16]
	}
	return s.openDatabase(t, name)
}

func (s server) openDatabase(t *testing.T, name string) views.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := mongo.Open(ctx, mongo.Config{URI: s.uri, Database: name, BulkSize: 64})
	if err != nil && s.real {
		t.Fatalf("%s=%q: %v", serverEnv, s.uri, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if s.real {
		t.Cleanup(func() { s.drop(t, name) })
	}
	return st
}

func (s server) drop(t *testing.T, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := driver.Connect(options.Client().ApplyURI(s.uri))
	if err == nil {
		err = c.Database(name).Drop(ctx)
		_ = c.Disconnect(ctx)
	}
	if err != nil {
		t.Errorf("drop test database %s: %v", name, err)
	}
}

func TestContract(t *testing.T) {
	viewstest.Run(t, newServer(t).open)
}

func TestReopen(t *testing.T) {
	s := newServer(t)
	name := "reopen"
	if s.real {
		name = "orderlytest_reopen_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:8]
	}
	viewstest.RunReopen(t, func(t *testing.T) views.Store { return s.openDatabase(t, name) })
}

// childEnv makes this test binary run TestOpenChild for real.
const childEnv = "ORDERLY_MONGO_TEST_CHILD"

// TestOpenChild is the child of TestServerSwitch: it opens a store the way
// the suite does and says where.
func TestOpenChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("run by TestServerSwitch")
	}
	s := newServer(t)
	s.open(t)
	t.Logf("OPENED real=%v %s", s.real, s.uri)
}

// TestServerSwitch: with serverEnv set the suite uses that server and only
// that one; one it cannot reach fails, naming the setting.
func TestServerSwitch(t *testing.T) {
	if os.Getenv(serverEnv) != "" {
		t.Skip("runs its own children")
	}
	run := func(uri string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestOpenChild$", "-test.v")
		cmd.Env = append(os.Environ(), childEnv+"=1", serverEnv+"="+uri)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// A FerretDB stands in for a real MongoDB.
	live := ferrettest.Start(t)
	if out, err := run(live); err != nil || !strings.Contains(out, "OPENED real=true "+live) {
		t.Fatalf("with %s=%s the child said (%v):\n%s", serverEnv, live, err, out)
	}
	for _, bad := range []string{"mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500", "not-a-uri"} {
		out, err := run(bad)
		if err == nil || strings.Contains(out, "OPENED") {
			t.Fatalf("with %s=%s the child ran (%v):\n%s", serverEnv, bad, err, out)
		}
		if want := serverEnv + `="` + bad + `"`; !strings.Contains(out, want) {
			t.Fatalf("the failure does not name %s:\n%s", want, out)
		}
	}
}
