package projection_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/projection"
	"github.com/orderly/orderly/internal/views"
)

// slowStore is a real view store whose Apply takes perDoc for every
// document of the batch before it writes — a store that needs longer than
// the store timeout for a large batch, as FerretDB does. A write cut short
// by its deadline writes nothing.
type slowStore struct {
	views.Store
	perDoc time.Duration
}

func (s slowStore) Apply(ctx context.Context, t views.Target, b views.Batch) error {
	timer := time.NewTimer(time.Duration(len(b.Orders)+len(b.Customers)) * s.perDoc)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("slow store: %w", ctx.Err())
	case <-timer.C:
	}
	return s.Store.Apply(ctx, t, b)
}

// TestSlowViewStore projects a backlog into a view store that writes
// about 50 documents within the store timeout, while the backlog's batches
// hold three times as many: batches that time out are split until they
// fit, so the projector catches up, and the views equal those of a fast
// store.
func TestSlowViewStore(t *testing.T) {
	connString := estest.Start(t)
	client, conn := connect(t, connString)
	w := newWriter(t, client)
	last := workload(w, "", 10, 150)

	store := slowStore{Store: openSQLite(t), perDoc: 10 * time.Millisecond}
	r := runProjector(t, conn, store, projection.Options{StoreTimeout: 500 * time.Millisecond})
	waitFor(t, store, r.notifier, last)

	_, fastConn := connect(t, connString)
	fast := openSQLite(t)
	rf := runProjector(t, fastConn, fast, projection.Options{})
	waitFor(t, fast, rf.notifier, last)
	sameSnapshot(t, "slow store against a fast one", snap(t, store), snap(t, fast))
	if n := counter(t, r.registry, "orderly_projector_errors_total", map[string]string{"kind": "store"}); n == 0 {
		t.Error("no batch timed out: the test did not exercise a slow store")
	}
}
