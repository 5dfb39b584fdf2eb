package saga_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/lease"
	"github.com/orderly/orderly/internal/saga"
	"github.com/orderly/orderly/internal/serve"
)

const converge = 30 * time.Second

// TestCreditFlow: within the limit an order is approved, beyond it rejected,
// and cancelling an approved order gives its credit back for the next one.
func TestCreditFlow(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	startSaga(t, env, saga.Options{})
	cust := env.RegisterCustomer(t, 10_000)

	callCtx := metadata.AppendToOutgoingContext(ctx(t), serve.CorrelationHeader, "flow-1")
	resp, err := env.API.PlaceOrder(callCtx, &orderlyv1.PlaceOrderRequest{CustomerId: cust, Lines: []*orderlyv1.OrderLine{{Sku: "A", Quantity: 3, UnitPrice: commandtest.USD(2_000)}}})
	if err != nil {
		t.Fatal(err)
	}
	a := placed{id: resp.OrderId, customer: cust, total: 6_000}
	eventually(t, converge, func() (bool, string) {
		st := env.Order(t, a.id).Status
		return st == domain.StatusApproved, fmt.Sprintf("order A is %v", st)
	})
	// The saga's events continue the client's correlation, each caused by
	// the event before it.
	orderEvents := env.History(t, eventlog.OrderStream(a.id))
	custEvents := env.History(t, eventlog.CustomerStream(cust))
	reservedEv, approvedEv := custEvents[len(custEvents)-1], orderEvents[1]
	if reservedEv.Type != domain.TypeCreditReserved || reservedEv.Meta.CorrelationID != "flow-1" || reservedEv.Meta.CausationID != orderEvents[0].EventID.String() {
		t.Errorf("reservation %s %+v; want the correlation flow-1, caused by OrderPlaced %s", reservedEv.Type, reservedEv.Meta, orderEvents[0].EventID)
	}
	if approvedEv.Meta.CorrelationID != "flow-1" || approvedEv.Meta.CausationID != reservedEv.EventID.String() {
		t.Errorf("approval %+v; want caused by CreditReserved %s", approvedEv.Meta, reservedEv.EventID)
	}

	b := place(t, env, cust, 5_000) // 4,000 left
	eventually(t, converge, func() (bool, string) {
		o := env.Order(t, b.id)
		return o.Status == domain.StatusRejected, fmt.Sprintf("order B is %v", o.Status)
	})
	if o := env.Order(t, b.id); o.Reason == "" {
		t.Error("rejected order has no reason")
	}

	cancel(t, env, &a)
	c := place(t, env, cust, 9_000)
	orders := []placed{a, b, c}
	eventually(t, converge, func() (bool, string) { return settled(t, env, orders) })
	if st := env.Order(t, c.id).Status; st != domain.StatusApproved {
		t.Fatalf("order C is %v once A's credit was released; want APPROVED", st)
	}
}

// TestCancelDuringReservation: orders cancelled before the saga got to
// them, or between their reservation and their approval, end cancelled with
// their credit released.
func TestCancelDuringReservation(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	cust := env.RegisterCustomer(t, 10_000)

	// Cancelled before the saga saw it placed.
	early := place(t, env, cust, 1_000)
	cancel(t, env, &early)

	// Cancelled after its credit was reserved, before the saga approved it:
	// the reservation is written here as the saga would, then the order is
	// cancelled, so the saga meets a CreditReserved for a cancelled order.
	late := cancelledWhileReserved(t, env, cust)

	s := startSaga(t, env, saga.Options{})
	orders := []placed{early, late}
	eventually(t, converge, func() (bool, string) { return settled(t, env, orders) })
	custEvents := env.History(t, eventlog.CustomerStream(cust))
	var releases int
	for _, r := range custEvents {
		if _, ok := r.Event.(domain.CreditReleased); ok {
			releases++
		}
	}
	if releases != 2 {
		t.Fatalf("%d releases; want one per cancelled order", releases)
	}
	// The saga's own reservation attempt for "late" met the earlier one: an
	// expected refusal, neither an error nor a dead letter.
	if got := s.metric(t, "orderly_saga_errors_total") + s.metric(t, "orderly_saga_dead_letters_total"); got != 0 {
		t.Errorf("saga errors and dead letters = %v; want none", got)
	}
}

