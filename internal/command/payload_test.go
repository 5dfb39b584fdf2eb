package command

import (
	"errors"
	"reflect"
	"testing"

	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventstore/estest"
)

// The tests below resend a command under its command ID with another
// payload, on a replica whose cache has not seen the first one (as after a
// lost acknowledgement, or on another replica). The store must not take the
// resend for a retry of what it holds, and the cache must hold only what the
// store wrote. Whether the resend is then refused or answered is
// TestCommandIDReusedWithAnotherRequest's concern.

// cachedIsStream fails t unless s's cached k/id, as it is (not caught up),
// is its stream folded from the first event.
func cachedIsStream[A aggregate](t *testing.T, s *Service, k kind[A], id string) A {
	t.Helper()
	e := acquire(s, k, id)
	loaded, got := e.loaded, e.agg
	s.cache.release(e)
	want := foldedAt(t, s, k, id)
	if loaded && !reflect.DeepEqual(got, aggregate(want)) {
		t.Fatalf("%s %s cached as %+v; its stream folds to %+v", k.name, id, got, want)
	}
	return want
}

// TestCreateResentWithAnotherPayload: a registration resent with another
// limit to a replica that has not cached the customer (create's first
// attempt, which skips the load) leaves it caching the stored limit.
func TestCreateResentWithAnotherPayload(t *testing.T) {
	t.Parallel()
	a, b := twoReplicas(t)
	ctx := testCtx(t)
	meta := eventcodec.Metadata{CommandID: "reg-" + uuid.NewString()}
	id := customerIDFor(meta.CommandID)
	send := func(s *Service, limit int64) {
		_, _ = s.registerCustomer(ctx, domain.RegisterCustomer{CustomerID: id, Name: "Ada", Email: "ada@example.com", CreditLimit: usd(limit)}, meta)
	}
	send(a, 100)
	send(b, 500) // b has not cached the customer
	cachedIsStream(t, b, customers, id)
	reserveOver(t, b, id, 300)
}

// TestExecuteResentWithAnotherPayload: a limit change resent with another
// limit to a replica whose cache is one event behind (it appends at the
// revision the first one was written after) leaves it caching the stored
// limit.
func TestExecuteResentWithAnotherPayload(t *testing.T) {
	t.Parallel()
	a, b := twoReplicas(t)
	ctx := testCtx(t)
	id := uuid.NewString()
	register(t, a, id)
	loaded(t, b, id) // b caches the customer at revision 0
	meta := eventcodec.Metadata{CommandID: uuid.NewString()}
	if _, err := a.changeCreditLimit(ctx, domain.ChangeCreditLimit{CustomerID: id, CreditLimit: usd(100)}, meta); err != nil {
		t.Fatal(err)
	}
	_, _ = b.changeCreditLimit(ctx, domain.ChangeCreditLimit{CustomerID: id, CreditLimit: usd(500)}, meta)
	cachedIsStream(t, b, customers, id)
	reserveOver(t, b, id, 300)
}

// TestPlaceOrderResentForAnotherCustomer: an order resent for another
// customer stays cached under the customer it was placed for.
func TestPlaceOrderResentForAnotherCustomer(t *testing.T) {
	t.Parallel()
	a, b := twoReplicas(t)
	ctx := testCtx(t)
	custs := [2]string{uuid.NewString(), uuid.NewString()}
	for _, c := range custs {
		register(t, a, c)
	}
	meta := eventcodec.Metadata{CommandID: "place-" + uuid.NewString()}
	orderID := orderIDFor(meta.CommandID)
	place := func(s *Service, customer string) {
		_, _ = s.placeOrder(ctx, domain.PlaceOrder{OrderID: orderID, CustomerID: customer, Lines: []domain.OrderLine{{SKU: "A", Quantity: 1, UnitPrice: usd(10)}}}, meta)
	}
	place(a, custs[0])
	place(b, custs[1])
	if o := cachedIsStream(t, b, orders, orderID); o.CustomerID != custs[0] {
		t.Fatalf("order of customer %s; want %s", o.CustomerID, custs[0])
	}
}

