package projection_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/lease"
	"github.com/orderly/orderly/internal/projection"
	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/mongo/ferrettest"
	"github.com/orderly/orderly/internal/views/viewstest"
)

// stream reads a whole stream, to take recorded times and positions from.
func stream(t *testing.T, c *esdb.Client, name string) []*esdb.RecordedEvent {
	t.Helper()
	rs, err := c.ReadStream(testCtx(t, 10*time.Second), name, esdb.ReadStreamOptions{From: esdb.Start{}}, 1000)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	defer rs.Close()
	var out []*esdb.RecordedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		out = append(out, ev.OriginalEvent())
	}
}

// wantOrder is the document an order stream's events should fold into.
func wantOrder(t *testing.T, c *esdb.Client, id, customer string, lines []domain.OrderLine, status domain.OrderStatus, reason string) views.OrderDoc {
	evs := stream(t, c, eventlog.OrderStream(id))
	last := evs[len(evs)-1]
	total, _ := domain.OrderTotal(lines)
	return views.OrderDoc{
		OrderID: id, CustomerID: customer, Lines: lines, Total: total, Status: status, Reason: reason,
		CreatedAt: evs[0].CreatedDate.UTC(), UpdatedAt: last.CreatedDate.UTC(),
		Revision: last.EventNumber, Position: last.Position.Commit,
	}
}

func wantCustomer(t *testing.T, c *esdb.Client, id, name string, limit, reserved domain.Money, counts views.OrderCounts) views.CustomerDoc {
	evs := stream(t, c, eventlog.CustomerStream(id))
	last := evs[len(evs)-1]
	return views.CustomerDoc{
		CustomerID: id, Name: name, Email: map[string]string{"Ada": "ada@example.com", "Bob": "bob@example.com"}[name],
		CreditLimit: limit, CreditReserved: reserved,
		CreatedAt: evs[0].CreatedDate.UTC(), UpdatedAt: last.CreatedDate.UTC(),
		Revision: last.EventNumber, Position: last.Position.Commit, RegisteredPosition: evs[0].Position.Commit,
		OrderCounts: counts,
	}
}

// checkScript checks the views against what script wrote.
func checkScript(t *testing.T, c *esdb.Client, r views.Reader) {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	want := map[string]views.OrderDoc{
		"o1": wantOrder(t, c, "o1", "c1", line("BOOK", 3, usd(100)), domain.StatusApproved, ""),
		"o2": wantOrder(t, c, "o2", "c1", line("PIANO", 1, usd(5000)), domain.StatusRejected, "credit limit exceeded"),
		"o3": wantOrder(t, c, "o3", "c2", line("TEA", 4, eur(50)), domain.StatusCancelled, "changed my mind"),
		"o4": wantOrder(t, c, "o4", "c2", line("CUP", 1, eur(100)), domain.StatusPending, ""),
		"o5": wantOrder(t, c, "o5", "c1", line("PEN", 2, usd(5)), domain.StatusCancelled, ""),
	}
	for id, w := range want {
		got, err := r.GetOrder(ctx, id)
		if err != nil {
			t.Fatalf("GetOrder(%s): %v", id, err)
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("order %s:\n got %+v\nwant %+v", id, got, w)
		}
	}
	customers := []views.CustomerDoc{
		wantCustomer(t, c, "c1", "Ada", usd(2000), usd(300), views.OrderCounts{Total: 3, Approved: 1, Rejected: 1, Cancelled: 1}),
		wantCustomer(t, c, "c2", "Bob", eur(500), eur(0), views.OrderCounts{Total: 2, Pending: 1, Cancelled: 1}),
	}
	all, err := r.ListCustomers(ctx, views.CustomerQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got []views.CustomerDoc // the script's customers, in registration order
	for _, d := range all {
		if !strings.HasPrefix(d.CustomerID, "wc") {
			got = append(got, d)
		}
	}
	if !reflect.DeepEqual(got, customers) {
		t.Errorf("customers:\n got %+v\nwant %+v", got, customers)
	}
	if a := customers[0].CreditAvailable(); a != usd(1700) {
		t.Errorf("c1 available = %v, want 1700 USD", a)
	}

	list := func(q views.OrderQuery) []string {
		q.Limit = 100
		docs, err := r.ListOrders(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string // the script's orders, newest first
		for _, d := range docs {
			if !strings.HasPrefix(d.OrderID, "wo") {
				ids = append(ids, d.OrderID)
			}
		}
		return ids
	}
	for q, want := range map[views.OrderQuery][]string{
		{}:                               {"o5", "o4", "o3", "o2", "o1"},
		{CustomerID: "c2"}:               {"o4", "o3"},
		{Status: domain.StatusCancelled}: {"o5", "o3"},
		{CustomerID: "c1", Status: domain.StatusApproved}: {"o1"},
	} {
		if got := list(q); !reflect.DeepEqual(got, want) {
			t.Errorf("ListOrders(%+v) = %v, want %v", q, got, want)
		}
	}
}

func TestScriptedHistory(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, open func(*testing.T) views.Store) {
		client, conn := connect(t, estest.Start(t))
		store := open(t)
		r := runProjector(t, conn, store, projection.Options{})
		last := script(newWriter(t, client))
		waitFor(t, store, r.notifier, last)
		checkScript(t, client, store)
		if cp, err := store.Checkpoint(testCtx(t, 5*time.Second)); err != nil || cp < last {
			t.Errorf("Checkpoint = %d, %v; want at least %d", cp, err, last)
		}
	})
}

