package projectorcmd_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/console/consoletest"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/loopback"
	"github.com/orderly/orderly/internal/projectorcmd"
	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/mongo/ferrettest"
	"github.com/orderly/orderly/internal/views/sqlite"
	"github.com/orderly/orderly/internal/views/viewstore"
)

func appendEvent(t *testing.T, c *esdb.Client, stream string, ev domain.Event) uint64 {
	t.Helper()
	data, err := eventlog.Encode(eventcodec.Default(), uuid.New(), ev, eventcodec.Metadata{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.AppendToStream(context.Background(), stream, esdb.AppendToStreamOptions{}, data)
	if err != nil {
		t.Fatal(err)
	}
	return res.CommitPosition
}

// TestRunAndRebuild runs the projector command, configured partly by
// environment variables, serving metrics and the console, then the rebuild
// command beside it.
func TestRunAndRebuild(t *testing.T) {
	conn := estest.Start(t)
	client := estest.Client(t, conn)
	data := t.TempDir()
	t.Setenv("ORDERLY_EVENTSTORE", conn)
	t.Setenv("ORDERLY_DATA", data)
	metrics := loopback.FreeAddr(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- projectorcmd.Main(ctx, []string{"-metrics-listen", metrics, "-log-level", "warn", "-batch-wait", "0"})
	}()

	appendEvent(t, client, eventlog.CustomerStream("c1"), domain.CustomerRegistered{
		CustomerID: "c1", Name: "Ada", Email: "ada@example.com", CreditLimit: domain.Money{Currency: "USD", Minor: 100}})
	last := appendEvent(t, client, eventlog.OrderStream("o1"), domain.OrderPlaced{
		OrderID: "o1", CustomerID: "c1", Lines: []domain.OrderLine{{SKU: "A", Quantity: 1, UnitPrice: domain.Money{Currency: "USD", Minor: 10}}},
		Total: domain.Money{Currency: "USD", Minor: 10}})

	store, err := sqlite.Open(ctx, filepath.Join(data, "views.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if _, err := views.WaitCheckpoint(wctx, store, nil, last); err != nil {
		t.Fatalf("the projector command never projected: %v", err)
	}
	if d, err := store.GetOrder(ctx, "o1"); err != nil || d.CustomerID != "c1" {
		t.Errorf("GetOrder = %+v, %v", d, err)
	}
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `orderly_projector_events_total{run="live",view="orders"}`) {
		t.Errorf("/metrics lacks the projector's event counter:\n%.2000s", body)
	}
	consoletest.Get(t, "http://"+metrics) // beside the AdminService's REST routes

	if err := projectorcmd.Main(ctx, []string{"rebuild", "-view", "orders", "-log-level", "warn"}); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if st, err := store.State(ctx, views.Orders); err != nil || st.Live != 2 {
		t.Errorf("orders after the rebuild: %+v, %v; want version 2 live", st, err)
	}
	if st, _ := store.State(ctx, views.Customers); st.Live != 1 {
		t.Errorf("customers rebuilt too: %+v", st)
	}
	if d, err := store.GetOrder(ctx, "o1"); err != nil || d.CustomerID != "c1" {
		t.Errorf("GetOrder after the rebuild = %+v, %v", d, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("projector command = %v, want nil after cancel", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("projector command did not stop")
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"rebuild", "-view", "invoices"},
		{"-views", "postgres", "-metrics-listen", ""},
		{"extra"},
	} {
		if err := projectorcmd.Main(context.Background(), args); err == nil || errors.Is(err, context.Canceled) {
			t.Errorf("Main(%q) = %v, want an error", args, err)
		}
	}
}

// storeWith starts an event store holding n customers and returns its
// connection string and the position of its last event.
func storeWith(t *testing.T, n int) (string, uint64) {
	t.Helper()
	conn := estest.Start(t)
	client := estest.Client(t, conn)
	var last uint64
	for i := range n {
		id := fmt.Sprintf("c%d", i)
		last = appendEvent(t, client, eventlog.CustomerStream(id), domain.CustomerRegistered{
			CustomerID: id, Name: "Ada", Email: "ada@example.com", CreditLimit: domain.Money{Currency: "USD", Minor: 100}})
	}
	return conn, last
}

// viewTargets are the view stores the rebuild tests run against: the flags
// choosing each, a fresh place without views.
func viewTargets(t *testing.T) map[string][]string {
	return map[string][]string{
		"sqlite": {"-data", t.TempDir()},
		"mongo":  {"-views", "mongo", "-mongo-uri", ferrettest.Start(t), "-mongo-db", "rebuild", "-mongo-bulk-size", "64"},
	}
}

// aheadOfStore builds views in target from an event store of 6 customers
// and returns an older store holding 2 of them, and its head: the views are
// past it, as after a restore of the event store from an older backup.
func aheadOfStore(ctx context.Context, t *testing.T, target []string) (older string, head uint64) {
	t.Helper()
	newer, _ := storeWith(t, 6)
	older, head = storeWith(t, 2)
	if err := projectorcmd.Main(ctx, rebuildArgs(target, newer)); err != nil {
		t.Fatalf("rebuild from the newer store: %v", err)
	}
	return older, head
}

// rebuildArgs rebuilds all views in target (creating them if need be) from
// the event store at conn.
func rebuildArgs(target []string, conn string) []string {
	return append([]string{"rebuild", "-log-level", "warn", "-create", "-eventstore", conn}, target...)
}

// TestRebuildAfterOlderEventStore: the views were built from an event store
// that was then replaced by an older backup, so their checkpoints are past
// its head. A rebuild must not wait for the head to catch up with them: it
// rebuilds what the store holds and switches, and the views say so.
func TestRebuildAfterOlderEventStore(t *testing.T) {
	for name, target := range viewTargets(t) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			older, head := aheadOfStore(ctx, t, target)
			// The rebuild waited for ever here: its shadow never caught up
			// with a live checkpoint the event store will not reach.
			if err := projectorcmd.Main(ctx, rebuildArgs(target, older)); err != nil {
				t.Fatalf("rebuild from the older store: %v", err)
			}
			store := openViews(t, target)
			for _, v := range views.All() {
				st, err := store.State(ctx, v)
				if err != nil {
					t.Fatal(err)
				}
				if st.LiveCheckpoint != head || st.Building != 0 {
					t.Errorf("%s after the rebuild: %+v, want live at the older store's head %d", v, st, head)
				}
			}
			if _, err := store.GetCustomer(ctx, "c5"); !errors.Is(err, views.ErrNotFound) {
				t.Errorf("a customer only the newer store had is still served: %v", err)
			}
			if d, err := store.GetCustomer(ctx, "c1"); err != nil || d.CustomerID != "c1" {
				t.Errorf("GetCustomer(c1) = %+v, %v", d, err)
			}
		})
	}
}