// twoReplicas runs two services on one fresh store.
func twoReplicas(t *testing.T) (a, b *Service) {
	t.Helper()
	connString := estest.Start(t)
	return serviceOn(t, connString, Options{}), serviceOn(t, connString, Options{})
}

// register registers customer id, with a credit limit of 1000, through s.
func register(t *testing.T, s *Service, id string) {
	t.Helper()
	if _, err := s.registerCustomer(testCtx(t), domain.RegisterCustomer{CustomerID: id, Name: "Ada", Email: "ada@example.com", CreditLimit: usd(1000)}, eventcodec.Metadata{CommandID: uuid.NewString()}); err != nil {
		t.Fatal(err)
	}
}

// reserveOver reserves amount, over the customer's credit limit as stored,
// through s, and fails t if the stream then holds more reserved than its
// limit.
func reserveOver(t *testing.T, s *Service, id string, amount int64) {
	t.Helper()
	_, err := s.ReserveCredit(testCtx(t), domain.ReserveCredit{CustomerID: id, OrderID: uuid.NewString(), Amount: usd(amount)}, eventcodec.Metadata{CommandID: uuid.NewString()})
	if err != nil {
		t.Fatal(err)
	}
	if c := cachedIsStream(t, s, customers, id); c.Reserved.Minor > c.CreditLimit.Minor {
		t.Fatalf("reserved %d over the limit %d", c.Reserved.Minor, c.CreditLimit.Minor)
	}
}

// TestSagaStepReplayedOrReused: a saga step redelivered (the same command ID,
// the same command, as the saga derives both from the trigger) is answered
// with its first result; another request under its ID is refused.
func TestSagaStepReplayedOrReused(t *testing.T) {
	t.Parallel()
	s, _ := newTestService(t, Options{})
	ctx := testCtx(t)
	id := uuid.NewString()
	register(t, s, id)
	meta := eventcodec.Metadata{CommandID: StepCommandID("reserve-credit", uuid.New()), CorrelationID: "first"}
	cmd := domain.ReserveCredit{CustomerID: id, OrderID: uuid.NewString(), Amount: usd(300)}
	first, err := s.ReserveCredit(ctx, cmd, meta)
	if err != nil {
		t.Fatal(err)
	}
	meta.CorrelationID = "redelivered"
	if again, err := s.ReserveCredit(ctx, cmd, meta); err != nil || !replayOf(again, first) {
		t.Fatalf("redelivered step = %+v, %v; first was %+v", again, err, first)
	}
	cmd.Amount = usd(400)
	_, err = s.ReserveCredit(ctx, cmd, meta)
	if derr, ok := errors.AsType[*domain.Error](err); !ok || derr.Reason != domain.ReasonCommandIDReused {
		t.Fatalf("another request under the step's ID: %v; want %s", err, domain.ReasonCommandIDReused)
	}
}

// TestEventIDNamesTheWrite: an event's ID changes with anything that makes
// it another write (its request, type or payload), so the store can never
// acknowledge one for the other.
func TestEventIDNamesTheWrite(t *testing.T) {
	t.Parallel()
	base := eventID("cmd", "customer-1", 0, "fp", "orderly.T", []byte(`{"a":1}`))
	if again := eventID("cmd", "customer-1", 0, "fp", "orderly.T", []byte(`{"a":1}`)); again != base {
		t.Fatalf("the same write named %s and %s", base, again)
	}
	for name, id := range map[string]uuid.UUID{
		"command":     eventID("cmd2", "customer-1", 0, "fp", "orderly.T", []byte(`{"a":1}`)),
		"stream":      eventID("cmd", "customer-2", 0, "fp", "orderly.T", []byte(`{"a":1}`)),
		"index":       eventID("cmd", "customer-1", 1, "fp", "orderly.T", []byte(`{"a":1}`)),
		"fingerprint": eventID("cmd", "customer-1", 0, "fp2", "orderly.T", []byte(`{"a":1}`)),
		"type":        eventID("cmd", "customer-1", 0, "fp", "orderly.U", []byte(`{"a":1}`)),
		"payload":     eventID("cmd", "customer-1", 0, "fp", "orderly.T", []byte(`{"a":2}`)),
	} {
		if id == base {
			t.Errorf("another %s, the same event ID", name)
		}
	}
}