// setCheckpoints moves every live view's checkpoint, as if the projector had
// stopped there.
func setCheckpoints(t *testing.T, s views.Store, pos uint64) {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	for _, v := range views.All() {
		st, err := s.State(ctx, v)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Apply(ctx, views.Target{View: v, Version: st.Live}, views.Batch{Checkpoint: pos}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRedeliveryAndReplay delivers events again on views that already have
// them — from the middle of the log (redelivery after a crash between a
// write and its checkpoint) and from the start (replay) — with batches cut
// differently each time: the views stay identical.
func TestRedeliveryAndReplay(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, open func(*testing.T) views.Store) {
		client, conn := connect(t, estest.Start(t))
		store := open(t)
		w := newWriter(t, client)
		middle := workload(w, "", 4, 10)
		last := script(w)

		r := runProjector(t, conn, store, projection.Options{BatchSize: 7})
		waitFor(t, store, r.notifier, last)
		r.stop()
		want := snap(t, store)
		checkScript(t, client, store)

		for _, from := range []uint64{middle, 0} {
			setCheckpoints(t, store, from)
			r := runProjector(t, conn, store, projection.Options{BatchSize: 3, BatchWait: time.Millisecond})
			waitFor(t, store, r.notifier, last)
			r.stop()
			sameSnapshot(t, fmt.Sprintf("after redelivery from %d", from), snap(t, store), want)
		}
	})
}

// TestRedeliveryMidStream is MongoDB's crash window: the documents of a
// batch are written, its checkpoint is not, so after a restart the projector
// delivers again events that documents already reflect — from the middle of
// their streams — followed by new ones. Only the fold's revision guard keeps
// credit from being reserved twice and a cancelled order from turning
// approved again.
func TestRedeliveryMidStream(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, open func(*testing.T) views.Store) {
		client, conn := connect(t, estest.Start(t))
		store := open(t)
		w := newWriter(t, client)
		cs, ord := eventlog.CustomerStream("m1"), eventlog.OrderStream("mo1")
		w.append(cs, domain.CustomerRegistered{CustomerID: "m1", Name: "Ada", Email: "ada@example.com", CreditLimit: usd(1000)})
		w.append(ord, placed("mo1", "m1", line("BOOK", 1, usd(100))))
		mid := w.append(cs, domain.CreditReserved{CustomerID: "m1", OrderID: "mo1", Amount: usd(100)})
		w.append(ord, domain.OrderApproved{OrderID: "mo1", CustomerID: "m1"})
		w.append(cs, domain.CreditReserved{CustomerID: "m1", OrderID: "mo2", Amount: usd(300)})
		last := w.append(ord, domain.OrderCancelled{OrderID: "mo1", CustomerID: "m1", Reason: "changed my mind"})

		r := runProjector(t, conn, store, projection.Options{})
		waitFor(t, store, r.notifier, last)
		r.stop()
		if c := getCustomer(t, store, "m1"); c.CreditReserved != usd(400) {
			t.Fatalf("before the crash window: reserved %v, want 400 USD", c.CreditReserved)
		}

		setCheckpoints(t, store, mid)
		last = w.append(cs, domain.CreditLimitChanged{CustomerID: "m1", CreditLimit: usd(2000), PreviousLimit: usd(1000)})
		r = runProjector(t, conn, store, projection.Options{})
		waitFor(t, store, r.notifier, last)
		r.stop()
		c := getCustomer(t, store, "m1")
		if c.CreditReserved != usd(400) || c.CreditLimit != usd(2000) || c.Revision != 3 {
			t.Errorf("customer after redelivery: reserved %v, limit %v, revision %d; want 400 USD, 2000 USD, 3",
				c.CreditReserved, c.CreditLimit, c.Revision)
		}
		if o := getOrder(t, store, "mo1"); o.Status != domain.StatusCancelled || o.Revision != 2 {
			t.Errorf("order after redelivery: %s at revision %d, want CANCELLED at 2", o.Status, o.Revision)
		}
	})
}

