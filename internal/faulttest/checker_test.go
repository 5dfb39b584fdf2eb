package faulttest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/faulttest"
	"github.com/orderly/orderly/internal/faulttest/invariant"
	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/viewstore"
)

// TestCheckerCatches breaks each kind of invariant on a real system, the
// way a bug would, and requires the checker to name it: a view document
// that is not its stream's fold, credit held for no approved order, an
// acknowledged command whose event is not where its answer said.
func TestCheckerCatches(t *testing.T) {
	t.Parallel()
	s := faulttest.Start(t, faulttest.Config{StoreTimeout: timeout})
	l := faulttest.StartLoad(t, s.CommandClient(), faulttest.LoadConfig{})
	l.WaitProgress(20, time.Minute)
	acks := l.Stop()
	s.Check(time.Minute, acks) // holds before the damage
	// Nothing may repair the damage: the projector and the saga are gone.
	s.Projector.Kill()
	s.Saga.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src := s.Sources()

	// A projector that wrote a newer document than its stream has.
	vs, err := viewstore.Open(ctx, s.ViewStore)
	if err != nil {
		t.Fatal(err)
	}
	defer vs.Close()
	docs, err := vs.ListOrders(ctx, views.OrderQuery{Limit: 1})
	if err != nil || len(docs) != 1 {
		t.Fatalf("an order of the view: %v, %v", docs, err)
	}
	state, err := vs.State(ctx, views.Orders)
	if err != nil {
		t.Fatal(err)
	}
	bad := docs[0]
	bad.Revision++
	if err := vs.Apply(ctx, views.Target{View: views.Orders, Version: state.Live}, views.Batch{Orders: []views.OrderDoc{bad}, Checkpoint: state.LiveCheckpoint}); err != nil {
		t.Fatal(err)
	}

	// Credit reserved for an order that does not exist: no saga step
	// approves it.
	customer := strings.TrimPrefix(acks[0].Stream, eventlog.CustomerPrefix)
	ev, err := eventlog.Encode(eventcodec.Default(), uuid.New(),
		domain.CreditReserved{CustomerID: customer, OrderID: uuid.NewString(), Amount: domain.Money{Currency: "USD", Minor: 123}},
		eventcodec.Metadata{CommandID: "not-the-saga"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Store.AppendToStream(ctx, acks[0].Stream, esdb.AppendToStreamOptions{}, ev); err != nil {
		t.Fatal(err)
	}

	// Acknowledgements the store does not bear out.
	lost := invariant.Ack{CommandID: "lost", Stream: acks[0].Stream, Revision: 1_000, Position: 1}
	moved := acks[len(acks)-1]
	moved.Position++

	r, err := invariant.Check(ctx, src, append(acks, lost, moved))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"orders view: " + bad.OrderID + " differs from its stream: revision",
		"customer " + customer + ": ",
		"customers view: " + customer + " differs from its stream", // and behind it
		"command lost acknowledged at",
		"command " + moved.CommandID + " acknowledged at",
	}
	for _, w := range want {
		found := false
		for _, p := range r.Problems {
			found = found || strings.HasPrefix(p, w)
		}
		if !found {
			t.Errorf("no problem starts with %q; problems:\n%s", w, strings.Join(r.Problems, "\n"))
		}
	}
	if len(r.Problems) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(r.Problems), len(want), strings.Join(r.Problems, "\n"))
	}
}
