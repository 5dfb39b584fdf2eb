package command

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/eventstore/estest"
)

// value reads a counter or gauge.
func value(m prometheus.Metric) float64 {
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		panic(err)
	}
	if out.Counter != nil {
		return out.Counter.GetValue()
	}
	return out.Gauge.GetValue()
}

// serviceOn runs a service (a replica) on the store at connString.
func serviceOn(t testing.TB, connString string, opts Options) *Service {
	t.Helper()
	conn, err := eventlog.Connect(connString, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	s, err := New(conn, slog.New(slog.DiscardHandler), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.WaitSnapshots(context.Background()) })
	return s
}

// stored is an event to write straight to a stream: a domain event, or nil
// for a type this build does not know.
type stored struct {
	ev        domain.Event
	commandID string
}

// appendAll writes events to stream through the official client, many per
// append, and returns the stream's last revision.
func appendAll(t testing.TB, c *esdb.Client, stream string, events []stored) uint64 {
	t.Helper()
	reg := eventcodec.Default()
	var last uint64
	for len(events) > 0 {
		n := min(len(events), 1000)
		data := make([]esdb.EventData, n)
		for i, s := range events[:n] {
			if s.ev == nil {
				data[i] = esdb.EventData{EventID: uuid.New(), EventType: "orderly.FromTheFuture", ContentType: esdb.ContentTypeJson, Data: []byte(`{"x":1}`)}
				continue
			}
			var err error
			if data[i], err = eventlog.Encode(reg, uuid.New(), s.ev, eventcodec.Metadata{CommandID: s.commandID, Command: "Test"}); err != nil {
				t.Fatal(err)
			}
		}
		wr, err := c.AppendToStream(testCtx(t), stream, esdb.AppendToStreamOptions{}, data...)
		if err != nil {
			t.Fatal(err)
		}
		last, events = wr.NextExpectedVersion, events[n:]
	}
	return last
}

// randomHistory is a customer's life: registration, then limit changes,
// reservations, refusals and releases of many orders, re-reservations of
// released orders, unknown event types, and commands of one and of several
// events; now and then what only hand-written events hold: an order ID that
// is no UUID, an amount in another currency, a second registration (which
// empties the credit book).
func randomHistory(rng *rand.Rand, id string, n int) []stored {
	h := []stored{{domain.CustomerRegistered{CustomerID: id, Name: "Ada", Email: "ada@example.com", CreditLimit: usd(1_000_000)}, "register-" + id}}
	var reserved, released []string
	cmd := "c0"
	for i := 1; i < n; i++ {
		if rng.IntN(3) > 0 { // else the event shares the previous one's command
			cmd = fmt.Sprintf("c%d-%d", i, rng.IntN(1_000))
		}
		orderID := uuid.NewString()
		amount := usd(7)
		switch rng.IntN(20) {
		case 0:
			orderID = fmt.Sprintf("legacy-%d", rng.IntN(50))
		case 1:
			amount = domain.Money{Currency: "EUR", Minor: 7}
		}
		var ev domain.Event
		switch k := rng.IntN(12); {
		case k == 0 && rng.IntN(20) == 0:
			ev = domain.CustomerRegistered{CustomerID: id, Name: "Bea", Email: "bea@example.com", CreditLimit: usd(1_000_000)}
		case k == 0:
			ev = domain.CreditLimitChanged{CustomerID: id, CreditLimit: usd(rng.Int64N(2_000_000))}
		case k == 1:
			ev = nil
		case k == 2:
			ev = domain.CreditLimitExceeded{CustomerID: id, OrderID: orderID, Amount: usd(rng.Int64N(1_000))}
		case k < 6 && len(reserved) > 0:
			j := rng.IntN(len(reserved))
			ev = domain.CreditReleased{CustomerID: id, OrderID: reserved[j], Amount: amount}
			released = append(released, reserved[j])
			reserved = append(reserved[:j], reserved[j+1:]...)
		case k == 6 && len(released) > 0:
			j := rng.IntN(len(released))
			ev = domain.CreditReserved{CustomerID: id, OrderID: released[j], Amount: amount}
			reserved = append(reserved, released[j])
			released = append(released[:j], released[j+1:]...)
		default:
			reserved = append(reserved, orderID)
			ev = domain.CreditReserved{CustomerID: id, OrderID: orderID, Amount: amount}
		}
		h = append(h, stored{ev, cmd})
	}
	return h
}

// answers is what a customer and its command index say about some order
// and command IDs: what every load must agree on, whatever its
// representation (maps, runs, compacted or not).
type answers struct {
	Head  domain.CustomerHead
	Lines map[string]domain.Credit
	IDs   map[string]uint64
}

// keysOf are the order and command IDs of histories, and a few never used.
func keysOf(histories ...[]stored) (orders, commands []string) {
	for range 3 {
		orders, commands = append(orders, uuid.NewString()), append(commands, uuid.NewString())
	}
	for _, h := range histories {
		for _, s := range h {
			commands = append(commands, s.commandID)
			switch e := s.ev.(type) {
			case domain.CreditReserved:
				orders = append(orders, e.OrderID)
			case domain.CreditLimitExceeded:
				orders = append(orders, e.OrderID)
			case domain.CreditReleased:
				orders = append(orders, e.OrderID)
			}
		}
	}
	return orders, commands
}