func getCustomer(t *testing.T, r views.Reader, id string) views.CustomerDoc {
	t.Helper()
	d, err := r.GetCustomer(testCtx(t, 10*time.Second), id)
	if err != nil {
		t.Fatalf("GetCustomer(%s): %v", id, err)
	}
	return d
}

func getOrder(t *testing.T, r views.Reader, id string) views.OrderDoc {
	t.Helper()
	d, err := r.GetOrder(testCtx(t, 10*time.Second), id)
	if err != nil {
		t.Fatalf("GetOrder(%s): %v", id, err)
	}
	return d
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func TestPoisonEvent(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, open func(*testing.T) views.Store) {
		client, conn := connect(t, estest.Start(t))
		store := open(t)
		r := runProjector(t, conn, store, projection.Options{})
		w := newWriter(t, client)
		w.append(eventlog.CustomerStream("c1"), domain.CustomerRegistered{CustomerID: "c1", Name: "Ada", Email: "ada@example.com", CreditLimit: usd(1000)})
		bad := w.appendData(eventlog.OrderStream("p1"), esdb.EventData{
			EventType: domain.TypeOrderPlaced, ContentType: esdb.ContentTypeJson,
			Data: []byte(`{"order_id": "p1", "lines": [`), Metadata: []byte(`{"schema":2}`),
		})
		// Valid JSON, from a schema this build does not know.
		future := w.appendData(eventlog.OrderStream("p2"), esdb.EventData{
			EventType: domain.TypeOrderPlaced, ContentType: esdb.ContentTypeJson,
			Data: []byte(`{"order_id": "p2"}`), Metadata: []byte(`{"schema":99}`),
		})
		// The poisoned order's later events have no document to apply to.
		w.append(eventlog.OrderStream("p1"), domain.OrderApproved{OrderID: "p1", CustomerID: "c1"})
		last := w.append(eventlog.OrderStream("o1"), placed("o1", "c1", line("BOOK", 1, usd(10))))
		waitFor(t, store, r.notifier, last)

		ctx := testCtx(t, 10*time.Second)
		if d, err := store.GetOrder(ctx, "o1"); err != nil || d.Status != domain.StatusPending {
			t.Errorf("the order after the poison events: %+v, %v", d, err)
		}
		for _, id := range []string{"p1", "p2"} {
			if _, err := store.GetOrder(ctx, id); !errors.Is(err, views.ErrNotFound) {
				t.Errorf("GetOrder(%s) = %v, want ErrNotFound", id, err)
			}
		}
		letters, err := store.DeadLetters(ctx, views.Orders)
		if err != nil {
			t.Fatal(err)
		}
		if len(letters) != 2 || letters[0].Position != bad || letters[1].Position != future ||
			letters[0].Stream != "order-p1" || letters[0].Type != domain.TypeOrderPlaced ||
			string(letters[0].Data) != `{"order_id": "p1", "lines": [` || letters[1].Error == "" {
			t.Errorf("dead letters = %+v, want the two poison events at %d and %d", letters, bad, future)
		}
		if n := counter(t, r.registry, "orderly_projector_dead_letters_total", map[string]string{"view": "orders", "run": "live"}); n != 2 {
			t.Errorf("dead letters counted: %v, want 2", n)
		}
		if l, _ := store.DeadLetters(ctx, views.Customers); len(l) != 0 {
			t.Errorf("customers view parked %d letters, want none (the poison is an order event)", len(l))
		}
	})
}

