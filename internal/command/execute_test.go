package command

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
)

func usd(minor int64) domain.Money { return domain.Money{Currency: "USD", Minor: minor} }

// newTestService runs a service on a fresh store and returns it with a
// client of its own, to play a concurrent writer.
func newTestService(t *testing.T, opts Options) (*Service, *esdb.Client) {
	t.Helper()
	connString := estest.Start(t)
	return serviceOn(t, connString, opts), estest.Client(t, connString)
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestConflictRetry makes another writer append between the executor's read
// and its append: once, which a retry absorbs, then on every attempt, which
// ends in ErrConflict (Aborted) after MaxAttempts decisions.
func TestConflictRetry(t *testing.T) {
	t.Parallel()
	s, other := newTestService(t, Options{MaxAttempts: 3})
	ctx := testCtx(t)
	id := uuid.NewString()
	if _, err := s.registerCustomer(ctx, domain.RegisterCustomer{CustomerID: id, Name: "Ada", Email: "ada@example.com", CreditLimit: usd(100)},
		eventcodec.Metadata{CommandID: "register"}); err != nil {
		t.Fatal(err)
	}
	limit := int64(100)
	interfere := func() {
		ev, err := eventlog.Encode(s.reg, uuid.New(), domain.CreditLimitChanged{CustomerID: id, CreditLimit: usd(limit + 1), PreviousLimit: usd(limit)}, eventcodec.Metadata{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := other.AppendToStream(ctx, eventlog.CustomerStream(id), esdb.AppendToStreamOptions{}, ev); err != nil {
			t.Fatal(err)
		}
		limit++
	}
	change := func(interferences int) (attempts int, err error) {
		_, err = execute(ctx, s, customers, id, eventcodec.Metadata{CommandID: uuid.NewString()}, func(_ context.Context, c *domain.Customer) ([]domain.Event, error) {
			attempts++
			if attempts <= interferences {
				interfere()
			}
			return c.ChangeCreditLimit(domain.ChangeCreditLimit{CustomerID: id, CreditLimit: usd(c.CreditLimit.Minor + 1_000)})
		})
		return attempts, err
	}

	attempts, err := change(1)
	if err != nil || attempts != 2 {
		t.Fatalf("one interference: %d attempts, %v; want success on the second", attempts, err)
	}
	// The retry decided on the other writer's limit: nothing was lost.
	if got := customerAt(t, s, id).CreditLimit.Minor; got != 101+1_000 {
		t.Fatalf("limit %d after the retried change; want %d", got, 101+1_000)
	}

	attempts, err = change(1_000)
	if !errors.Is(err, ErrConflict) || attempts != 3 {
		t.Fatalf("constant interference: %d attempts, %v; want ErrConflict after 3", attempts, err)
	}
	if code := status.Code(s.status(ctx, err, "change credit limit")); code != codes.Aborted {
		t.Fatalf("conflict maps to %v; want Aborted", code)
	}
}

// TestCreateOnExistingStream: a create whose stream holds another command's
// events is refused AlreadyExists (IDs derive from command IDs, so clients
// only meet this if two commands' IDs collide or a tool wrote the stream).
func TestCreateOnExistingStream(t *testing.T) {
	t.Parallel()
	s, _ := newTestService(t, Options{})
	ctx := testCtx(t)
	cmd := domain.RegisterCustomer{CustomerID: uuid.NewString(), Name: "Ada", Email: "ada@example.com", CreditLimit: usd(100)}
	first, err := s.registerCustomer(ctx, cmd, eventcodec.Metadata{CommandID: "first"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.registerCustomer(ctx, cmd, eventcodec.Metadata{CommandID: "first"})
	if err != nil || !replayOf(again, first) {
		t.Fatalf("replayed create = %+v, %v; want %+v", again, err, first)
	}
	_, err = s.registerCustomer(ctx, cmd, eventcodec.Metadata{CommandID: "second"})
	if domain.ReasonOf(err) != domain.ReasonCustomerExists {
		t.Fatalf("second create: %v; want %s", err, domain.ReasonCustomerExists)
	}
	if code := status.Code(s.status(ctx, err, "register customer")); code != codes.AlreadyExists {
		t.Fatalf("duplicate create maps to %v; want AlreadyExists", code)
	}
}

func customerAt(t *testing.T, s *Service, id string) *domain.Customer {
	t.Helper()
	return foldedAt(t, s, customers, id)
}

// foldedAt is k/id's stream as stored, folded from the first event.
func foldedAt[A aggregate](t *testing.T, s *Service, k kind[A], id string) A {
	t.Helper()
	recs, err := storeCall(testCtx(t), s, eventlog.Op{Method: "ReadStream", Stream: k.stream(id)}, func(ctx context.Context, c *esdb.Client) ([]eventlog.Recorded, error) {
		return eventlog.Read(ctx, c, s.reg, k.stream(id), 0, 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	agg := k.fresh(id)
	for _, r := range recs {
		agg.Apply(r.Event)
	}
	return agg
}