// ledger is what a customer answers, however it is held: its head, the
// credit line of an order and the revision a command ID is indexed at.
type ledger struct {
	head  domain.CustomerHead
	line  func(orderID string) (domain.Credit, bool)
	index func(commandID string) (uint64, bool)
}

func answersOf(l ledger, orders, commands []string) answers {
	a := answers{Head: l.head, Lines: map[string]domain.Credit{}, IDs: map[string]uint64{}}
	for _, o := range orders {
		if c, ok := l.line(o); ok {
			a.Lines[o] = c
		}
	}
	for _, cmd := range commands {
		if rev, ok := l.index(cmd); ok {
			a.IDs[cmd] = rev
		}
	}
	return a
}

// sameAnswers fails t unless got and want answer alike about the keys of
// histories.
func sameAnswers(t *testing.T, what string, got, want ledger, histories ...[]stored) {
	t.Helper()
	orders, commands := keysOf(histories...)
	g, w := answersOf(got, orders, commands), answersOf(want, orders, commands)
	if !reflect.DeepEqual(g.Head, w.Head) {
		t.Fatalf("%s: head %+v; folded from zero %+v", what, g.Head, w.Head)
	}
	for _, o := range orders {
		if g.Lines[o] != w.Lines[o] {
			t.Fatalf("%s: order %s has line %+v; folded from zero %+v", what, o, g.Lines[o], w.Lines[o])
		}
	}
	for _, cmd := range commands {
		if g.IDs[cmd] != w.IDs[cmd] {
			t.Fatalf("%s: command %s indexed at %d; folded from zero %d", what, cmd, g.IDs[cmd], w.IDs[cmd])
		}
	}
}

