package projection_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/projection"
	"github.com/orderly/orderly/internal/views"
)

// loadCounting counts the documents a real view store is asked to load.
type loadCounting struct {
	views.Store
	loads atomic.Int64
}

func (s *loadCounting) LoadOrders(ctx context.Context, t views.Target, ids []string) (map[string]views.OrderDoc, error) {
	s.loads.Add(int64(len(ids)))
	return s.Store.LoadOrders(ctx, t, ids)
}

func (s *loadCounting) LoadCustomers(ctx context.Context, t views.Target, ids []string) (map[string]views.CustomerDoc, error) {
	s.loads.Add(int64(len(ids)))
	return s.Store.LoadCustomers(ctx, t, ids)
}

// Each event after the first of a stream, written once the last is
// visible (its own batch), folds onto the document the projector wrote
// without reading it back; with the cache off, every one is a read.
func TestDocCacheSparesReads(t *testing.T) {
	for _, tc := range []struct {
		name      string
		bytes     int
		wantLoads func(n int64) bool
	}{
		{"cached", 0, func(n int64) bool { return n == 0 }},
		{"off", -1, func(n int64) bool { return n == 4 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, conn := connect(t, estest.Start(t))
			store := &loadCounting{Store: openSQLite(t)}
			r := runProjector(t, conn, store, projection.Options{DocCacheBytes: tc.bytes})
			w := newWriter(t, client)
			cs, ord := eventlog.CustomerStream, eventlog.OrderStream
			for _, step := range []struct {
				stream string
				ev     domain.Event
			}{
				{cs("c1"), domain.CustomerRegistered{CustomerID: "c1", Name: "Ada", Email: "ada@example.com", CreditLimit: usd(1000)}},
				{ord("o1"), placed("o1", "c1", line("BOOK", 1, usd(100)))},
				{cs("c1"), domain.CreditReserved{CustomerID: "c1", OrderID: "o1", Amount: usd(100)}},
				{ord("o1"), domain.OrderApproved{OrderID: "o1"}},
				{cs("c1"), domain.CreditReleased{CustomerID: "c1", OrderID: "o1", Amount: usd(100)}},
				{ord("o1"), domain.OrderCancelled{OrderID: "o1", Reason: "changed my mind"}},
			} {
				waitFor(t, store, r.notifier, w.append(step.stream, step.ev))
			}
			if n := store.loads.Load(); !tc.wantLoads(n) {
				t.Errorf("%d documents read from the view store", n)
			}
			doc, err := store.GetOrder(testCtx(t, 10*time.Second), "o1")
			if err != nil || doc.Status != domain.StatusCancelled || doc.Revision != 2 {
				t.Errorf("o1 = %+v, %v; want cancelled at revision 2", doc, err)
			}
		})
	}
}

// A document written by someone else after the projector cached it (another
// instance, a newer build) is read, not folded over: the cached copy is used
// only for the event right after it. Here revision 1 cannot be decoded by
// this projector, which dead-letters it, and another writer has applied it
// to the view; revision 2 must then fold onto that writer's document.
func TestDocCacheMissesAfterAnotherWriter(t *testing.T) {
	client, conn := connect(t, estest.Start(t))
	store := openSQLite(t)
	r := runProjector(t, conn, store, projection.Options{})
	w := newWriter(t, client)
	stream := eventlog.OrderStream("o1")
	waitFor(t, store, r.notifier, w.append(stream, placed("o1", "c1", line("BOOK", 1, usd(100)))))

	doc, err := store.GetOrder(testCtx(t, 10*time.Second), "o1")
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.State(testCtx(t, 10*time.Second), views.Orders)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := store.Checkpoint(testCtx(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	doc.Status, doc.Reason, doc.Revision = domain.StatusApproved, "applied elsewhere", 1
	if err := store.Apply(testCtx(t, 10*time.Second), views.Target{View: views.Orders, Version: st.Live}, views.Batch{Orders: []views.OrderDoc{doc}, Checkpoint: cp}); err != nil {
		t.Fatal(err)
	}

	w.appendData(stream, esdb.EventData{EventType: domain.TypeOrderApproved, ContentType: esdb.ContentTypeJson, Data: []byte("{not json")})
	waitFor(t, store, r.notifier, w.append(stream, domain.OrderApproved{OrderID: "o1"}))
	got, err := store.GetOrder(testCtx(t, 10*time.Second), "o1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Revision != 2 || got.Status != domain.StatusApproved || got.Reason != "applied elsewhere" {
		t.Errorf("o1 = revision %d, %s, reason %q; want revision 2 folded onto the document applied elsewhere", got.Revision, got.Status, got.Reason)
	}
}
