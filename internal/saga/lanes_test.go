package saga_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/saga"
)

// TestManyCustomersInParallel: orders of many customers, placed and some
// cancelled by concurrent clients while few lanes serve many customers, are
// all decided with each customer's credit exact, and each customer's credit
// decisions follow the order in which its orders were placed in the log (its
// steps ran in log order, in one lane).
func TestManyCustomersInParallel(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	s := startSaga(t, env, saga.Options{Workers: 8, LaneQueue: 4, MaxInFlight: 16})
	customers := make([]string, 24)
	for i := range customers {
		customers[i] = env.RegisterCustomer(t, int64(5_000+i*500))
	}

	const clients, perClient = 12, 25
	var (
		mu     sync.Mutex
		orders []placed
		wg     sync.WaitGroup
	)
	for c := range clients {
		wg.Go(func() {
			for i := range perClient {
				o := place(t, env, customers[(c*perClient+i)%len(customers)], int64(300+(c*7+i*131)%1_700))
				if i%6 == 3 {
					cancel(t, env, &o)
				}
				mu.Lock()
				orders = append(orders, o)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	eventually(t, converge, func() (bool, string) { return settled(t, env, orders) })
	inLogOrder(t, env, orders)
	if got := s.metric(t, "orderly_saga_dead_letters_total"); got != 0 {
		t.Errorf("%v dead letters; want none", got)
	}
}

// inLogOrder checks that each customer's credit decisions, in its stream,
// were caused by OrderPlaced events in log order: the saga handled one
// customer's orders in the order they were placed.
func inLogOrder(t *testing.T, env *commandtest.Env, orders []placed) {
	t.Helper()
	placedAt := map[string]uint64{} // OrderPlaced event ID → position
	for _, o := range orders {
		first := env.History(t, eventlog.OrderStream(o.id))[0]
		placedAt[first.EventID.String()] = first.Position
	}
	seen := map[string]bool{}
	for _, o := range orders {
		if seen[o.customer] {
			continue
		}
		seen[o.customer] = true
		var last uint64
		for _, r := range env.History(t, eventlog.CustomerStream(o.customer)) {
			switch r.Event.(type) {
			case domain.CreditReserved, domain.CreditLimitExceeded:
				at, ok := placedAt[r.Meta.CausationID]
				if !ok {
					t.Fatalf("customer %s: %s@%d caused by %q, not an OrderPlaced of the test", o.customer, r.Type, r.Revision, r.Meta.CausationID)
				}
				if at < last {
					t.Fatalf("customer %s: %s@%d decides an order placed at %d after one placed at %d", o.customer, r.Type, r.Revision, at, last)
				}
				last = at
			}
		}
	}
}

// failing fails every reservation of one customer, as a store that cannot
// reach that customer's stream would.
type failing struct {
	saga.Commands
	customer string
}

func (f *failing) ReserveCredit(ctx context.Context, cmd domain.ReserveCredit, meta eventcodec.Metadata) (command.Result, error) {
	if cmd.CustomerID == f.customer {
		return command.Result{}, errors.New("test: this customer's stream is unavailable")
	}
	return f.Commands.ReserveCredit(ctx, cmd, meta)
}

// TestCheckpointStaysBeforeUnfinished: one customer's reservation keeps
// failing; its lane retries it while other customers' orders are decided,
// and neither the watermark nor the saved checkpoint passes the stuck event.
// After a restart, it is decided.
func TestCheckpointStaysBeforeUnfinished(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	const workers = 8
	other := env.RegisterCustomer(t, 100_000)
	stuck := inAnotherLane(t, env, other, workers, 10_000)
	cmds := &failing{Commands: env.Service, customer: stuck}
	opts := saga.Options{Workers: workers, CheckpointEvery: 1, CheckpointInterval: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	first := startSagaWith(t, env, cmds, opts)

	before := place(t, env, other, 1_000)
	eventually(t, converge, func() (bool, string) { return settled(t, env, []placed{before}) })
	reservedBefore := env.History(t, eventlog.CustomerStream(other))
	floor := reservedBefore[len(reservedBefore)-1].Position // its CreditReserved

	blocked := place(t, env, stuck, 1_000)
	blockedAt := env.History(t, eventlog.OrderStream(blocked.id))[0].Position
	var later []placed
	for i := range 10 {
		o := place(t, env, other, 1_000)
		if i%3 == 0 {
			cancel(t, env, &o)
		}
		later = append(later, o)
	}
	eventually(t, converge, func() (bool, string) { return settled(t, env, append([]placed{before}, later...)) })
	eventually(t, converge, func() (bool, string) {
		n := first.metric(t, "orderly_saga_errors_total")
		return n >= 3, fmt.Sprintf("the stuck reservation was tried %v times", n)
	})
	// Every event but the stuck one is done; the saver has caught up.
	eventually(t, converge, func() (bool, string) {
		p, saved := first.Position(), savedCheckpoint(t, env)
		return p == saved && p >= floor, fmt.Sprintf("position %d, saved %d, floor %d", p, saved, floor)
	})
	if p := first.Position(); p >= blockedAt {
		t.Fatalf("watermark %d passed the unfinished OrderPlaced at %d", p, blockedAt)
	}
	if st := env.Order(t, blocked.id).Status; st != domain.StatusPending {
		t.Fatalf("stuck order is %v", st)
	}
	first.stop()
	if saved := savedCheckpoint(t, env); saved >= blockedAt {
		t.Fatalf("checkpoint saved on shutdown at %d, past the unfinished OrderPlaced at %d", saved, blockedAt)
	}

	startSaga(t, env, opts)
	all := append([]placed{before, blocked}, later...)
	eventually(t, converge, func() (bool, string) { return settled(t, env, all) })
	if st := env.Order(t, blocked.id).Status; st != domain.StatusApproved {
		t.Fatalf("stuck order is %v after the restart; want APPROVED", st)
	}
}