// foldFromZero is the customer and command index a plain fold of the stream
// gives: what every load must agree with.
func foldFromZero(t *testing.T, c *esdb.Client, id string) (*domain.Customer, *cmdIndex) {
	t.Helper()
	recs, err := eventlog.Read(testCtx(t), c, eventcodec.Default(), eventlog.CustomerStream(id), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	cust, ids := domain.NewCustomer(id), newCmdIndex()
	for _, r := range recs {
		cust.Apply(r.Event)
		if r.Meta.CommandID != "" {
			ids.set(idHash(r.Meta.CommandID), r.Revision)
		}
	}
	return cust, ids
}

// fromZero is foldFromZero's ledger.
func fromZero(t *testing.T, c *esdb.Client, id string) ledger {
	t.Helper()
	cust, ids := foldFromZero(t, c, id)
	return ledger{head: cust.Head(), line: cust.CreditLine, index: func(cmd string) (uint64, bool) { return ids.get(idHash(cmd)) }}
}

// loaded loads customer id into s's cache as a command would, or catches
// it up, and returns its ledger: lines and command IDs are looked up as a
// command looks them up (in the pages a lazy load left in the store, too).
func loaded(t testing.TB, s *Service, id string) ledger {
	t.Helper()
	return loadedWith(t, s, id, true)
}

// loadedWith is loaded; without lazy, a load reads the pages in full.
func loadedWith(t testing.TB, s *Service, id string, lazy bool) ledger {
	t.Helper()
	e := acquire(s, customers, id)
	defer s.cache.release(e)
	if !e.loaded {
		if err := s.loadWith(testCtx(t), e, lazy); err != nil {
			t.Fatal(err)
		}
	} else if _, err := s.refresh(testCtx(t), e); err != nil {
		t.Fatal(err)
	}
	in := func(f func(e *entry)) {
		e := acquire(s, customers, id)
		defer s.cache.release(e)
		if !e.loaded { // evicted meanwhile
			if err := s.load(testCtx(t), e); err != nil {
				t.Fatal(err)
			}
		}
		f(e)
	}
	return ledger{
		head: e.agg.(*domain.Customer).Head(),
		line: func(orderID string) (l domain.Credit, ok bool) {
			in(func(e *entry) {
				if err := s.resolveCredit(testCtx(t), e, orderID); err != nil {
					t.Fatal(err)
				}
				l, ok = e.agg.(*domain.Customer).CreditLine(orderID)
			})
			return l, ok
		},
		index: func(cmd string) (rev uint64, ok bool) {
			in(func(e *entry) {
				var err error
				if rev, ok, err = s.indexed(testCtx(t), e, idHash(cmd)); err != nil {
					t.Fatal(err)
				}
			})
			return rev, ok
		},
	}
}

// TestSnapshotFoldEqualsFoldFromZero: for random histories and random page
// lengths, a customer loaded from snapshot pages and the stream's tail
// answers as the customer folded from the first event, index included; so
// does one cached and caught up. Events keep coming, and the service
// restarts at random points (with its pages written, or some still queued),
// so later loads read pages of several writers, runs of several sizes, some
// compacting in the background while the answers are read. Loads use the
// pages' keys, leaving lines and index entries in the store, or read the
// pages in full; now and then the keys are deleted, as a store written
// before keys existed has none, and the next full load writes them again.
func TestSnapshotFoldEqualsFoldFromZero(t *testing.T) {
	t.Parallel()
	connString := estest.Start(t)
	client := estest.Client(t, connString)
	rng := rand.New(rand.NewPCG(14, 2))
	var pagesLoaded, pagesDeferred, pagesFetched float64
	count := func(s *Service) {
		pagesLoaded += value(s.metrics.pagesLoaded)
		pagesDeferred += value(s.metrics.pagesDeferred)
		pagesFetched += value(s.metrics.pagesFetched)
	}
	for round := range 10 {
		id := uuid.NewString()
		pageEvents := 1 + rng.IntN(40)
		opts := Options{SnapshotEvents: pageEvents}
		history := randomHistory(rng, id, rng.IntN(400)+1)
		appendAll(t, client, eventlog.CustomerStream(id), history)

		s := serviceOn(t, connString, opts)
		loaded(t, s, id) // folds from zero and writes the pages
		for step := range 6 {
			more := randomHistory(rng, id, rng.IntN(3*pageEvents)+2)[1:]
			appendAll(t, client, eventlog.CustomerStream(id), more)
			history = append(history, more...)
			restart := rng.IntN(2) == 0
			if restart {
				if rng.IntN(2) == 0 {
					if err := s.WaitSnapshots(testCtx(t)); err != nil {
						t.Fatal(err)
					}
				}
				count(s)
				s = serviceOn(t, connString, opts)
				if rng.IntN(4) == 0 {
					_, _ = client.DeleteStream(testCtx(t), keysStream(eventlog.CustomerStream(id)), esdb.DeleteStreamOptions{})
				}
			}
			if rng.IntN(2) == 0 { // else compactions may be under way
				s.pages.waitBackground()
			}
			lazy := rng.IntN(3) > 0
			got := loadedWith(t, s, id, lazy)
			want := fromZero(t, client, id)
			sameAnswers(t, fmt.Sprintf("round %d step %d (pages of %d, restarted %v, lazy %v)", round, step, pageEvents, restart, lazy),
				got, want, history)
		}
		count(s)
	}
	if pagesLoaded == 0 || pagesDeferred == 0 || pagesFetched == 0 {
		t.Fatalf("pages loaded %v, deferred to their keys %v, fetched for a lookup %v: some way of loading went untried", pagesLoaded, pagesDeferred, pagesFetched)
	}
}

// TestSnapshotOfAnotherFoldVersionIsDiscarded: pages written under another
// fold key are not applied; they are deleted and rewritten under this one.
func TestSnapshotOfAnotherFoldVersionIsDiscarded(t *testing.T) {
	t.Parallel()
	connString, client, id, history := storeWithCustomer(t, 1, 200)
	opts := Options{SnapshotEvents: 20}

	old := serviceOn(t, connString, WithFoldKey(opts, 0xdead))
	loaded(t, old, id)
	if err := old.WaitSnapshots(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if n := value(old.metrics.pagesWritten); n != 10 {
		t.Fatalf("old build wrote %v pages; want 10", n)
	}

	cur := serviceOn(t, connString, opts)
	got := loaded(t, cur, id)
	want := fromZero(t, client, id)
	sameAnswers(t, "loaded by this build", got, want, history)
	wantPages(t, "this build", cur, 0, 10)
	if err := cur.WaitSnapshots(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	next := serviceOn(t, connString, opts)
	sameAnswers(t, "after rewrite", loaded(t, next, id), want, history)
	wantPages(t, "after rewrite", next, 10, 0)
	// Loaded from keys, and only from this build's: the old build's were
	// deleted with its pages.
	lz := lazyOf(next, id)
	if lz == nil {
		t.Fatal("after rewrite: not loaded from page keys")
	}
	for _, k := range lz.keys {
		if k.foldKey != next.foldKey {
			t.Fatalf("after rewrite: loaded from keys of fold key %x", k.foldKey)
		}
	}
}

// TestPagesLoadAcrossChunks: a snapshot stream longer than the chunks a load
// reads at once is applied whole, page for page in order, also once it was
// deleted and rewritten, so that its first event is no longer at 0.
func TestPagesLoadAcrossChunks(t *testing.T) {
	t.Parallel()
	const pages = 2*pageReads*pageChunk + 7
	connString, client, id, history := storeWithCustomer(t, 7, pages)
	opts := Options{SnapshotEvents: 1}
	check := func(what string, s *Service, discarded float64) {
		t.Helper()
		got := loaded(t, s, id)
		want := fromZero(t, client, id)
		sameAnswers(t, what, got, want, history)
		wantPages(t, what, s, pages, discarded)
	}

	old := serviceOn(t, connString, WithFoldKey(opts, 0xdead))
	loaded(t, old, id)
	if err := old.WaitSnapshots(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	w := serviceOn(t, connString, opts) // discards the old pages, writes its own
	loaded(t, w, id)
	if err := w.WaitSnapshots(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	check("pages numbered from past the deleted ones", serviceOn(t, connString, opts), 0)
}

// TestSnapshotOfARecreatedStreamIsNotUsed: pages of a stream that was deleted
// and written anew describe another history; the load sees that the event
// they end at is gone and folds the stream as it is.
func TestSnapshotOfARecreatedStreamIsNotUsed(t *testing.T) {
	t.Parallel()
	connString := estest.Start(t)
	client := estest.Client(t, connString)
	id := uuid.NewString()
	stream := eventlog.CustomerStream(id)
	rng := rand.New(rand.NewPCG(3, 4))
	old := randomHistory(rng, id, 100)
	last := appendAll(t, client, stream, old)
	opts := Options{SnapshotEvents: 10}
	w := serviceOn(t, connString, opts)
	loaded(t, w, id)
	if err := w.WaitSnapshots(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := client.DeleteStream(testCtx(t), stream, esdb.DeleteStreamOptions{ExpectedRevision: esdb.Revision(last)}); err != nil {
		t.Fatal(err)
	}
	recreated := randomHistory(rng, id, 30)
	appendAll(t, client, stream, recreated)

	r := serviceOn(t, connString, opts)
	got := loaded(t, r, id)
	want := fromZero(t, client, id)
	// The old history's orders and commands too: none may be found.
	sameAnswers(t, "recreated stream", got, want, old, recreated)
	if d := value(r.metrics.pagesDiscarded); d == 0 {
		t.Fatal("no page discarded")
	}
	// The writer's own cache, folded from the old stream, is caught too.
	got = loaded(t, w, id)
	sameAnswers(t, "stale cache caught up", got, want, old, recreated)
}

// TestReplicasShareAStore: two services on one store, each with its own
// cache. Every decision must be the one a single writer would make: the
// stale cache is caught by the expected revision on appends, and by a read of
// the tip on refusals.
func TestReplicasShareAStore(t *testing.T) {
	t.Parallel()
	connString := estest.Start(t)
	a, b := serviceOn(t, connString, Options{}), serviceOn(t, connString, Options{})
	ctx := testCtx(t)
	id := uuid.NewString()
	meta := func(cmd string) eventcodec.Metadata {
		return eventcodec.Metadata{CommandID: uuid.NewString(), Command: cmd}
	}

	// b sees no customer and caches that...
	_, err := b.changeCreditLimit(ctx, domain.ChangeCreditLimit{CustomerID: id, CreditLimit: usd(200)}, meta("ChangeCreditLimit"))
	if domain.ReasonOf(err) != domain.ReasonCustomerNotFound {
		t.Fatalf("change on a missing customer: %v", err)
	}
	// ...a registers it...
	if _, err := a.registerCustomer(ctx, domain.RegisterCustomer{CustomerID: id, Name: "Ada", Email: "ada@example.com", CreditLimit: usd(100)}, meta("RegisterCustomer")); err != nil {
		t.Fatal(err)
	}
	// ...and b must not answer from its stale "not registered".
	if _, err := b.ReserveCredit(ctx, domain.ReserveCredit{CustomerID: id, OrderID: uuid.NewString(), Amount: usd(60)}, meta("ReserveCredit")); err != nil {
		t.Fatalf("reserve on b after a registered: %v", err)
	}
	// a's cache misses b's reservation: a second 60 must not fit.
	second := uuid.NewString()
	if _, err := a.ReserveCredit(ctx, domain.ReserveCredit{CustomerID: id, OrderID: second, Amount: usd(60)}, meta("ReserveCredit")); err != nil {
		t.Fatal(err)
	}
	c := customerAt(t, a, id)
	if c.Reserved.Minor != 60 || c.HasReservation(second) {
		t.Fatalf("reserved %d, second order reserved %v; want 60 and false (credit overdrawn by a stale cache)", c.Reserved.Minor, c.HasReservation(second))
	}
	// b's cache thinks the limit is 100 and nothing changed; a raised it.
	if _, err := a.changeCreditLimit(ctx, domain.ChangeCreditLimit{CustomerID: id, CreditLimit: usd(300)}, meta("ChangeCreditLimit")); err != nil {
		t.Fatal(err)
	}
	res, err := b.changeCreditLimit(ctx, domain.ChangeCreditLimit{CustomerID: id, CreditLimit: usd(100)}, meta("ChangeCreditLimit"))
	if err != nil {
		t.Fatal(err)
	}
	if c := customerAt(t, b, id); c.CreditLimit.Minor != 100 || res.Revision != 4 {
		t.Fatalf("limit %d at revision %d after b set it back to 100; want 100 at 4 (a no-op answered from a stale cache)", c.CreditLimit.Minor, res.Revision)
	}
}

// TestCacheBoundedInBytes: with room for a few customers, the cache evicts,
// stays within its bound, and commands on evicted customers are still right,
// replays included.
func TestCacheBoundedInBytes(t *testing.T) {
	t.Parallel()
	connString := estest.Start(t)
	s := serviceOn(t, connString, Options{CacheBytes: 4 * entryBytes})
	ctx := testCtx(t)
	ids := make([]string, 12)
	first := make([]Result, len(ids))
	for i := range ids {
		ids[i] = uuid.NewString()
		if _, err := s.registerCustomer(ctx, domain.RegisterCustomer{CustomerID: ids[i], Name: "Ada", Email: "ada@example.com", CreditLimit: usd(100)},
			eventcodec.Metadata{CommandID: "reg-" + ids[i], Command: "RegisterCustomer"}); err != nil {
			t.Fatal(err)
		}
		var err error
		if first[i], err = s.ReserveCredit(ctx, domain.ReserveCredit{CustomerID: ids[i], OrderID: ids[i], Amount: usd(70)},
			eventcodec.Metadata{CommandID: "reserve-" + ids[i], Command: "ReserveCredit"}); err != nil {
			t.Fatal(err)
		}
	}
	if b := value(s.metrics.cacheBytes); b > 4*entryBytes {
		t.Fatalf("cache holds %v bytes; bound %d", b, 4*entryBytes)
	}
	if n := value(s.metrics.cacheEvictions); n < 8 {
		t.Fatalf("%v evictions; want at least 8", n)
	}
	for i, id := range ids {
		again, err := s.ReserveCredit(ctx, domain.ReserveCredit{CustomerID: id, OrderID: id, Amount: usd(70)},
			eventcodec.Metadata{CommandID: "reserve-" + id, Command: "ReserveCredit"})
		if err != nil || !replayOf(again, first[i]) {
			t.Fatalf("replay on an evicted customer: %+v, %v; want %+v", again, err, first[i])
		}
		other := uuid.NewString()
		if _, err := s.ReserveCredit(ctx, domain.ReserveCredit{CustomerID: id, OrderID: other, Amount: usd(70)},
			eventcodec.Metadata{CommandID: "reserve-" + other, Command: "ReserveCredit"}); err != nil {
			t.Fatal(err)
		}
		if c := customerAt(t, s, id); c.Reserved.Minor != 70 || c.HasReservation(other) {
			t.Fatalf("customer %d: reserved %d; want 70 (the second order exceeds)", i, c.Reserved.Minor)
		}
	}
}

// TestReplayAfter100kEvents: a command replayed after 100,000 later events on
// its aggregate returns its first result and writes nothing, from the cache
// that saw it and from a new replica that has to load the stream; another
// command under its ID is refused.
func TestReplayAfter100kEvents(t *testing.T) {
	t.Parallel()
	connString := estest.Start(t)
	client := estest.Client(t, connString)
	s := serviceOn(t, connString, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // 100k events under -race
	defer cancel()
	id := uuid.NewString()
	if _, err := s.registerCustomer(ctx, domain.RegisterCustomer{CustomerID: id, Name: "Ada", Email: "ada@example.com", CreditLimit: usd(100)},
		eventcodec.Metadata{CommandID: "register", Command: "RegisterCustomer"}); err != nil {
		t.Fatal(err)
	}
	change := func(s *Service, limit int64) (Result, error) {
		return s.changeCreditLimit(ctx, domain.ChangeCreditLimit{CustomerID: id, CreditLimit: usd(limit)},
			eventcodec.Metadata{CommandID: "limit-1", Command: "ChangeCreditLimit"})
	}
	first, err := change(s, 500)
	if err != nil {
		t.Fatal(err)
	}
	later := make([]stored, 100_000)
	for i := range later {
		later[i] = stored{domain.CreditLimitExceeded{CustomerID: id, OrderID: uuid.NewString(), Amount: usd(1_000)}, fmt.Sprintf("later-%d", i)}
	}
	t0 := time.Now()
	last := appendAll(t, client, eventlog.CustomerStream(id), later)
	t.Logf("appended %d events in %v", len(later), time.Since(t0))

	replicas := map[string]*Service{"cached": s}
	// A new replica's first load folds the 100,000 events, which the embedded
	// store reads one point lookup each: seconds, but minutes under -race.
	restarted := serviceOn(t, connString, Options{StoreTimeout: time.Minute})
	if !raceEnabled {
		replicas["restarted"] = restarted
	}
	for name, svc := range replicas {
		// The same request: decided again, it would change nothing and
		// answer the tip, not the first result.
		t0 := time.Now()
		again, err := change(svc, 500)
		t.Logf("%s: replay answered in %v", name, time.Since(t0))
		if err != nil || !replayOf(again, first) {
			t.Fatalf("%s: replay = %+v, %v; want the first result %+v", name, again, err, first)
		}
		_, err = svc.ReserveCredit(ctx, domain.ReserveCredit{CustomerID: id, OrderID: uuid.NewString(), Amount: usd(1)},
			eventcodec.Metadata{CommandID: "limit-1", Command: "ReserveCredit"})
		if domain.ReasonOf(err) != domain.ReasonCommandIDReused {
			t.Fatalf("%s: another command under a used ID: %v; want %s", name, err, domain.ReasonCommandIDReused)
		}
	}
	if !raceEnabled {
		if got := loaded(t, restarted, id); got.head.CreditLimit.Minor != 500 {
			t.Fatalf("limit %d; want 500", got.head.CreditLimit.Minor)
		}
	}
	recs, err := eventlog.Read(ctx, client, eventcodec.Default(), eventlog.CustomerStream(id), last, 0)
	if err != nil || len(recs) != 1 {
		t.Fatalf("the stream grew past revision %d: %d events, %v", last, len(recs), err)
	}
}

// TestRefusedAppendLeavesTheCache: an append the store refuses (here, an
// event over its size limit) changes nothing in the cached aggregate, which
// still equals its stream folded, and the next command decides on it.
func TestRefusedAppendLeavesTheCache(t *testing.T) {
	t.Parallel()
	connString := estest.Start(t, estest.WithConfig(func(c *eventstore.Config) { c.MaxEventSize = 1 << 10 }))
	client := estest.Client(t, connString)
	s := serviceOn(t, connString, Options{})
	ctx := testCtx(t)
	id := uuid.NewString()
	if _, err := s.registerCustomer(ctx, domain.RegisterCustomer{CustomerID: id, Name: "Ada", Email: "ada@example.com", CreditLimit: usd(100)},
		eventcodec.Metadata{CommandID: "register", Command: "RegisterCustomer"}); err != nil {
		t.Fatal(err)
	}
	order := uuid.NewString()
	reserve := func(meta eventcodec.Metadata) error {
		_, err := s.ReserveCredit(ctx, domain.ReserveCredit{CustomerID: id, OrderID: order, Amount: usd(60)}, meta)
		return err
	}
	huge := eventcodec.Metadata{CommandID: "reserve", Command: "ReserveCredit", CorrelationID: strings.Repeat("x", 2<<10)}
	if err := reserve(huge); err == nil {
		t.Fatal("an event over the store's limit was appended")
	}
	e := acquire(s, customers, id) // as cached, not caught up
	got, gotIDs, rev := e.agg.(*domain.Customer), e.ids, e.rev
	s.cache.release(e)
	want, wantIDs := foldFromZero(t, client, id)
	if rev != 0 || !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotIDs, wantIDs) {
		t.Fatalf("after a refused append the cache (revision %d) holds %+v (%d ids); the stream folds to %+v (%d ids)", rev, got, len(gotIDs.recent), want, len(wantIDs.recent))
	}
	if err := reserve(eventcodec.Metadata{CommandID: "reserve", Command: "ReserveCredit"}); err != nil {
		t.Fatalf("the same command, now within the limit: %v", err)
	}
	if c := customerAt(t, s, id); !c.HasReservation(order) {
		t.Fatal("no reservation after the second try")
	}
}

// replayOf reports whether again answers a replay of the command that
// answered first: the same place in the stream, and nothing appended.
func replayOf(again, first Result) bool {
	return again.Position == first.Position && again.Revision == first.Revision && len(again.Appended) == 0
}

// TestOversizeEntryStaysCached: an aggregate alone over the cache's bound is
// not evicted by its own command, so the next command on it finds it cached
// rather than reloading it every time; a warning says so, once.
func TestOversizeEntryStaysCached(t *testing.T) {
	t.Parallel()
	connString := estest.Start(t)
	conn, err := eventlog.Connect(connString, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	var logged bytes.Buffer
	s, err := New(conn, slog.New(slog.NewTextHandler(&logged, nil)), Options{CacheBytes: entryBytes / 2, SnapshotEvents: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	id := uuid.NewString()
	if _, err := s.registerCustomer(ctx, domain.RegisterCustomer{CustomerID: id, Name: "Ada", Email: "ada@example.com", CreditLimit: usd(100)},
		eventcodec.Metadata{CommandID: "reg-" + id}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := s.ReserveCredit(ctx, domain.ReserveCredit{CustomerID: id, OrderID: uuid.NewString(), Amount: usd(1)},
			eventcodec.Metadata{CommandID: fmt.Sprintf("reserve-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if misses := value(s.metrics.cacheMisses); misses != 1 {
		t.Fatalf("%v cache misses over 4 commands on one customer; want 1 (its registration)", misses)
	}
	if n := strings.Count(logged.String(), "over the cache's bound"); n != 1 {
		t.Fatalf("%d warnings of an oversize entry; want 1:\n%s", n, logged.String())
	}
}

// TestSoftDeletedCustomerLoads: the store accepts an append at a
// soft-deleted stream's old last revision, so a replica that cached the
// customer writes a reservation after the truncation point (why aggregate
// streams must only be tombstoned, see the README); a new replica then loads
// the customer from that event, unregistered, and does not panic.
func TestSoftDeletedCustomerLoads(t *testing.T) {
	t.Parallel()
	connString := estest.Start(t)
	client := estest.Client(t, connString)
	s := serviceOn(t, connString, Options{})
	ctx := testCtx(t)
	id := uuid.NewString()
	res, err := s.registerCustomer(ctx, domain.RegisterCustomer{CustomerID: id, Name: "Ada", Email: "ada@example.com", CreditLimit: usd(1000)}, eventcodec.Metadata{CommandID: uuid.NewString()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.DeleteStream(ctx, customers.stream(id), esdb.DeleteStreamOptions{ExpectedRevision: esdb.Revision(res.Revision)}); err != nil {
		t.Fatal(err)
	}
	_, err = s.ReserveCredit(ctx, domain.ReserveCredit{CustomerID: id, OrderID: uuid.NewString(), Amount: usd(300)}, eventcodec.Metadata{CommandID: uuid.NewString()})
	t.Logf("reservation on the cached, soft-deleted customer: %v", err)
	if c := loaded(t, serviceOn(t, connString, Options{}), id).head; c.Registered || c.Reserved.Minor != 0 {
		t.Fatalf("customer loaded after its soft delete = %+v; want unregistered", c)
	}
}

// TestIDHashIsStable pins the command-ID hash: snapshot pages persist it, so
// changing it must come with a new page format (see pageFormat).
func TestIDHashIsStable(t *testing.T) {
	t.Parallel()
	if got := idHash("order-1"); got != 0x8c69d25621e2af0b {
		t.Fatalf("idHash(order-1) = %#x; the pages' format says 0x8c69d25621e2af0b", got)
	}
}

// TestPageQueueLetsWrittenPagesGo: the page writer's queue keeps no page's
// bytes once it is taken for writing.
func TestPageQueueLetsWrittenPagesGo(t *testing.T) {
	t.Parallel()
	s, _ := newTestService(t, Options{})
	jobs := make([]pageJob, 3)
	for i := range jobs {
		jobs[i] = pageJob{stream: "customer-" + uuid.NewString(), id: uuid.New(), data: []byte("page"), page: &page{}}
	}
	w := s.pages
	w.mu.Lock()
	w.queue, w.bytes, w.done = jobs, 3*len("page"), make(chan struct{})
	go w.drain(w.done)
	w.mu.Unlock()
	if err := s.WaitSnapshots(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	for i, j := range jobs {
		if j.data != nil {
			t.Errorf("job %d still holds its page after it was written", i)
		}
	}
	if n := value(s.metrics.pagesWritten); n != 3 {
		t.Fatalf("%v pages written; want 3", n)
	}
}

// TestPagesOfAnOlderFormatAreDiscarded: a page of format 2 (credit lines
// and index entries as varint lists, before runs), under the fold key of its
// build, is not read as this format: it is discarded, and the customer folds
// from its first event.
func TestPagesOfAnOlderFormatAreDiscarded(t *testing.T) {
	t.Parallel()
	connString, client, id, history := storeWithCustomer(t, 5, 50)
	first, err := eventlog.Read(testCtx(t), client, eventcodec.Default(), eventlog.CustomerStream(id), 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	// A format 2 page of the registration alone, as that build wrote it.
	b := []byte{2}
	b = binary.LittleEndian.AppendUint64(b, foldKeyOf(2, eventcodec.Default()))
	b = append(b, 0, 0) // from, to
	b = append(b, first[0].EventID[:]...)
	b = append(b, 0, 1) // credit lines, index entries after the page
	head := history[0].ev.(domain.CustomerRegistered)
	b = appendBool(b, true)
	b = appendString(b, head.Name)
	b = appendString(b, head.Email)
	b = appendMoney(b, head.CreditLimit)
	b = appendMoney(b, domain.Zero("USD"))
	b = append(b, 0, 1) // no credit line, one index entry
	b = binary.LittleEndian.AppendUint64(b, idHash(history[0].commandID))
	b = append(b, 0)
	if _, err := client.AppendToStream(testCtx(t), snapshotStream(eventlog.CustomerStream(id)), esdb.AppendToStreamOptions{},
		esdb.EventData{EventType: pageEventType, ContentType: esdb.ContentTypeBinary, Data: b}); err != nil {
		t.Fatal(err)
	}
	s := serviceOn(t, connString, Options{SnapshotEvents: 10})
	got := loaded(t, s, id)
	want := fromZero(t, client, id)
	sameAnswers(t, "loaded past an old page", got, want, history)
	wantPages(t, "past an old page", s, 0, 1)
}

// storeWithCustomer starts a store holding a customer of n random events
// (randomHistory, seeded).
func storeWithCustomer(t *testing.T, seed uint64, n int) (connString string, client *esdb.Client, id string, history []stored) {
	t.Helper()
	connString = estest.Start(t)
	client = estest.Client(t, connString)
	id = uuid.NewString()
	history = randomHistory(rand.New(rand.NewPCG(seed, seed+1)), id, n)
	appendAll(t, client, eventlog.CustomerStream(id), history)
	return connString, client, id, history
}

// wantPages fails t unless s used (loaded, or deferred to their keys) and
// discarded so many snapshot pages.
func wantPages(t *testing.T, what string, s *Service, used, discarded float64) {
	t.Helper()
	if u, d := value(s.metrics.pagesLoaded)+value(s.metrics.pagesDeferred), value(s.metrics.pagesDiscarded); u != used || d != discarded {
		t.Fatalf("%s: pages used %v, discarded %v; want %v and %v", what, u, d, used, discarded)
	}
}

// TestCacheCountsRuns: the cache's byte estimate of a customer holds its
// sealed runs, loaded from pages or sealed by its own fold, at no less than
// their bytes: a bound the runs escaped would not bound memory.
func TestCacheCountsRuns(t *testing.T) {
	t.Parallel()
	connString := estest.Start(t)
	client := estest.Client(t, connString)
	id := uuid.NewString()
	const orders = 1000
	history := []stored{{domain.CustomerRegistered{CustomerID: id, Name: "Ada", Email: "ada@example.com", CreditLimit: usd(1_000_000)}, "register"}}
	for i := range orders {
		history = append(history, stored{domain.CreditReserved{CustomerID: id, OrderID: uuid.NewString(), Amount: usd(1)}, fmt.Sprintf("reserve-%d", i)})
	}
	appendAll(t, client, eventlog.CustomerStream(id), history)
	opts := Options{SnapshotEvents: 50}
	writer := serviceOn(t, connString, opts)
	loaded(t, writer, id)
	if err := writer.WaitSnapshots(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	reader := serviceOn(t, connString, opts)
	loadedWith(t, reader, id, false)
	if value(reader.metrics.pagesLoaded) == 0 {
		t.Fatal("no page loaded")
	}
	least := float64(orders * (25 + indexEntryLen)) // a run entry of each line and each command
	for name, s := range map[string]*Service{"sealed by its fold": writer, "loaded from pages": reader} {
		if b := value(s.metrics.cacheBytes); b < least || b > 4*least+entryBytes {
			t.Errorf("%s: cache holds %v bytes by its estimate; the runs alone hold %v", name, b, least)
		}
	}
	// Loaded from the pages' keys, it holds their fingerprints, and once
	// merged, the merged arrays (twice as many bytes): less than the runs.
	lazy := serviceOn(t, connString, opts)
	loaded(t, lazy, id)
	lazy.pages.waitBackground()
	loaded(t, lazy, id) // released again, with the merge counted
	if value(lazy.metrics.pagesDeferred) == 0 {
		t.Fatal("no page deferred")
	}
	keys := float64(orders * 2 * fpLen)
	if b := value(lazy.metrics.cacheBytes); b < 3*keys || b > least {
		t.Errorf("loaded from page keys: cache holds %v bytes by its estimate; their fingerprints, merged too, hold %v, the runs %v", b, 3*keys, least)
	}
}

// placed is an order placed through placeOrderFor, and its first answer.
type placed struct {
	id, customer string
	meta         eventcodec.Metadata
	first        Result
}

// placeOrderFor places an order of 10 USD for customer through s.
func placeOrderFor(t *testing.T, s *Service, customer string) placed {
	t.Helper()
	p := placed{customer: customer, meta: eventcodec.Metadata{CommandID: "place-" + uuid.NewString()}}
	p.id = orderIDFor(p.meta.CommandID)
	var err error
	if p.first, err = s.placeOrder(testCtx(t), p.cmd(), p.meta); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p placed) cmd() domain.PlaceOrder {
	return domain.PlaceOrder{OrderID: p.id, CustomerID: p.customer, Lines: []domain.OrderLine{{SKU: "A", Quantity: 1, UnitPrice: usd(10)}}}
}

func approve(t *testing.T, s *Service, orderID string) Result {
	t.Helper()
	res, err := s.ApproveOrder(testCtx(t), orderID, eventcodec.Metadata{CommandID: "approve-" + orderID})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestDecidedOrdersKeepToTheirShare: after many orders are placed and
// decided, what the cache holds is proportional to its customers and open
// orders, not to every order it saw; the decided orders it let go still
// answer replays of their commands with their first results, and take a
// cancellation.
func TestDecidedOrdersKeepToTheirShare(t *testing.T) {
	t.Parallel()
	connString := estest.Start(t)
	const bound = 256 * entryBytes
	s := serviceOn(t, connString, Options{CacheBytes: bound})
	ctx := testCtx(t)
	custs := []string{uuid.NewString(), uuid.NewString()}
	for _, c := range custs {
		register(t, s, c)
	}
	const decidedN, pendingN = 300, 10
	var decided, pending []placed
	approvals := map[string]Result{}
	for i := range decidedN + pendingN {
		p := placeOrderFor(t, s, custs[i%len(custs)])
		if i >= decidedN {
			pending = append(pending, p)
			continue
		}
		approvals[p.id] = approve(t, s, p.id)
		decided = append(decided, p)
	}
	// An order, or a customer with a few commands, is estimated at a little
	// over entryBytes; the settled share holds what is left of the rest.
	open := len(custs) + pendingN
	if b, most := value(s.metrics.cacheBytes), float64(2*entryBytes*open+bound/settledShare); b > most {
		t.Fatalf("after %d orders decided and %d pending, the cache holds %v bytes; want at most %v, as for %d open aggregates and the settled share",
			decidedN, pendingN, b, most, open)
	}
	for _, p := range pending {
		if s.cache.peek(orders.stream(p.id)) == nil {
			t.Fatalf("pending order %s was evicted while decided ones were cached", p.id)
		}
	}
	evicted := 0
	for _, p := range decided {
		if s.cache.peek(orders.stream(p.id)) != nil {
			continue
		}
		evicted++
		if evicted > 3 {
			continue
		}
		// Reloaded, or cached again by the replay of its creation (which the
		// store acknowledges, reporting the events as appended, see
		// createNew), an order answers from where its commands were
		// recorded; that nothing was written again shows in the revision
		// of the cancellation.
		again, err := s.placeOrder(ctx, p.cmd(), p.meta)
		if err != nil || !sameSpot(again, p.first) {
			t.Fatalf("PlaceOrder replayed on an evicted order: %+v, %v; want %+v", again, err, p.first)
		}
		if again := approve(t, s, p.id); !sameSpot(again, approvals[p.id]) {
			t.Fatalf("ApproveOrder replayed on an evicted order: %+v; want %+v", again, approvals[p.id])
		}
		res, err := s.cancelOrder(ctx, domain.CancelOrder{OrderID: p.id, Reason: "changed my mind"}, eventcodec.Metadata{CommandID: "cancel-" + p.id})
		if err != nil || res.Revision != 2 {
			t.Fatalf("cancel of an evicted approved order: %+v, %v; want its third event", res, err)
		}
		if o := cachedIsStream(t, s, orders, p.id); o.Status != domain.StatusCancelled {
			t.Fatalf("order %s is %s after its cancellation", p.id, o.Status)
		}
	}
	if evicted < decidedN/2 {
		t.Fatalf("%d of %d decided orders evicted; want most", evicted, decidedN)
	}
}

func sameSpot(again, first Result) bool {
	return again.Position == first.Position && again.Revision == first.Revision
}

// TestDecidedOrdersGoBeforeCustomers: a stream of orders placed and decided
// does not push an idle customer out of a cache too small for them all, so
// the customer's next command finds it cached.
func TestDecidedOrdersGoBeforeCustomers(t *testing.T) {
	t.Parallel()
	connString := estest.Start(t)
	s := serviceOn(t, connString, Options{CacheBytes: 16 * entryBytes})
	idle, busy := uuid.NewString(), uuid.NewString()
	register(t, s, idle)
	register(t, s, busy)
	for range 40 {
		approve(t, s, placeOrderFor(t, s, busy).id)
	}
	misses := value(s.metrics.cacheMisses)
	if _, err := s.changeCreditLimit(testCtx(t), domain.ChangeCreditLimit{CustomerID: idle, CreditLimit: usd(2000)},
		eventcodec.Metadata{CommandID: "limit-" + idle}); err != nil {
		t.Fatal(err)
	}
	if got := value(s.metrics.cacheMisses) - misses; got != 0 {
		t.Fatalf("the idle customer was evicted by 40 decided orders (%v misses on its next command)", got)
	}
}
