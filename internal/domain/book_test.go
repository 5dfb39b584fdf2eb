package domain_test

import (
	"errors"
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
		// deferred is restored from a seal's head alone (DeferCredits) and
		// folds on from there, sealing as sealing does; its older lines are
		// looked up in the seals made before, as a lazy load does.
		var (
			seals      []domain.CreditSeal
			deferred   *domain.Customer
			deferredAt int // how many seals deferred left to lookups
		)
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
			if deferred != nil {
				deferred.Apply(ev)
			}
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
				seals = append(seals, seal)
				if deferred != nil {
					deferred.SealCredits()
				}
				if deferred == nil || rng.IntN(4) == 0 {
					deferred, deferredAt = domain.NewCustomer(custID), len(seals)
					deferred.Restore(sealing.Head())
					deferred.DeferCredits()
				}
			}
		}
		for _, ev := range tail {
			restored.Apply(ev)
		}
		orders = append(orders, "never-decided", "44444444-4444-5444-8444-444444444444")
		for i, seal := range seals {
			fps := map[uint32]bool{}
			for _, fp := range seal.Fingerprints() {
				fps[fp] = true
			}
			for _, o := range orders {
				if _, ok := seal.Line(o); ok && !fps[domain.CreditFingerprint(o)] {
					t.Fatalf("round %d: seal %d holds order %s, but not its fingerprint", round, i, o)
				}
			}
		}
		all := map[string]*domain.Customer{"sealing": sealing, "restored": restored}
		if deferred != nil {
			resolveAll(t, deferred, seals[:deferredAt], orders)
			all["deferred"] = deferred
		}
		for name, c := range all {
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

// resolveAll resolves every order's line in c, a deferred customer, from
// seals (oldest first) as a lazy load looks lines up: newest first, down to
// the newest that emptied the book. Before that, a decision on a line is
// refused.
func resolveAll(t *testing.T, c *domain.Customer, seals []domain.CreditSeal, orders []string) {
	t.Helper()
	for _, o := range orders {
		if c.CreditResolved(o) {
			continue
		}
		if _, err := c.ReserveCredit(domain.ReserveCredit{CustomerID: custID, OrderID: o, Amount: usd(1)}); !errors.Is(err, domain.ErrCreditUnresolved) {
			t.Fatalf("reservation of order %s, not resolved: %v; want %v", o, err, domain.ErrCreditUnresolved)
		}
		if _, err := c.ReleaseCredit(domain.ReleaseCredit{CustomerID: custID, OrderID: o}); !errors.Is(err, domain.ErrCreditUnresolved) {
			t.Fatalf("release of order %s, not resolved: %v; want %v", o, err, domain.ErrCreditUnresolved)
		}
		found := false
		for i := len(seals) - 1; i >= 0 && !found; i-- {
			var l domain.Credit
			if l, found = seals[i].Line(o); found {
				c.ResolveCredit(o, l, true)
			}
			if seals[i].Reset {
				break
			}
		}
		if !found {
			c.ResolveCredit(o, domain.Credit{}, false)
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
