package saga_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/saga"
)

// slowed holds every reservation of one customer until release is closed,
// as a saga with more work than cores would: the step runs, it does not
// fail.
type slowed struct {
	saga.Commands
	customer string
	release  chan struct{}
}

func (s *slowed) ReserveCredit(ctx context.Context, cmd domain.ReserveCredit, meta eventcodec.Metadata) (command.Result, error) {
	if cmd.CustomerID == s.customer {
		select {
		case <-s.release:
		case <-ctx.Done():
			return command.Result{}, ctx.Err()
		}
	}
	return s.Commands.ReserveCredit(ctx, cmd, meta)
}

// pacedSaga starts a saga pacing env's orders, whose reservations for a
// customer of its own wait for the returned channel to close, and has it
// fall behind by more than opts.PaceLag.
func pacedSaga(t *testing.T, env *commandtest.Env, opts saga.Options) (*running, chan struct{}) {
	t.Helper()
	slow := &slowed{Commands: env.Service, customer: env.RegisterCustomer(t, 100_000), release: make(chan struct{})}
	s := startSagaWith(t, env, slow, opts)
	env.Service.PaceOrders(s)
	eventually(t, converge, func() (bool, string) { return s.Status().CaughtUp, "the saga has not caught up" })
	place(t, env, slow.customer, 1_000) // not behind yet: goes ahead
	eventually(t, converge, func() (bool, string) {
		lag := s.Status().LagSeconds
		return lag > 2*opts.PaceLag.Seconds(), fmt.Sprintf("saga %.3fs behind", lag)
	})
	return s, slow.release
}

// placeAsync places an order on ctx and reports the outcome on the channel.
func placeAsync(ctx context.Context, env *commandtest.Env, customer string) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := env.API.PlaceOrder(ctx, &orderlyv1.PlaceOrderRequest{
			CustomerId: customer,
			Lines:      []*orderlyv1.OrderLine{{Sku: "SKU-1", Quantity: 1, UnitPrice: commandtest.USD(500)}},
		})
		done <- err
	}()
	return done
}

// TestPaceHoldsOrdersWhileBehind: an order placed while the saga is further
// behind than PaceLag waits, having written nothing, until the saga is back
// within it; then it goes ahead at once (woken, not timed out) and is
// decided.
func TestPaceHoldsOrdersWhileBehind(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	other := env.RegisterCustomer(t, 100_000)
	s, release := pacedSaga(t, env, saga.Options{PaceLag: 100 * time.Millisecond, PaceWait: time.Minute})
	head := env.Head(t)

	// No deadline: a wait cut short by half of one would hide a lost
	// wake-up.
	call, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := placeAsync(call, env, other)
	eventually(t, converge, func() (bool, string) {
		n := s.metric(t, "orderly_saga_paced_orders_total")
		return n == 1, fmt.Sprintf("%v orders paced; want the one placed while behind", n)
	})
	select {
	case err := <-done:
		t.Fatalf("PlaceOrder returned (%v) while the saga was behind", err)
	default:
	}
	if n := s.metric(t, "orderly_saga_paced_orders_waiting"); n != 1 {
		t.Errorf("%v orders waiting; want 1", n)
	}
	if lag := s.metric(t, "orderly_saga_pace_lag_seconds"); lag <= 0.1 {
		t.Errorf("pace lag %vs while orders are held back for a lag over 0.1s", lag)
	}
	if h := env.Head(t); h != head {
		t.Fatalf("the store's head moved from %d to %d while the order was held back", head, h)
	}

	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("PlaceOrder after the saga caught up: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("PlaceOrder still held back 30s after the saga caught up: waiters are not woken")
	}
	if n := s.metric(t, "orderly_saga_paced_orders_timed_out_total"); n != 0 {
		t.Errorf("%v paced orders timed out; want the order woken when the saga caught up", n)
	}
	eventually(t, converge, func() (bool, string) {
		return s.Status().CaughtUp, "the saga has not decided the order released"
	})
}

