package projection_test

import (
	"testing"
	"time"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/projection"
	"github.com/orderly/orderly/internal/views"
)

// TestResumesAtTheCheckpointInclusively: a checkpoint can be a position the
// server reported scanning past, and EventStoreDB can write the next event
// at exactly that position (KurrentDB issue 4970). A projector resuming
// from such a checkpoint applies the event there instead of skipping it.
func TestResumesAtTheCheckpointInclusively(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, open func(t *testing.T) views.Store) {
		client, conn := connect(t, estest.Start(t))
		store := open(t)
		w := newWriter(t, client)
		first := w.append(eventlog.CustomerStream("c1"),
			domain.CustomerRegistered{CustomerID: "c1", Name: "Ada", Email: "ada@example.com", CreditLimit: usd(100)})
		at := w.append(eventlog.CustomerStream("c2"),
			domain.CustomerRegistered{CustomerID: "c2", Name: "Bob", Email: "bob@example.com", CreditLimit: usd(100)})
		// Both views claim to be done up to the second event without having
		// applied it, as after a server checkpoint reported at its position.
		for _, v := range views.All() {
			st, err := store.State(testCtx(t, time.Minute), v)
			if err != nil {
				t.Fatal(err)
			}
			if err := store.Apply(testCtx(t, time.Minute), views.Target{View: v, Version: st.Live}, views.Batch{Checkpoint: at}); err != nil {
				t.Fatal(err)
			}
		}
		r := runProjector(t, conn, store, projection.Options{})
		later := w.append(eventlog.CustomerStream("c3"),
			domain.CustomerRegistered{CustomerID: "c3", Name: "Cy", Email: "cy@example.com", CreditLimit: usd(100)})
		waitFor(t, store, r.notifier, later)
		for id, want := range map[string]bool{"c1": false, "c2": true, "c3": true} {
			_, err := store.GetCustomer(testCtx(t, time.Minute), id)
			if got := err == nil; got != want {
				t.Errorf("customer %s in the view: %t (%v), want %t (first event at %d, checkpoint at %d)", id, got, err, want, first, at)
			}
		}
	})
}
