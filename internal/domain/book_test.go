package domain_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/orderly/orderly/internal/domain"
)

// TestSealedBookEqualsPlainFold: a customer that seals its credit book at
// random points (and compacts its runs at random), and one restored from
// those seals and then folded on, answer every order's line as the customer
// folded from the first event does. The histories hold what the fast path
// does not: order IDs that are no UUIDs, amounts in another currency, and
// second registrations (which empty the book), with re-reservations of
// released orders.
func TestSealedBookEqualsPlainFold(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 14))
	for round := range 200 {
		var orders []string
		newOrder := func() string {
			var o string
			switch rng.IntN(10) {
			case 0:
				o = fmt.Sprintf("legacy-%d", rng.IntN(20))
			case 1, 2, 3:
				if len(orders) > 0 { // again, whatever it was
					return orders[rng.IntN(len(orders))]
				}
				fallthrough
			default:
				o = fmt.Sprintf("%08x-%04x-5%03x-8%03x-%012x", rng.Uint32(), rng.IntN(1<<16), rng.IntN(1<<12), rng.IntN(1<<12), rng.Int64N(1<<48))
			}
			orders = append(orders, o)
			return o
		}
		amount := func() domain.Money {
			if rng.IntN(15) == 0 {
				return domain.Money{Currency: "EUR", Minor: rng.Int64N(100)}
			}
			return usd(rng.Int64N(100))
		}
		plain, sealing := domain.NewCustomer(custID), domain.NewCustomer(custID)
		restored := domain.NewCustomer(custID)
		var tail []domain.Event // folded by sealing since its last seal
		for range rng.IntN(600) {
			var ev domain.Event
			switch k := rng.IntN(40); {
			case k == 0 || len(tail) == 0 && !plain.Registered:
				cur := "USD"
				if rng.IntN(3) == 0 {
					cur = "EUR"
				}
				ev = domain.CustomerRegistered{CustomerID: custID, Name: "Ada", Email: "ada@example.com", CreditLimit: domain.Money{Currency: cur, Minor: 1_000_000}}
			case k < 15:
				ev = domain.CreditReserved{CustomerID: custID, OrderID: newOrder(), Amount: amount()}
			case k < 25:
				ev = domain.CreditLimitExceeded{CustomerID: custID, OrderID: newOrder(), Amount: amount()}
			default:
				ev = domain.CreditReleased{CustomerID: custID, OrderID: newOrder(), Amount: amount()}
			}
			plain.Apply(ev)
			sealing.Apply(ev)
			tail = append(tail, ev)
			switch rng.IntN(25) {
			case 0:
				if r := sealing.CreditRuns(); r != nil {
					r.Compact()
				}
			case 1, 2:
				seal := sealing.SealCredits()
				restored.Restore(sealing.Head())
				if err := restored.RestoreCredits(seal); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				tail = tail[:0]
			}
		}
		for _, ev := range tail {
			restored.Apply(ev)
		}
		orders = append(orders, "never-decided", "44444444-4444-5444-8444-444444444444")
		for name, c := range map[string]*domain.Customer{"sealing": sealing, "restored": restored} {
			if c.Head() != plain.Head() {
				t.Fatalf("round %d, %s: head %+v; folded %+v", round, name, c.Head(), plain.Head())
			}
			for _, o := range orders {
				got, gotOK := c.CreditLine(o)
				want, wantOK := plain.CreditLine(o)
				if got != want || gotOK != wantOK {
					t.Fatalf("round %d, %s: order %s: line %+v, %v; folded %+v, %v", round, name, o, got, gotOK, want, wantOK)
				}
			}
		}
	}
}

// TestRestoreRefusesAMalformedSeal: a run that cannot have come from a seal
// (cut short, or out of order) is refused, not trusted.
func TestRestoreRefusesAMalformedSeal(t *testing.T) {
	t.Parallel()
	c := customerWith(registered, reserved, domain.CreditReserved{CustomerID: custID, OrderID: order2, Amount: usd(1)})
	good := c.SealCredits()
	for name, run := range map[string]string{"cut short": good.Run[:len(good.Run)-1], "out of order": good.Run[len(good.Run)/2:] + good.Run[:len(good.Run)/2]} {
		r := domain.NewCustomer(custID)
		r.Restore(c.Head())
		if err := r.RestoreCredits(domain.CreditSeal{Reset: true, Run: run}); err == nil {
			t.Errorf("%s: restored", name)
		}
	}
}