// TestRebuildWhileQuerying rebuilds twice beside a running projector while
// readers check that every read sees the complete views.
func TestRebuildWhileQuerying(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, open func(*testing.T) views.Store) {
		client, conn := connect(t, estest.Start(t))
		store := open(t)
		live := runProjector(t, conn, store, projection.Options{})
		w := newWriter(t, client)
		workload(w, "", 5, 20)
		last := script(w)
		waitFor(t, store, live.notifier, last)
		want := snap(t, store)
		wantCounts := map[string]views.OrderCounts{}
		for _, c := range want.Customers {
			wantCounts[c.CustomerID] = c.OrderCounts
		}

		ctx, cancel := context.WithCancel(testCtx(t, 2*time.Minute))
		var reads atomic.Int64
		var wg sync.WaitGroup
		for reader := range 2 {
			wg.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					var err error
					if reader == 0 {
						d := want.Orders[i%len(want.Orders)]
						var got views.OrderDoc
						if got, err = store.GetOrder(ctx, d.OrderID); err == nil && !reflect.DeepEqual(got, d) {
							err = fmt.Errorf("order %s is %+v, want %+v", d.OrderID, got, d)
						}
					} else {
						var docs []views.CustomerDoc
						if docs, err = store.ListCustomers(ctx, views.CustomerQuery{Limit: 100}); err == nil {
							if len(docs) != len(want.Customers) {
								err = fmt.Errorf("%d customers listed, want %d", len(docs), len(want.Customers))
							}
							for _, d := range docs {
								if d.OrderCounts != wantCounts[d.CustomerID] {
									err = fmt.Errorf("customer %s counts %+v, want %+v", d.CustomerID, d.OrderCounts, wantCounts[d.CustomerID])
								}
							}
						}
					}
					if ctx.Err() != nil {
						return
					}
					if err != nil {
						t.Errorf("read during rebuild: %v", err)
						return
					}
					reads.Add(1)
				}
			})
		}

		before, err := store.State(ctx, views.Orders)
		if err != nil {
			t.Fatal(err)
		}
		// A second projector, as `projector rebuild` in another process.
		var progress []projection.Progress
		var mu sync.Mutex
		rb, err := projection.New(conn, store, quietLog(), projection.Options{BatchSize: 16, Progress: func(p projection.Progress) {
			mu.Lock()
			defer mu.Unlock()
			progress = append(progress, p)
		}})
		if err != nil {
			t.Fatal(err)
		}
		for round := range 2 {
			if err := rb.Rebuild(ctx); err != nil {
				t.Fatalf("rebuild %d: %v", round, err)
			}
			sameSnapshot(t, fmt.Sprintf("after rebuild %d", round), snap(t, store), want)
		}
		cancel()
		wg.Wait()
		if reads.Load() == 0 {
			t.Error("no read completed during the rebuilds")
		}
		after, err := store.State(testCtx(t, 5*time.Second), views.Orders)
		if err != nil {
			t.Fatal(err)
		}
		if after.Live <= before.Live || after.Building != 0 {
			t.Errorf("orders versions before %+v, after %+v: want a newer live version and none building", before, after)
		}
		mu.Lock()
		if n := len(progress); n == 0 || !progress[n-1].Done || progress[n-1].Events == 0 {
			t.Errorf("progress reports: %+v, want the last one done", progress)
		}
		mu.Unlock()

		// The live projector follows the rebuilt version.
		next := w.append(eventlog.OrderStream("o4"), domain.OrderApproved{OrderID: "o4", CustomerID: "c2"})
		waitFor(t, store, live.notifier, next)
		if d, err := store.GetOrder(testCtx(t, 5*time.Second), "o4"); err != nil || d.Status != domain.StatusApproved {
			t.Errorf("order o4 after the rebuild = %+v, %v; want it approved by the live projector", d, err)
		}
	})
}

