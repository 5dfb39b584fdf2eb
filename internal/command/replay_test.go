package command

import (
	"testing"

	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventstore/estest"
)

// TestReplayOfTheLastCommand: a resend of the command that last changed an
// aggregate (the saga sends one whenever an event's delivery overtakes the
// step it started) is answered from the cached aggregate, reading nothing,
// with the answer a read of its event gives. A resend of an older command
// reads its event; a command ID reused by another request is refused
// either way.
func TestReplayOfTheLastCommand(t *testing.T) {
	connString := estest.Start(t)
	s := serviceOn(t, connString, Options{})
	ctx := testCtx(t)
	customer := uuid.NewString()
	if _, err := s.registerCustomer(ctx, domain.RegisterCustomer{CustomerID: customer, Name: "Ada", Email: "ada@example.com", CreditLimit: usd(1_000)},
		eventcodec.Metadata{CommandID: "register"}); err != nil {
		t.Fatal(err)
	}
	order1, order2 := uuid.NewString(), uuid.NewString()
	reserve := func(s *Service, commandID, order string) (Result, error) {
		return s.ReserveCredit(ctx, domain.ReserveCredit{CustomerID: customer, OrderID: order, Amount: usd(100)}, eventcodec.Metadata{CommandID: commandID})
	}
	replays := func(s *Service) (cache, store float64) {
		return value(s.metrics.replays.WithLabelValues("cache")), value(s.metrics.replays.WithLabelValues("store"))
	}
	same := func(what string, got Result, err error, want Result, s *Service, cache, store float64) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got.Position != want.Position || got.Revision != want.Revision || len(got.Appended) != 0 {
			t.Errorf("%s = %+v, want %+v with nothing appended", what, got, want)
		}
		if c, st := replays(s); c != cache || st != store {
			t.Errorf("after %s: %v replays confirmed by the cache and %v by the store, want %v and %v", what, c, st, cache, store)
		}
	}

	first, err := reserve(s, "reserve-1", order1)
	if err != nil {
		t.Fatal(err)
	}
	again, err := reserve(s, "reserve-1", order1)
	same("the last command resent", again, err, first, s, 1, 0)

	second, err := reserve(s, "reserve-2", order2)
	if err != nil {
		t.Fatal(err)
	}
	again, err = reserve(s, "reserve-1", order1)
	same("an older command resent", again, err, first, s, 1, 1)

	// Another replica folds the customer from the store: its answer from
	// the event it read matches the one kept from the append.
	replica := serviceOn(t, connString, Options{})
	again, err = reserve(replica, "reserve-2", order2)
	same("the last command resent to a replica", again, err, second, replica, 1, 0)
	again, err = reserve(s, "reserve-2", order2)
	same("the last command resent again", again, err, second, s, 2, 1)

	// Another order under the last command's ID: refused, not answered.
	if _, err := reserve(s, "reserve-2", uuid.NewString()); domain.ReasonOf(err) != domain.ReasonCommandIDReused {
		t.Errorf("another request under the last command's ID = %v, want %s", err, domain.ReasonCommandIDReused)
	}
	if c, st := replays(s); c != 2 || st != 1 {
		t.Errorf("the refusal was counted as a replay: %v by the cache, %v by the store", c, st)
	}

	// Two command IDs sharing a hash (forged here): the index points the
	// older one at the newer one's event, the last. The cache knows that
	// event's whole command ID, so the older one's resend is no hit there;
	// it is found by scanning the stream, as before.
	forged := uuid.NewString()
	orig, err := reserve(s, "forged", forged)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reserve(s, "later", uuid.NewString()); err != nil {
		t.Fatal(err)
	}
	e := acquire(s, customers, customer)
	e.ids.set(idHash("forged"), uint64(e.rev))
	s.cache.release(e)
	again, err = reserve(s, "forged", forged)
	same("a command whose ID's hash the last one shares", again, err, orig, s, 2, 2)
}
