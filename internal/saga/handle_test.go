package saga_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/saga"
)

// faulty fails the first `times` calls of one of the saga's commands with
// err, then passes calls through.
type faulty struct {
	saga.Commands
	command string
	err     error
	times   atomic.Int32
}

func (f *faulty) fail(command string) error {
	if command == f.command && f.times.Add(-1) >= 0 {
		return f.err
	}
	return nil
}

func (f *faulty) ReserveCredit(ctx context.Context, cmd domain.ReserveCredit, meta eventcodec.Metadata) (command.Result, error) {
	if err := f.fail("reserve"); err != nil {
		return command.Result{}, err
	}
	return f.Commands.ReserveCredit(ctx, cmd, meta)
}

func (f *faulty) ReleaseCredit(ctx context.Context, cmd domain.ReleaseCredit, meta eventcodec.Metadata) (command.Result, error) {
	if err := f.fail("release"); err != nil {
		return command.Result{}, err
	}
	return f.Commands.ReleaseCredit(ctx, cmd, meta)
}

func (f *faulty) ApproveOrder(ctx context.Context, orderID string, meta eventcodec.Metadata) (command.Result, error) {
	if err := f.fail("approve"); err != nil {
		return command.Result{}, err
	}
	return f.Commands.ApproveOrder(ctx, orderID, meta)
}

func (f *faulty) RejectOrder(ctx context.Context, orderID, reason string, meta eventcodec.Metadata) (command.Result, error) {
	if err := f.fail("reject"); err != nil {
		return command.Result{}, err
	}
	return f.Commands.RejectOrder(ctx, orderID, reason, meta)
}

// TestStepFailures forces a step to fail: a transient failure, even in the
// middle of a compensation, is retried in its lane until the flow settles;
// an unexpected refusal sets the event aside, holding the credit, until a
// restart replays it.
func TestStepFailures(t *testing.T) {
	t.Parallel()
	transient := errors.New("test: store unavailable")
	notFound := &domain.Error{Kind: domain.KindNotFound, Reason: domain.ReasonOrderNotFound, Message: "test: order not found"}
	for _, tc := range []struct {
		name     string
		command  string
		err      error
		times    int32
		setup    func(t *testing.T, env *commandtest.Env, cust string) placed
		want     domain.OrderStatus
		retried  bool // errors counted, no dead letter
		replayed bool // one dead letter, settled by a restart
	}{
		{"release fails mid-compensation", "release", transient, 2, cancelledWhileReserved, domain.StatusCancelled, true, false},
		{"reject fails", "reject", transient, 3, func(t *testing.T, env *commandtest.Env, cust string) placed {
			return place(t, env, cust, 50_000) // over the limit
		}, domain.StatusRejected, true, false},
		// Refused until the restart without the fault: the head start after
		// the reservation and the delivery of CreditReserved both meet it.
		{"approve refused unexpectedly", "approve", notFound, 1_000, func(t *testing.T, env *commandtest.Env, cust string) placed {
			return place(t, env, cust, 1_000)
		}, domain.StatusApproved, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := commandtest.Start(t, command.Options{})
			cust := env.RegisterCustomer(t, 10_000)
			o := tc.setup(t, env, cust)
			cmds := &faulty{Commands: env.Service, command: tc.command, err: tc.err}
			cmds.times.Store(tc.times)
			s := startSagaWith(t, env, cmds, saga.Options{})
			if tc.replayed {
				eventually(t, converge, func() (bool, string) {
					n := s.metric(t, "orderly_saga_dead_letters_total")
					return n == 1, fmt.Sprintf("%v dead letters", n)
				})
				if o := env.Order(t, o.id); o.Status != domain.StatusPending || !env.Customer(t, cust).HasReservation(o.ID) {
					t.Fatalf("order set aside is %v; want PENDING with its credit held", o.Status)
				}
				s.stop()
				s = startSaga(t, env, saga.Options{})
			}
			eventually(t, converge, func() (bool, string) { return settled(t, env, []placed{o}) })
			if st := env.Order(t, o.id).Status; st != tc.want {
				t.Fatalf("order is %v; want %v", st, tc.want)
			}
			if tc.retried {
				if n := s.metric(t, "orderly_saga_errors_total"); n < float64(tc.times) {
					t.Errorf("%v failures counted; want %d", n, tc.times)
				}
				if n := s.metric(t, "orderly_saga_dead_letters_total"); n != 0 {
					t.Errorf("%v dead letters; want none", n)
				}
			}
		})
	}
}

// cancelledWhileReserved is an order whose credit was reserved (as the
// saga would) and which was then cancelled: the saga must approve-fail and
// release.
func cancelledWhileReserved(t *testing.T, env *commandtest.Env, cust string) placed {
	o := place(t, env, cust, 2_000)
	if _, err := env.Service.ReserveCredit(ctx(t), domain.ReserveCredit{CustomerID: cust, OrderID: o.id, Amount: domain.Money{Currency: "USD", Minor: 2_000}},
		eventcodec.Metadata{CommandID: "reserved-elsewhere"}); err != nil {
		t.Fatal(err)
	}
	cancel(t, env, &o)
	return o
}

// calls records the order of the saga's command calls, by command and order.
type calls struct {
	saga.Commands
	mu  sync.Mutex
	log []string
}

func (c *calls) add(command, orderID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.log = append(c.log, command+" "+orderID)
}

func (c *calls) ReserveCredit(ctx context.Context, cmd domain.ReserveCredit, meta eventcodec.Metadata) (command.Result, error) {
	res, err := c.Commands.ReserveCredit(ctx, cmd, meta)
	c.add("reserve", cmd.OrderID)
	return res, err
}

