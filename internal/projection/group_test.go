package projection_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/projection"
	"github.com/orderly/orderly/internal/views"
)

// groupWrites wraps a real view store: it counts the writes by kind, and
// fails every group write carrying order failOrder, as a store whose
// commit fails would.
type groupWrites struct {
	views.Store
	group           views.GroupWriter
	applies, groups atomic.Int64
	failOrder       atomic.Pointer[string]
}

func (s *groupWrites) Apply(ctx context.Context, t views.Target, b views.Batch) error {
	s.applies.Add(1)
	return s.Store.Apply(ctx, t, b)
}

func (s *groupWrites) ApplyGroup(ctx context.Context, ws []views.Write) error {
	s.groups.Add(1)
	if id := s.failOrder.Load(); id != nil {
		for _, w := range ws {
			if slices.ContainsFunc(w.Batch.Orders, func(o views.OrderDoc) bool { return o.OrderID == *id }) {
				return errors.New("injected: commit failed")
			}
		}
	}
	return s.group.ApplyGroup(ctx, ws)
}

// TestViewsWrittenTogether: on a store that can, the projector writes
// every view's share of a batch in one write (one SQLite commit, not one
// per view). When that write fails, it writes the views one by one
// instead, and every event still reaches them.
func TestViewsWrittenTogether(t *testing.T) {
	client, conn := connect(t, estest.Start(t))
	sqlite := openSQLite(t)
	store := &groupWrites{Store: sqlite, group: sqlite.(views.GroupWriter)}
	r := runProjector(t, conn, store, projection.Options{})
	w := newWriter(t, client)
	waitFor(t, store, r.notifier, script(w))
	if g, a := store.groups.Load(), store.applies.Load(); g == 0 || a != 0 {
		t.Errorf("%d group writes and %d of one view; want only group writes", g, a)
	}

	failing := "o6"
	store.failOrder.Store(&failing)
	cs, ord := eventlog.CustomerStream, eventlog.OrderStream
	w.append(ord("o6"), placed("o6", "c1", line("INK", 1, usd(40))))
	waitFor(t, store, r.notifier, w.append(cs("c1"), domain.CreditReserved{CustomerID: "c1", OrderID: "o6", Amount: usd(40)}))
	if store.applies.Load() == 0 {
		t.Error("no write of one view after the group write failed")
	}
	ctx := testCtx(t, 10*time.Second)
	if o, err := store.GetOrder(ctx, "o6"); err != nil || o.Status != domain.StatusPending {
		t.Errorf("o6 after the failed group write = %+v, %v; want pending", o, err)
	}
	// c1 holds 300 for o1 (script), and now 40 for o6.
	if c, err := store.GetCustomer(ctx, "c1"); err != nil || c.CreditReserved != usd(340) {
		t.Errorf("c1 after the failed group write = %+v, %v; want 340 reserved", c, err)
	}
}
