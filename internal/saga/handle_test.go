package saga_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// gated records the saga's decisions (approve, reject) by order, and holds
// each reservation back until the order placed before it has had its
// decision issued, or until a deadline: a saga that decides only when
// CreditReserved comes back from the log would need every reservation of
// the lane first, and so meets the deadline.
type gated struct {
	saga.Commands
	order []string // order IDs in the order placed

	mu        sync.Mutex
	decisions map[string]int
	decided   chan string
	late      []string
}

func (g *gated) decide(orderID string) {
	g.mu.Lock()
	g.decisions[orderID]++
	g.mu.Unlock()
	g.decided <- orderID
}

func (g *gated) ReserveCredit(ctx context.Context, cmd domain.ReserveCredit, meta eventcodec.Metadata) (command.Result, error) {
	if i := slices.Index(g.order, cmd.OrderID); i > 0 {
		g.mu.Lock()
		issued := g.decisions[g.order[i-1]] > 0
		g.mu.Unlock()
		for wait := time.After(5 * time.Second); !issued; {
			select {
			case id := <-g.decided:
				issued = id == g.order[i-1]
			case <-wait:
				g.mu.Lock()
				g.late = append(g.late, cmd.OrderID)
				g.mu.Unlock()
				issued = true
			}
		}
	}
	return g.Commands.ReserveCredit(ctx, cmd, meta)
}

func (g *gated) ApproveOrder(ctx context.Context, orderID string, meta eventcodec.Metadata) (command.Result, error) {
	g.decide(orderID)
	return g.Commands.ApproveOrder(ctx, orderID, meta)
}

func (g *gated) RejectOrder(ctx context.Context, orderID, reason string, meta eventcodec.Metadata) (command.Result, error) {
	g.decide(orderID)
	return g.Commands.RejectOrder(ctx, orderID, reason, meta)
}

// TestFollowUpAtOnce: the saga approves or rejects an order right after
// reserving its credit, rather than after the subscription brings
// CreditReserved back from behind every order placed meanwhile. The orders
// are all placed before the saga starts, in one lane, so in the log every
// OrderPlaced comes before any credit decision. Deliveries of decisions
// taken ahead are counted done without issuing their step again.
func TestFollowUpAtOnce(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	cust := env.RegisterCustomer(t, 10_000)
	var orders []placed
	g := &gated{Commands: env.Service, decisions: map[string]int{}, decided: make(chan string, 64)}
	for _, total := range []int64{1_000, 50_000, 2_000, 3_000, 500} { // the second is over the limit
		o := place(t, env, cust, total)
		orders, g.order = append(orders, o), append(g.order, o.id)
	}
	s := startSagaWith(t, env, g, saga.Options{Workers: 1})
	eventually(t, converge, func() (bool, string) { return settled(t, env, orders) })
	eventually(t, converge, func() (bool, string) {
		n := s.metric(t, "orderly_saga_events_handled_total")
		return n == float64(2*len(orders)), fmt.Sprintf("%v events handled; want %d", n, 2*len(orders))
	})
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.late) > 0 {
		t.Fatalf("reservations of %q waited for the decision of the order before them: decisions are not taken right after their reservation", g.late)
	}
	calls := 0
	for _, n := range g.decisions {
		calls += n
	}
	if calls >= 2*len(orders) {
		t.Errorf("%d decisions issued for %d orders; want the deliveries of decisions taken ahead counted done, not issued again", calls, len(orders))
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