func (c *calls) ApproveOrder(ctx context.Context, orderID string, meta eventcodec.Metadata) (command.Result, error) {
	c.add("approve", orderID)
	return c.Commands.ApproveOrder(ctx, orderID, meta)
}

func (c *calls) RejectOrder(ctx context.Context, orderID, reason string, meta eventcodec.Metadata) (command.Result, error) {
	c.add("reject", orderID)
	return c.Commands.RejectOrder(ctx, orderID, reason, meta)
}

// TestFollowUpAtOnce: the saga approves or rejects an order right after
// reserving its credit, in the same lane, rather than after the subscription
// brings CreditReserved back from behind every order placed meanwhile. The
// orders are all placed before the saga starts, so in the log every
// OrderPlaced comes before any credit decision: a saga that waited for
// delivery would reserve for all of them before deciding any. The later
// deliveries are counted done without issuing the steps again.
func TestFollowUpAtOnce(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	cust := env.RegisterCustomer(t, 10_000)
	var orders []placed
	for _, total := range []int64{1_000, 50_000, 2_000, 3_000} { // the second is over the limit
		orders = append(orders, place(t, env, cust, total))
	}
	c := &calls{Commands: env.Service}
	s := startSagaWith(t, env, c, saga.Options{Workers: 1})
	eventually(t, converge, func() (bool, string) { return settled(t, env, orders) })
	eventually(t, converge, func() (bool, string) {
		n := s.metric(t, "orderly_saga_events_handled_total")
		return n == float64(2*len(orders)), fmt.Sprintf("%v events handled; want %d", n, 2*len(orders))
	})
	c.mu.Lock()
	log := slices.Clone(c.log)
	c.mu.Unlock()
	for i, o := range orders {
		next := "approve " + o.id
		if o.total > 10_000 {
			next = "reject " + o.id
		}
		if want := []string{"reserve " + o.id, next}; len(log) < 2*i+2 || !slices.Equal(log[2*i:2*i+2], want) {
			t.Fatalf("calls %q; want order %d decided right after its reservation (%q)", log, i, want)
		}
	}
	if len(log) != 2*len(orders) {
		t.Errorf("calls %q; want no step issued again when its trigger is delivered after the head start", log)
	}
	if n := s.metric(t, "orderly_saga_follow_ups_total"); n != float64(len(orders)) {
		t.Errorf("%v follow-ups; want %d", n, len(orders))
	}
	if n, want := streamEvents(t, env, orders), 1+3*len(orders); n != want {
		t.Errorf("%d events in the orders' and customer's streams; want the registration, and each order placed, credit decided and order decided once (%d)", n, want)
	}
}

// panicky panics on every ApproveOrder.
type panicky struct{ saga.Commands }

func (panicky) ApproveOrder(context.Context, string, eventcodec.Metadata) (command.Result, error) {
	panic("test: approve panics")
}

// TestPanicIsOneDeadLetter: a step that panics is a bug that would recur on
// every retry; it becomes a dead letter, and the saga goes on with the next
// event of the same lane and starts again with the letter pending.
func TestPanicIsOneDeadLetter(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	cust := env.RegisterCustomer(t, 10_000)
	o := place(t, env, cust, 1_000)
	s := startSagaWith(t, env, panicky{env.Service}, saga.Options{Workers: 1})
	eventually(t, converge, func() (bool, string) {
		n := s.metric(t, "orderly_saga_dead_letters_total")
		return n == 1, fmt.Sprintf("%v dead letters", n)
	})
	over := place(t, env, cust, 50_000) // same lane; rejected, which does not approve
	eventually(t, converge, func() (bool, string) {
		st := env.Order(t, over.id).Status
		return st == domain.StatusRejected, fmt.Sprintf("the next order is %v", st)
	})
	s.stop()
	startSaga(t, env, saga.Options{}) // the fixed build replays the letter
	eventually(t, converge, func() (bool, string) { return settled(t, env, []placed{o, over}) })
}

// TestStartNotBlockedByALetter: a dead letter whose replay fails for a
// reason a retry could fix (here the store call keeps failing) is left for
// the next start, and so is an unreadable record in the dead-letter stream;
// neither keeps the saga from deciding other orders.
func TestStartNotBlockedByALetter(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	cust := env.RegisterCustomer(t, 10_000)
	o := place(t, env, cust, 1_000)
	s := startSagaWith(t, env, panicky{env.Service}, saga.Options{})
	eventually(t, converge, func() (bool, string) {
		n := s.metric(t, "orderly_saga_dead_letters_total")
		return n == 1, fmt.Sprintf("%v dead letters", n)
	})
	s.stop()
	appendRaw(t, env, "saga-credit-dead-letters", saga.DeadLetterType, 1, `{"event_id":`)
	down := &faulty{Commands: env.Service, command: "approve", err: errors.New("test: store unavailable")}
	down.times.Store(1 << 30)
	s = startSagaWith(t, env, down, saga.Options{})
	other := env.RegisterCustomer(t, 10_000)
	next := place(t, env, other, 50_000) // rejected: needs no approve
	eventually(t, converge, func() (bool, string) {
		st := env.Order(t, next.id).Status
		return st == domain.StatusRejected, fmt.Sprintf("another customer's order is %v", st)
	})
	if u := s.metric(t, "orderly_saga_dead_letters_unresolved"); u != 1 {
		t.Errorf("%v unresolved dead letters; want the one left for the next start", u)
	}
	if st := env.Order(t, o.id).Status; st != domain.StatusPending {
		t.Errorf("the set-aside order is %v; want PENDING until a replay succeeds", st)
	}
}
