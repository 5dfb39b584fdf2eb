package projection_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/projection"
	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/mongo"
	"github.com/orderly/orderly/internal/views/mongo/ferrettest"
	"github.com/orderly/orderly/internal/views/sqlite"
)

// adapter opens a fresh view store of one kind for a test.
type adapter struct {
	name string
	open func(t *testing.T) views.Store
}

func openSQLite(t *testing.T) views.Store {
	return openSQLiteAt(t, filepath.Join(t.TempDir(), "views.db"))
}

func openSQLiteAt(t testing.TB, path string) views.Store {
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func openMongo(t *testing.T) views.Store {
	return openMongoAt(t, ferrettest.Start(t))
}

func openMongoAt(t *testing.T, uri string) views.Store {
	s, err := mongo.Open(context.Background(), mongo.Config{URI: uri, Database: "views", BulkSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// adapters are the view stores every projection test runs on. FerretDB
// scans collections on every lookup: tests keep its data to a few hundred
// documents.
var adapters = []adapter{{"sqlite", openSQLite}, {"mongo", openMongo}}

func forEachAdapter(t *testing.T, fn func(t *testing.T, open func(t *testing.T) views.Store)) {
	for _, a := range adapters {
		t.Run(a.name, func(t *testing.T) { fn(t, a.open) })
	}
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// connect returns a raw client (to append and read with) and a connection
// (for the projector) to the event store at connString.
func connect(t testing.TB, connString string) (*esdb.Client, *eventlog.Conn) {
	conn, err := eventlog.Connect(connString, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return estest.Client(t, connString), conn
}

// runProjector runs a live projector until the test ends (or stop is called)
// and returns its notifier.
type running struct {
	notifier *views.Notifier
	registry *prometheus.Registry
	stop     func()
}

func runProjector(t testing.TB, conn *eventlog.Conn, store views.Store, opts projection.Options) running {
	t.Helper()
	r := running{notifier: views.NewNotifier(), registry: prometheus.NewRegistry()}
	opts.Notifier, opts.Registerer = r.notifier, r.registry
	p, err := projection.New(conn, store, quietLog(), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(r.stop)
	return r
}

// waitFor waits until the views have applied everything up to pos.
func waitFor(t testing.TB, store views.Reader, n *views.Notifier, pos uint64) {
	t.Helper()
	if _, err := views.WaitCheckpoint(testCtx(t, 60*time.Second), store, n, pos); err != nil {
		t.Fatalf("views never reached position %d: %v", pos, err)
	}
}

// writer appends domain events as the command side would.
type writer struct {
	t      testing.TB
	fail   func(format string, args ...any)
	client *esdb.Client
	codec  *eventcodec.Registry
}

func newWriter(t testing.TB, client *esdb.Client) *writer {
	return &writer{t: t, fail: t.Fatalf, client: client, codec: eventcodec.Default()}
}

// backgroundWriter is a writer for a goroutine other than the test's: a
// failure fails the test and ends only that goroutine.
func backgroundWriter(t testing.TB, client *esdb.Client) *writer {
	w := newWriter(t, client)
	w.fail = func(format string, args ...any) {
		t.Errorf(format, args...)
		runtime.Goexit()
	}
	return w
}

// append appends events to stream and returns the commit position of the
// last one.
func (w *writer) append(stream string, evs ...domain.Event) uint64 {
	w.t.Helper()
	data := make([]esdb.EventData, len(evs))
	for i, ev := range evs {
		var err error
		if data[i], err = eventlog.Encode(w.codec, uuid.New(), ev, eventcodec.Metadata{CorrelationID: "test"}); err != nil {
			w.fail("encode %s: %v", ev.EventType(), err)
		}
	}
	return w.appendData(stream, data...)
}

func (w *writer) appendData(stream string, data ...esdb.EventData) uint64 {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := w.client.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, data...)
	if err != nil {
		w.fail("append to %s: %v", stream, err)
	}
	return res.CommitPosition
}

func usd(n int64) domain.Money { return domain.Money{Currency: "USD", Minor: n} }
func eur(n int64) domain.Money { return domain.Money{Currency: "EUR", Minor: n} }

func line(sku string, qty int32, price domain.Money) []domain.OrderLine {
	return []domain.OrderLine{{SKU: sku, Quantity: qty, UnitPrice: price}}
}

func placed(order, customer string, lines []domain.OrderLine) domain.OrderPlaced {
	total, _ := domain.OrderTotal(lines)
	return domain.OrderPlaced{OrderID: order, CustomerID: customer, Lines: lines, Total: total}
}

// script appends a history covering every event type: approval,
// rejection, cancellation before and after approval, a limit change, and
// one order left pending. It returns the position of its last event.
func script(w *writer) uint64 {
	cs, ord := eventlog.CustomerStream, eventlog.OrderStream
	w.append(cs("c1"), domain.CustomerRegistered{CustomerID: "c1", Name: "Ada", Email: "ada@example.com", CreditLimit: usd(1000)})
	w.append(cs("c2"), domain.CustomerRegistered{CustomerID: "c2", Name: "Bob", Email: "bob@example.com", CreditLimit: eur(500)})
	w.append(cs("c1"), domain.CreditLimitChanged{CustomerID: "c1", CreditLimit: usd(2000), PreviousLimit: usd(1000)})

	w.append(ord("o1"), placed("o1", "c1", line("BOOK", 3, usd(100))))
	w.append(cs("c1"), domain.CreditReserved{CustomerID: "c1", OrderID: "o1", Amount: usd(300)})
	w.append(ord("o1"), domain.OrderApproved{OrderID: "o1", CustomerID: "c1"})

	w.append(ord("o2"), placed("o2", "c1", line("PIANO", 1, usd(5000))))
	w.append(cs("c1"), domain.CreditLimitExceeded{CustomerID: "c1", OrderID: "o2", Amount: usd(5000), Available: usd(1700)})
	w.append(ord("o2"), domain.OrderRejected{OrderID: "o2", CustomerID: "c1", Reason: "credit limit exceeded"})

	w.append(ord("o3"), placed("o3", "c2", line("TEA", 4, eur(50))))
	w.append(cs("c2"), domain.CreditReserved{CustomerID: "c2", OrderID: "o3", Amount: eur(200)})
	w.append(ord("o3"), domain.OrderApproved{OrderID: "o3", CustomerID: "c2"})
	w.append(ord("o3"), domain.OrderCancelled{OrderID: "o3", CustomerID: "c2", Reason: "changed my mind"})
	w.append(cs("c2"), domain.CreditReleased{CustomerID: "c2", OrderID: "o3", Amount: eur(200)})

	w.append(ord("o4"), placed("o4", "c2", line("CUP", 1, eur(100))))
	w.append(ord("o5"), placed("o5", "c1", line("PEN", 2, usd(5))))
	return w.append(ord("o5"), domain.OrderCancelled{OrderID: "o5", CustomerID: "c1"})
}

// snapshot is every document of the live views, in listing order.
type snapshot struct {
	Orders    []views.OrderDoc
	Customers []views.CustomerDoc
}

func snap(t *testing.T, r views.Reader) snapshot {
	t.Helper()
	ctx := testCtx(t, 60*time.Second)
	var s snapshot
	q := views.OrderQuery{Limit: 200}
	for {
		page, err := r.ListOrders(ctx, q)
		if err != nil {
			t.Fatalf("ListOrders: %v", err)
		}
		s.Orders = append(s.Orders, page...)
		if len(page) < q.Limit {
			break
		}
		c := page[len(page)-1].Cursor()
		q.After = &c
	}
	cq := views.CustomerQuery{Limit: 200}
	for {
		page, err := r.ListCustomers(ctx, cq)
		if err != nil {
			t.Fatalf("ListCustomers: %v", err)
		}
		s.Customers = append(s.Customers, page...)
		if len(page) < cq.Limit {
			break
		}
		cq.After = page[len(page)-1].RegisteredPosition
	}
	return s
}

func sameSnapshot(t *testing.T, what string, got, want snapshot) {
	t.Helper()
	if len(got.Orders) != len(want.Orders) || len(got.Customers) != len(want.Customers) {
		t.Fatalf("%s: %d orders and %d customers, want %d and %d", what,
			len(got.Orders), len(got.Customers), len(want.Orders), len(want.Customers))
	}
	for i := range got.Orders {
		if !reflect.DeepEqual(got.Orders[i], want.Orders[i]) {
			t.Fatalf("%s: order %d differs:\n got %+v\nwant %+v", what, i, got.Orders[i], want.Orders[i])
		}
	}
	for i := range got.Customers {
		if !reflect.DeepEqual(got.Customers[i], want.Customers[i]) {
			t.Fatalf("%s: customer %d differs:\n got %+v\nwant %+v", what, i, got.Customers[i], want.Customers[i])
		}
	}
}

// workload appends a generated history: customers register, then place
// orders that are approved, rejected or cancelled, each event appended as
// the saga would (one append per decision). It returns the last position.
// IDs start with "wc" and "wo" and include prefix, so workloads with
// different prefixes do not share streams.
func workload(w *writer, prefix string, customers, orders int) uint64 {
	var last uint64
	for c := range customers {
		id := fmt.Sprintf("wc%s%d", prefix, c)
		last = w.append(eventlog.CustomerStream(id), domain.CustomerRegistered{CustomerID: id, Name: "Customer " + id, Email: id + "@example.com", CreditLimit: usd(1_000_000)})
	}
	for o := range orders {
		id, customer := fmt.Sprintf("wo%s%d", prefix, o), fmt.Sprintf("wc%s%d", prefix, o%customers)
		p := placed(id, customer, line("SKU-"+id, int32(1+o%5), usd(int64(100+o%300))))
		last = w.append(eventlog.OrderStream(id), p)
		switch o % 10 {
		case 0, 1: // rejected
			w.append(eventlog.CustomerStream(customer), domain.CreditLimitExceeded{CustomerID: customer, OrderID: id, Amount: p.Total})
			last = w.append(eventlog.OrderStream(id), domain.OrderRejected{OrderID: id, CustomerID: customer, Reason: "credit limit exceeded"})
		case 2: // left pending
		default:
			w.append(eventlog.CustomerStream(customer), domain.CreditReserved{CustomerID: customer, OrderID: id, Amount: p.Total})
			last = w.append(eventlog.OrderStream(id), domain.OrderApproved{OrderID: id, CustomerID: customer})
			if o%10 == 9 {
				w.append(eventlog.OrderStream(id), domain.OrderCancelled{OrderID: id, CustomerID: customer, Reason: "changed my mind"})
				last = w.append(eventlog.CustomerStream(customer), domain.CreditReleased{CustomerID: customer, OrderID: id, Amount: p.Total})
			}
		}
	}
	return last
}