// viewsConfig is the view store configuration of the flags in target.
func viewsConfig(t *testing.T, target []string) viewstore.Config {
	t.Helper()
	var c viewstore.Config
	fs := flag.NewFlagSet("views", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse(target); err != nil {
		t.Fatal(err)
	}
	return c
}

// openViews opens the view store the flags in target choose.
func openViews(t *testing.T, target []string) views.Store {
	t.Helper()
	s, err := viewstore.Open(context.Background(), viewsConfig(t, target))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestLiveProjectorAfterOlderEventStore: a live projector facing views past
// the event store's head does not follow from their checkpoint (it would
// skip what the store appends below it); once a rebuild has put the views
// back on the store, it projects what is appended next.
func TestLiveProjectorAfterOlderEventStore(t *testing.T) {
	target := []string{"-data", t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	older, _ := aheadOfStore(ctx, t, target)
	live, stop := context.WithCancel(ctx)
	projected := make(chan error, 1)
	go func() {
		projected <- projectorcmd.Main(live, append([]string{"-log-level", "error", "-metrics-listen", "", "-eventstore", older}, target...))
	}()
	if err := projectorcmd.Main(ctx, rebuildArgs(target, older)); err != nil {
		t.Fatal(err)
	}
	late := appendEvent(t, estest.Client(t, older), eventlog.CustomerStream("late"), domain.CustomerRegistered{
		CustomerID: "late", Name: "Ada", Email: "ada@example.com", CreditLimit: domain.Money{Currency: "USD", Minor: 100}})
	store := openViews(t, target)
	if _, err := views.WaitCheckpoint(ctx, store, nil, late); err != nil {
		t.Fatalf("the live projector never projected the event appended after the rebuild: %v", err)
	}
	if _, err := store.GetCustomer(ctx, "late"); err != nil {
		t.Errorf("GetCustomer(late) = %v", err)
	}
	stop()
	if err := <-projected; err != nil {
		t.Errorf("projector = %v", err)
	}
}

// TestRebuildRefusesPlaceWithoutViews: a rebuild pointed at a place without
// views (a mistyped -data or -mongo-db) fails at once, naming the place and
// -create, and creates nothing there; with -create it builds them.
func TestRebuildRefusesPlaceWithoutViews(t *testing.T) {
	for name, target := range viewTargets(t) {
		t.Run(name, func(t *testing.T) {
			conn, _ := storeWith(t, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			args := append([]string{"rebuild", "-log-level", "warn", "-eventstore", conn}, target...)
			err := projectorcmd.Main(ctx, args)
			place := target[1] // the -data directory, or the -mongo-uri
			if name == "mongo" {
				place = "MongoDB database rebuild"
			}
			if err == nil || !strings.Contains(err.Error(), place) || !strings.Contains(err.Error(), "-create") {
				t.Fatalf("rebuild into a place without views = %v, want an error naming %q and -create", err, place)
			}
			if ok, err := viewstore.Exists(ctx, viewsConfig(t, target)); ok || err != nil {
				t.Fatalf("the refused rebuild left views behind: %v, %v", ok, err)
			}
			if err := projectorcmd.Main(ctx, append(args, "-create")); err != nil {
				t.Fatalf("rebuild -create: %v", err)
			}
			if d, err := openViews(t, target).GetCustomer(ctx, "c0"); err != nil || d.CustomerID != "c0" {
				t.Errorf("after rebuild -create, GetCustomer(c0) = %+v, %v", d, err)
			}
			if err := projectorcmd.Main(ctx, args); err != nil {
				t.Errorf("rebuild of existing views without -create: %v", err)
			}
		})
	}
}