// TestPaceWaitBounds: an order is held back at most PaceWait, and at most
// half of what is left of its deadline, then goes ahead with the saga still
// behind; one whose caller gives up while it waits is not placed; and no
// more than PaceMax are held at once.
func TestPaceWaitBounds(t *testing.T) {
	t.Parallel()
	t.Run("pace wait", func(t *testing.T) {
		t.Parallel()
		env := commandtest.Start(t, command.Options{})
		other := env.RegisterCustomer(t, 100_000)
		s, _ := pacedSaga(t, env, saga.Options{PaceLag: 100 * time.Millisecond, PaceWait: 200 * time.Millisecond})
		if err := <-placeAsync(ctx(t), env, other); err != nil {
			t.Fatalf("PlaceOrder held back past PaceWait: %v", err)
		}
		if n := s.metric(t, "orderly_saga_paced_orders_timed_out_total"); n != 1 {
			t.Errorf("%v paced orders timed out; want 1", n)
		}
	})
	t.Run("pace max", func(t *testing.T) {
		t.Parallel()
		env := commandtest.Start(t, command.Options{})
		other := env.RegisterCustomer(t, 100_000)
		s, _ := pacedSaga(t, env, saga.Options{PaceLag: 100 * time.Millisecond, PaceWait: time.Hour, PaceMax: 1})
		held := placeAsync(ctx(t), env, other)
		eventually(t, converge, func() (bool, string) {
			n := s.metric(t, "orderly_saga_paced_orders_waiting")
			return n == 1, fmt.Sprintf("%v orders waiting; want 1", n)
		})
		// No deadline: held, it would wait the hour of PaceWait.
		call, cancel := context.WithCancel(context.Background())
		defer cancel()
		select {
		case err := <-placeAsync(call, env, other):
			if err != nil {
				t.Fatalf("PlaceOrder past PaceMax: %v", err)
			}
		case <-time.After(converge):
			t.Fatalf("PlaceOrder past PaceMax still held after %v", converge)
		}
		if n := s.metric(t, "orderly_saga_paced_orders_timed_out_total"); n != 1 {
			t.Errorf("%v paced orders went ahead; want the one past PaceMax", n)
		}
		select {
		case err := <-held:
			t.Errorf("the order held first went ahead too (%v)", err)
		default:
		}
	})
	t.Run("deadline", func(t *testing.T) {
		t.Parallel()
		env := commandtest.Start(t, command.Options{})
		other := env.RegisterCustomer(t, 100_000)
		s, _ := pacedSaga(t, env, saga.Options{PaceLag: 100 * time.Millisecond, PaceWait: time.Hour})
		head := env.Head(t)
		call, cancel := context.WithCancel(ctx(t))
		done := placeAsync(call, env, other)
		eventually(t, converge, func() (bool, string) {
			n := s.metric(t, "orderly_saga_paced_orders_total")
			return n == 1, fmt.Sprintf("%v orders paced; want 1", n)
		})
		cancel()
		if err := <-done; status.Code(err) != codes.Canceled {
			t.Fatalf("PlaceOrder cancelled while held back: %v; want Canceled", err)
		}
		eventually(t, converge, func() (bool, string) {
			n := s.metric(t, "orderly_saga_paced_orders_waiting")
			return n == 0, fmt.Sprintf("%v orders still held back after their caller gave up", n)
		})
		if h := env.Head(t); h != head {
			t.Errorf("the store's head moved from %d to %d: the cancelled order was placed", head, h)
		}

		call, stop := context.WithTimeout(ctx(t), 2*time.Second)
		defer stop()
		if err := <-placeAsync(call, env, other); err != nil {
			t.Fatalf("PlaceOrder with a 2s deadline, held back by a saga behind: %v; want it placed after half its deadline", err)
		}
		if n := s.metric(t, "orderly_saga_paced_orders_timed_out_total"); n != 1 {
			t.Errorf("%v paced orders timed out; want 1", n)
		}
	})
}

// TestPaceNotWhenStuckOrPaused: a lane retrying a failing step leaves the
// saga's lag growing, but that is one customer stuck, not a saga with more
// work than it can do, and orders are not held back for it; nor are they
// while the saga is paused.
func TestPaceNotWhenStuckOrPaused(t *testing.T) {
	t.Parallel()
	t.Run("stuck", func(t *testing.T) {
		t.Parallel()
		env := commandtest.Start(t, command.Options{})
		const workers = 8
		stuck := env.RegisterCustomer(t, 100_000)
		other := inAnotherLane(t, env, stuck, workers, 100_000)
		s := startSagaWith(t, env, &failing{Commands: env.Service, customer: stuck},
			saga.Options{Workers: workers, PaceLag: 100 * time.Millisecond, PaceWait: time.Minute, MaxBackoff: 50 * time.Millisecond})
		env.Service.PaceOrders(s)
		eventually(t, converge, func() (bool, string) { return s.Status().CaughtUp, "the saga has not caught up" })
		place(t, env, stuck, 1_000)
		eventually(t, converge, func() (bool, string) {
			lag := s.Status().LagSeconds
			return lag > 0.2, fmt.Sprintf("saga %.3fs behind", lag)
		})
		o := place(t, env, other, 1_000)
		if n := s.metric(t, "orderly_saga_paced_orders_total"); n != 0 {
			t.Errorf("%v orders paced behind a stuck lane; want none", n)
		}
		if lag := s.metric(t, "orderly_saga_pace_lag_seconds"); lag >= 0.1 {
			t.Errorf("pace lag %vs with only a stuck lane behind; want it under the pace lag, 0.1s", lag)
		}
		eventually(t, converge, func() (bool, string) { return settled(t, env, []placed{o}) })
	})
	t.Run("paused", func(t *testing.T) {
		t.Parallel()
		env := commandtest.Start(t, command.Options{})
		other := env.RegisterCustomer(t, 100_000)
		s, _ := pacedSaga(t, env, saga.Options{PaceLag: 100 * time.Millisecond, PaceWait: time.Minute})
		if _, err := s.Pause(ctx(t)); err != nil {
			t.Fatal(err)
		}
		place(t, env, other, 1_000)
		if n := s.metric(t, "orderly_saga_paced_orders_total"); n != 0 {
			t.Errorf("%v orders paced while the saga is paused; want none", n)
		}
	})
}

