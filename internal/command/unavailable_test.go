package command_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
)

// TestStoreOutage stops the event store under the service: commands fail
// Unavailable promptly while it is down and succeed again once it is back.
func TestStoreOutage(t *testing.T) {
	t.Parallel()
	store := commandtest.StartStore(t)
	env := commandtest.StartOn(t, store.ConnString(), command.Options{StoreTimeout: 2 * time.Second})
	cust := env.RegisterCustomer(t, 1_000)

	store.Stop()
	// Several calls: the first makes the official client rediscover the
	// node, which fails and closes it for good; later ones need a new one.
	for i := range 3 {
		start := time.Now()
		_, err := env.API.ChangeCreditLimit(ctx(t), &orderlyv1.ChangeCreditLimitRequest{CustomerId: cust, CreditLimit: usd(int64(2_000 + i))})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("call %d with the store down: %v; want Unavailable", i, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("call %d took %v with the store down", i, d)
		}
	}

	store.Start()
	resp, err := env.API.ChangeCreditLimit(ctx(t), &orderlyv1.ChangeCreditLimitRequest{CustomerId: cust, CreditLimit: usd(9_000)})
	if err != nil {
		t.Fatalf("after the store came back: %v", err)
	}
	if resp.Revision != 1 || env.Customer(t, cust).CreditLimit.Minor != 9_000 {
		t.Fatalf("after the store came back: %v", resp)
	}
}

// TestStoreNotAnswering points the service at a port that accepts
// connections and never answers: the command fails Unavailable once the
// store timeout passes instead of hanging.
func TestStoreNotAnswering(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	env := commandtest.StartOn(t, commandtest.SilentStore(t), command.Options{StoreTimeout: timeout})

	start := time.Now()
	_, err := env.API.RegisterCustomer(ctx(t), &orderlyv1.RegisterCustomerRequest{Name: "Ada", Email: "ada@example.com", CreditLimit: usd(1)})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("RegisterCustomer against a silent store: %v; want Unavailable", err)
	}
	if d := time.Since(start); d < timeout || d > timeout+time.Second {
		t.Fatalf("failed after %v; want about %v", d, timeout)
	}
}