// projectedHistory writes a history to a new event store and projects it
// into store with a live projector, which it then stops. It returns the
// connection, the history's last position and the orders view's state.
func projectedHistory(t *testing.T, store views.Store) (*eventlog.Conn, uint64, views.State) {
	t.Helper()
	client, conn := connect(t, estest.Start(t))
	w := newWriter(t, client)
	workload(w, "", 3, 12)
	last := script(w)
	live := runProjector(t, conn, store, projection.Options{})
	waitFor(t, store, live.notifier, last)
	live.stop()
	st, err := store.State(testCtx(t, 5*time.Second), views.Orders)
	if err != nil {
		t.Fatal(err)
	}
	return conn, last, st
}

// TestRebuildInterrupted stops a rebuild midway: the live views stay as they
// were, and the next rebuild completes.
func TestRebuildInterrupted(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, open func(*testing.T) views.Store) {
		store := open(t)
		conn, last, before := projectedHistory(t, store)
		want := snap(t, store)

		ctx, cancel := context.WithCancel(testCtx(t, time.Minute))
		rb, err := projection.New(conn, store, quietLog(), projection.Options{BatchSize: 4, Progress: func(p projection.Progress) {
			if p.View == views.Orders && p.Events > 0 {
				cancel() // midway: some batches are in the shadow
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		if err := rb.Rebuild(ctx, views.Orders); !errors.Is(err, context.Canceled) {
			t.Fatalf("interrupted rebuild = %v, want context.Canceled", err)
		}
		st, _ := store.State(testCtx(t, 5*time.Second), views.Orders)
		if st.Live != before.Live || st.Building == 0 || st.BuildingCheckpoint >= last {
			t.Errorf("after the interruption: %+v; want live %d kept and a partial shadow", st, before.Live)
		}
		sameSnapshot(t, "live views after the interruption", snap(t, store), want)

		if err := rb.Rebuild(testCtx(t, time.Minute), views.Orders); err != nil {
			t.Fatalf("restarted rebuild: %v", err)
		}
		sameSnapshot(t, "after the restarted rebuild", snap(t, store), want)
	})
}

// TestRebuildSwitchTroubles: a switch may take longer than one store call
// may (on SQLite it builds the shadow's indexes: seconds on a view of
// millions of orders), or switch and then fail to drop the old version; the
// rebuild ends switched either way, rather than cut every attempt short and
// retry for ever, or report a failure after the switch.
func TestRebuildSwitchTroubles(t *testing.T) {
	const timeout = 200 * time.Millisecond
	for name, wrap := range map[string]func(views.Store) views.Store{
		"slower than a store call": func(s views.Store) views.Store { return slowSwitch{s, 3 * timeout} },
		"old version not dropped":  func(s views.Store) views.Store { return leftSwitch{s} },
	} {
		t.Run(name, func(t *testing.T) {
			store := openSQLite(t)
			conn, _, before := projectedHistory(t, store)

			rb, err := projection.New(conn, wrap(store), quietLog(), projection.Options{StoreTimeout: timeout})
			if err != nil {
				t.Fatal(err)
			}
			if err := rb.Rebuild(testCtx(t, time.Minute), views.Orders); err != nil {
				t.Fatalf("rebuild: %v", err)
			}
			if st, _ := store.State(testCtx(t, 5*time.Second), views.Orders); st.Live == before.Live || st.Building != 0 {
				t.Fatalf("after the rebuild: %+v; want a new live version (was %d)", st, before.Live)
			}
		})
	}
}

// slowSwitch is a view store whose Switch takes d longer, as on a big view.
type slowSwitch struct {
	views.Store
	d time.Duration
}

func (s slowSwitch) Switch(ctx context.Context, t views.Target, liveAhead bool) error {
	select {
	case <-time.After(s.d):
		return s.Store.Switch(ctx, t, liveAhead)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// leftSwitch is a view store whose Switch switches, then fails as one
// whose drop of the old version failed would.
type leftSwitch struct{ views.Store }

func (s leftSwitch) Switch(ctx context.Context, t views.Target, liveAhead bool) error {
	if err := s.Store.Switch(ctx, t, liveAhead); err != nil {
		return err
	}
	return errors.New("drop the old version: connection reset")
}

// serveStore serves an on-disk event store at addr ("127.0.0.1:0" for any
// port) and returns its address and a function that stops it.
func serveStore(t *testing.T, dir, addr string) (string, func()) {
	t.Helper()
	srv, err := eventstore.Open(eventstore.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var lis net.Listener
	for range 50 { // a port just closed may linger
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		_ = srv.Close()
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = srv.Close()
			<-served
		})
	}
	t.Cleanup(stop)
	return lis.Addr().String(), stop
}

// TestEventStoreRestart stops the event store under a running projector
// and starts it again: the projector resubscribes from its checkpoint.
func TestEventStoreRestart(t *testing.T) {
	dir := t.TempDir()
	addr, stop := serveStore(t, dir, "127.0.0.1:0")
	client, conn := connect(t, "esdb://"+addr+"?tls=false")
	store := openSQLite(t)
	r := runProjector(t, conn, store, projection.Options{})
	w := newWriter(t, client)
	first := workload(w, "", 3, 5)
	waitFor(t, store, r.notifier, first)

	stop()
	time.Sleep(2 * time.Second) // longer than the official client takes to give up on a server
	serveStore(t, dir, addr)
	last := script(w)
	waitFor(t, store, r.notifier, last)
	checkScript(t, client, store)
	if n := counter(t, r.registry, "orderly_projector_errors_total", map[string]string{"kind": "subscription"}); n == 0 {
		t.Error("no subscription error counted across the restart")
	}
}

// TestViewStoreOutage stops MongoDB (FerretDB) under a running projector:
// batches are retried, none skipped, and the views catch up once it is back.
func TestViewStoreOutage(t *testing.T) {
	client, conn := connect(t, estest.Start(t))
	srv := ferrettest.StartServer(t)
	store := openMongoAt(t, srv.URI())
	// Store calls time out sooner than the outage lasts.
	r := runProjector(t, conn, store, projection.Options{StoreTimeout: 300 * time.Millisecond})
	w := newWriter(t, client)
	first := workload(w, "", 2, 3)
	waitFor(t, store, r.notifier, first)

	srv.Stop()
	last := script(w)
	time.Sleep(2 * time.Second) // batches fail and are retried meanwhile
	srv.Restart()
	waitFor(t, store, r.notifier, last)
	checkScript(t, client, store)
	if n := counter(t, r.registry, "orderly_projector_errors_total", map[string]string{"kind": "store"}); n == 0 {
		t.Error("no view store error counted during the outage")
	}
}

// TestIdleWriteVisibleAtOnce writes to an idle system one event at a time,
// each waiting for the last: with an hour of BatchWait, each is visible only
// if a batch takes what has arrived without waiting for more.
func TestIdleWriteVisibleAtOnce(t *testing.T) {
	client, conn := connect(t, estest.Start(t))
	store := openSQLite(t)
	r := runProjector(t, conn, store, projection.Options{BatchWait: time.Hour})
	w := newWriter(t, client)
	for i := range 3 {
		id := fmt.Sprintf("idle-%d", i)
		pos := w.append(eventlog.CustomerStream(id), domain.CustomerRegistered{CustomerID: id, Name: "Idle", Email: id + "@example.com", CreditLimit: usd(100)})
		waitFor(t, store, r.notifier, pos)
	}
}

// TestSteadyWritesVisibleWithoutWait keeps several writers going, each
// writing its next event once its last is visible, so events keep arriving
// while batches are written but a batch never fills. With an hour of
// BatchWait, they stay visible at once only if events that came during a
// write are not taken for a backlog worth waiting for.
func TestSteadyWritesVisibleWithoutWait(t *testing.T) {
	client, conn := connect(t, estest.Start(t))
	store := openSQLite(t)
	r := runProjector(t, conn, store, projection.Options{BatchWait: time.Hour})
	const writers, writes = 8, 25
	var wg sync.WaitGroup
	for g := range writers {
		w := backgroundWriter(t, client)
		wg.Go(func() {
			for i := range writes {
				id := fmt.Sprintf("steady-%d-%d", g, i)
				pos := w.append(eventlog.CustomerStream(id), domain.CustomerRegistered{CustomerID: id, Name: "Steady", Email: id + "@example.com", CreditLimit: usd(100)})
				if _, err := views.WaitCheckpoint(testCtx(t, 10*time.Second), store, r.notifier, pos); err != nil {
					t.Errorf("writer %d, write %d: not visible within 10 s: %v", g, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestNotifierSoleWithEveryPartition: a projector holding every partition
// tells its notifier it alone moves the views, so a read-your-writes wait in
// its process never reads the view store; once a second instance takes a
// share, neither is sole (waits read the store, which both move), and the
// one left alone is sole again.
func TestNotifierSoleWithEveryPartition(t *testing.T) {
	client, conn := connect(t, estest.Start(t))
	store := openSQLite(t)
	leases := lease.Config{TTL: 2 * time.Second, Tick: 100 * time.Millisecond}
	first := runProjector(t, conn, store, projection.Options{Lease: leases})
	w := newWriter(t, client)
	soleIs := func(what string, n *views.Notifier, want bool) {
		t.Helper()
		for ctx := testCtx(t, 30*time.Second); ; {
			if _, _, sole := n.Watch(); sole == want {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: notifier never sole=%v", what, want)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	register := func(id string) uint64 {
		return w.append(eventlog.CustomerStream(id), domain.CustomerRegistered{CustomerID: id, Name: "Sole", Email: id + "@example.com", CreditLimit: usd(100)})
	}
	soleIs("alone", first.notifier, true)
	pos := register("sole-1")
	waitFor(t, store, first.notifier, pos)

	// A wait for what is not written yet: until its deadline, well before
	// the store's fallback read is due, only the notifier is consulted.
	r := &viewstest.CountingReader{CheckpointReader: store}
	if _, err := views.WaitCheckpoint(testCtx(t, 100*time.Millisecond), r, first.notifier, pos+1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a wait for an unwritten position ended with %v", err)
	}
	if n := r.Reads.Load(); n != 0 {
		t.Fatalf("%d view store reads while the notifier was sole; want none", n)
	}

	second := runProjector(t, conn, store, projection.Options{Lease: leases})
	soleIs("sharing, first", first.notifier, false)
	soleIs("sharing, second", second.notifier, false)
	second.stop()
	soleIs("alone again", first.notifier, true)
	waitFor(t, store, first.notifier, register("sole-3"))
	first.stop()
	soleIs("stopped", first.notifier, false)
}