// TestNoOverdraft: 50 clients place orders for one customer at once; the
// saga approves exactly as many as the limit holds and rejects the rest.
func TestNoOverdraft(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{}, estest.OnDisk())
	startSaga(t, env, saga.Options{})
	const limit, amount, n = 10_000, 700, 50
	cust := env.RegisterCustomer(t, limit)

	orders := make([]placed, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range orders {
		wg.Go(func() {
			resp, err := env.API.PlaceOrder(ctx(t), &orderlyv1.PlaceOrderRequest{CustomerId: cust, Lines: []*orderlyv1.OrderLine{{Sku: "A", Quantity: 1, UnitPrice: commandtest.USD(amount)}}})
			if err == nil {
				orders[i] = placed{id: resp.OrderId, customer: cust, total: amount}
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, converge, func() (bool, string) { return settled(t, env, orders) })
	approved := 0
	for _, o := range orders {
		if env.Order(t, o.id).Status == domain.StatusApproved {
			approved++
		}
	}
	if approved != limit/amount {
		t.Fatalf("%d orders approved; the limit holds %d", approved, limit/amount)
	}
}

// TestKillAndRestart stops the saga in the middle of a stream of orders and
// cancellations, keeps writing while it is down, and starts a new instance:
// it resumes from the checkpoint and everything converges.
func TestKillAndRestart(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{}, estest.OnDisk())
	opts := saga.Options{CheckpointEvery: 5}
	first := startSaga(t, env, opts)

	customers := []string{env.RegisterCustomer(t, 5_000), env.RegisterCustomer(t, 8_000), env.RegisterCustomer(t, 20_000)}
	var orders []placed
	burst := func(n int) {
		for i := range n {
			o := place(t, env, customers[i%len(customers)], int64(500+(i*379)%2_500))
			if i%4 == 1 {
				cancel(t, env, &o) // some while pending, some after the saga acted
			}
			orders = append(orders, o)
			if earlier := &orders[max(len(orders)-3, 0)]; i%5 == 2 && !earlier.cancelled {
				cancel(t, env, earlier) // placed a moment ago: the saga may be deciding it
			}
		}
	}

	burst(30)
	eventually(t, converge, func() (bool, string) {
		return first.metric(t, "orderly_saga_events_handled_total") >= 10, "the first saga has not handled 10 events yet"
	})
	first.stop() // mid-flow: orders are still pending
	handledBefore := first.metric(t, "orderly_saga_events_handled_total")
	stoppedAt := first.Position()
	// Each partition saved a checkpoint of its own, at or past stoppedAt
	// (the lowest).
	snap, err := leasesFor(t, env).ScanLeases(ctx(t), saga.DefaultProcessor)
	if err != nil {
		t.Fatal(err)
	}
	checkpointOf := func(key string) uint64 {
		return snap.Leases[lease.Of(key, len(snap.Leases))].Checkpoint.Commit
	}

	burst(30) // while no saga runs
	second := startSaga(t, env, opts)
	eventually(t, converge, func() (bool, string) { return settled(t, env, orders) })

	// The second instance resumed where the first one's checkpoints
	// stopped (their watermarks), inclusively: it handled exactly the
	// events from its partition's checkpoint on, the one at the checkpoint
	// again (see eventlog.ResumePoint). The first one finished at least
	// those up to the lowest (more, in lanes ahead of the watermarks: the
	// second redoes them, writing nothing). The last steps may have shown
	// their effect before the saga counted them.
	var upTo, past float64
	for _, r := range sagaEvents(t, env, orders) {
		if r.Position <= stoppedAt {
			upTo++
		}
		if r.Position >= checkpointOf(saga.LaneKey(r, nil)) {
			past++
		}
	}
	eventually(t, converge, func() (bool, string) {
		n := second.metric(t, "orderly_saga_events_handled_total")
		return n >= past, fmt.Sprintf("the second saga handled %v events; want the %v from their partitions' checkpoints (the lowest %d) on", n, past, stoppedAt)
	})
	if handledAfter := second.metric(t, "orderly_saga_events_handled_total"); handledAfter != past || handledBefore < upTo || stoppedAt == 0 {
		t.Errorf("handled %v events, stopped at %d (%v events up to it), then %v; want the %v from their partitions' checkpoints on", handledBefore, stoppedAt, upTo, handledAfter, past)
	}
}

// TestRehandlingWritesNothing runs a second saga from the beginning of a
// settled log (its own processor name, so its own checkpoints): every reaction is found done
// already, so no aggregate gains an event.
func TestRehandlingWritesNothing(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	first := startSaga(t, env, saga.Options{})
	cust := env.RegisterCustomer(t, 3_000)
	orders := []placed{place(t, env, cust, 1_000), place(t, env, cust, 5_000), place(t, env, cust, 1_500)}
	cancel(t, env, &orders[0])
	eventually(t, converge, func() (bool, string) { return settled(t, env, orders) })
	first.stop()
	before := streamEvents(t, env, orders)

	again := startSaga(t, env, saga.Options{Lease: lease.Config{Processor: "saga-test-replay"}, CheckpointStream: "saga-test-replay"})
	head := env.Head(t)
	eventually(t, converge, func() (bool, string) {
		return again.Position() >= head, fmt.Sprintf("replaying saga at %d of %d", again.Position(), head)
	})
	if handled := again.metric(t, "orderly_saga_events_handled_total"); handled < 7 {
		t.Fatalf("replaying saga handled %v events; want all 7 again", handled)
	}
	if after := streamEvents(t, env, orders); after != before {
		t.Fatalf("re-handling the log wrote %d events", after-before)
	}
}

// TestNewerReleasesEventsDoNotStall: a customer stream holding an event of a
// type this build does not know (a newer release wrote it, mid-upgrade) is
// still folded, so that customer's orders and everyone else's are decided.
func TestNewerReleasesEventsDoNotStall(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	renamed, other := env.RegisterCustomer(t, 10_000), env.RegisterCustomer(t, 10_000)
	if _, err := env.Store.AppendToStream(ctx(t), eventlog.CustomerStream(renamed), esdb.AppendToStreamOptions{}, esdb.EventData{
		EventType: "orderly.CustomerRenamed", ContentType: esdb.ContentTypeJson, Data: []byte(`{"name":"Ada King"}`),
	}); err != nil {
		t.Fatal(err)
	}
	orders := []placed{place(t, env, renamed, 1_000), place(t, env, other, 1_000)}
	startSaga(t, env, saga.Options{})
	eventually(t, converge, func() (bool, string) { return settled(t, env, orders) })
	for _, o := range orders {
		if st := env.Order(t, o.id).Status; st != domain.StatusApproved {
			t.Errorf("order %s is %v; want APPROVED", o.id, st)
		}
	}
}

// TestStoreRestart stops the event store under a running saga: the
// subscription drops, the saga resubscribes with backoff once the store is
// back, and orders placed afterwards are decided.
func TestStoreRestart(t *testing.T) {
	t.Parallel()
	store := commandtest.StartStore(t)
	env := commandtest.StartOn(t, store.ConnString(), command.Options{StoreTimeout: 2 * time.Second})
	s := startSaga(t, env, saga.Options{StoreTimeout: 2 * time.Second, MaxBackoff: 500 * time.Millisecond})
	cust := env.RegisterCustomer(t, 10_000)
	before := place(t, env, cust, 1_000)
	eventually(t, converge, func() (bool, string) { return settled(t, env, []placed{before}) })

	store.Stop()
	time.Sleep(time.Second) // let the saga fail to resubscribe a few times
	store.Start()

	// Clients retry Unavailable with the same command_id: the first calls
	// may still meet the official client giving up on the old connection.
	req := &orderlyv1.PlaceOrderRequest{CommandId: "after-restart", CustomerId: cust, Lines: []*orderlyv1.OrderLine{{Sku: "A", Quantity: 1, UnitPrice: commandtest.USD(2_000)}}}
	var after placed
	eventually(t, converge, func() (bool, string) {
		resp, err := env.API.PlaceOrder(ctx(t), req)
		if status.Code(err) == codes.Unavailable {
			return false, err.Error()
		} else if err != nil {
			t.Fatalf("PlaceOrder after the restart: %v", err)
		}
		after = placed{id: resp.OrderId, customer: cust, total: 2_000}
		return true, ""
	})
	eventually(t, converge, func() (bool, string) { return settled(t, env, []placed{before, after}) })
	if st := env.Order(t, after.id).Status; st != domain.StatusApproved {
		t.Fatalf("order placed after the restart is %v", st)
	}
	if s.metric(t, "orderly_saga_resubscriptions_total") == 0 {
		t.Error("no resubscription counted")
	}
}
