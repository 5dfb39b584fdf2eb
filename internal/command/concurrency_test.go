package command_test

import (
	"fmt"
	"sync"
	"testing"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
)

const racers = 50

// TestRacingReservations: 50 goroutines reserve credit for 50 orders on one
// customer at once. The result must be what reserving them one after the
// other gives: every order decided exactly once, and exactly as many
// reservations as the limit holds — no lost update, no overdraft.
func TestRacingReservations(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{}, estest.OnDisk())
	const limit, amount = 10_000, 700 // room for 14 orders

	reserveAll := func(customerID string, parallel bool) {
		var wg sync.WaitGroup
		errs := make(chan error, racers)
		for i := range racers {
			reserve := func() {
				_, err := env.Service.ReserveCredit(ctx(t), domain.ReserveCredit{
					CustomerID: customerID,
					OrderID:    fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
					Amount:     domain.Money{Currency: "USD", Minor: amount},
				}, eventcodec.Metadata{CommandID: fmt.Sprintf("reserve-%d", i)})
				errs <- err
			}
			if parallel {
				wg.Go(reserve)
			} else {
				reserve()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("reserve: %v", err)
			}
		}
	}
	serial, racing := env.RegisterCustomer(t, limit), env.RegisterCustomer(t, limit)
	reserveAll(serial, false)
	reserveAll(racing, true)

	want, got := outcome(env.History(t, eventlog.CustomerStream(serial))), outcome(env.History(t, eventlog.CustomerStream(racing)))
	if got != want {
		t.Fatalf("racing run %+v; serial run %+v", got, want)
	}
	if want.reserved != limit/amount || want.exceeded != racers-limit/amount || want.held != limit/amount*amount {
		t.Fatalf("serial run %+v does not match the limit", want)
	}
}

type creditOutcome struct {
	reserved, exceeded int
	held               int64
}

func outcome(history []eventlog.Recorded) creditOutcome {
	var o creditOutcome
	c := domain.NewCustomer("")
	for _, r := range history {
		c.Apply(r.Event)
		switch r.Event.(type) {
		case domain.CreditReserved:
			o.reserved++
		case domain.CreditLimitExceeded:
			o.exceeded++
		}
	}
	o.held = c.Reserved.Minor
	return o
}

// TestRacingLimitChanges: 50 clients change one customer's limit at once over
// gRPC. Every change is recorded, each on top of the one before it (its
// previous_limit is the limit the prior event set), as in a serial run.
func TestRacingLimitChanges(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{}, estest.OnDisk())
	cust := env.RegisterCustomer(t, 1)

	var wg sync.WaitGroup
	errs := make(chan error, racers)
	for i := range racers {
		wg.Go(func() {
			_, err := env.API.ChangeCreditLimit(ctx(t), &orderlyv1.ChangeCreditLimitRequest{CustomerId: cust, CreditLimit: usd(int64(1_000 + i))})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("change limit: %v", err)
		}
	}

	history := env.History(t, eventlog.CustomerStream(cust))
	if len(history) != racers+1 {
		t.Fatalf("%d events; want registration + %d changes", len(history), racers)
	}
	prev := int64(1)
	seen := map[int64]bool{}
	for _, r := range history[1:] {
		e := r.Event.(domain.CreditLimitChanged)
		if e.PreviousLimit.Minor != prev {
			t.Fatalf("change at revision %d says previous limit %d; the limit was %d (lost update)", r.Revision, e.PreviousLimit.Minor, prev)
		}
		prev = e.CreditLimit.Minor
		seen[prev] = true
	}
	if len(seen) != racers {
		t.Fatalf("%d distinct limits recorded; want %d", len(seen), racers)
	}
	if got := env.Customer(t, cust).CreditLimit.Minor; got != prev {
		t.Fatalf("final limit %d; last change set %d", got, prev)
	}
}