// recovering fails the first reservation of one order once, as a store
// briefly unreachable would, and holds every other reservation of its
// customer until release is closed.
type recovering struct {
	saga.Commands
	customer, first string
	failed          atomic.Bool
	release         chan struct{}
}

func (r *recovering) ReserveCredit(ctx context.Context, cmd domain.ReserveCredit, meta eventcodec.Metadata) (command.Result, error) {
	switch {
	case cmd.CustomerID != r.customer:
	case cmd.OrderID == r.first:
		if !r.failed.Swap(true) {
			return command.Result{}, errors.New("test: the store is briefly unreachable")
		}
	default:
		select {
		case <-r.release:
		case <-ctx.Done():
			return command.Result{}, ctx.Err()
		}
	}
	return r.Commands.ReserveCredit(ctx, cmd, meta)
}

// TestPaceCountsARecoveredLane: a lane that retried a failed step and got
// past it counts again; a later slow step in it holds orders back.
func TestPaceCountsARecoveredLane(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	slow, other := env.RegisterCustomer(t, 100_000), env.RegisterCustomer(t, 100_000)
	r := &recovering{Commands: env.Service, customer: slow, first: env.PlaceOrder(t, slow, 1_000), release: make(chan struct{})}
	defer close(r.release)
	s := startSagaWith(t, env, r, saga.Options{PaceLag: 100 * time.Millisecond, PaceWait: time.Minute, MaxBackoff: 50 * time.Millisecond})
	env.Service.PaceOrders(s)
	eventually(t, converge, func() (bool, string) {
		return s.Status().CaughtUp && r.failed.Load(), "the saga has not decided the order whose reservation failed once"
	})
	place(t, env, slow, 1_000) // held in its step: the saga falls behind
	eventually(t, converge, func() (bool, string) {
		lag := s.Status().LagSeconds
		return lag > 0.2, fmt.Sprintf("saga %.3fs behind", lag)
	})
	call, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := placeAsync(call, env, other)
	eventually(t, converge, func() (bool, string) {
		n := s.metric(t, "orderly_saga_paced_orders_total")
		return n == 1, fmt.Sprintf("%v orders paced behind a slow step in a lane that once failed; want 1", n)
	})
	r.release <- struct{}{} // not closed: the deferred close ends the test
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestPaceNotWhileCatchingUp: a saga working off what was written before it
// started is behind by design, and holds no order back until it has caught
// up once.
func TestPaceNotWhileCatchingUp(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	slow := &slowed{Commands: env.Service, customer: env.RegisterCustomer(t, 100_000), release: make(chan struct{})}
	defer close(slow.release)
	other := env.RegisterCustomer(t, 100_000)
	place(t, env, slow.customer, 1_000)
	place(t, env, other, 1_000)
	// One event in flight at a time: the first is held in its step, so the
	// saga never reaches the end of the log.
	s := startSagaWith(t, env, slow, saga.Options{PaceLag: 100 * time.Millisecond, PaceWait: time.Minute, MaxInFlight: 1})
	env.Service.PaceOrders(s)
	eventually(t, converge, func() (bool, string) {
		lag := s.Status().LagSeconds
		return lag > 0.2, fmt.Sprintf("saga %.3fs behind", lag)
	})
	if s.Status().CaughtUp {
		t.Fatal("the saga caught up with one event held in its step")
	}
	place(t, env, other, 1_000)
	if n := s.metric(t, "orderly_saga_paced_orders_total"); n != 0 {
		t.Errorf("%v orders paced while the saga catches up after its start; want none", n)
	}
}

// TestPaceOptionsRefused: a negative pace lag, wait or maximum is a
// mistake, refused rather than read as "off" or as the default.
func TestPaceOptionsRefused(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	for _, opts := range []saga.Options{{PaceLag: -time.Second}, {PaceWait: -time.Second}, {PaceMax: -1}} {
		opts.Leases = leasesFor(t, env)
		if _, err := saga.New(env.Conn, env.Service, slog.New(slog.DiscardHandler), opts); err == nil {
			t.Errorf("saga.New(%+v) accepted", opts)
		}
	}
}
