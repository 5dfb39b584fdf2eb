package command

import (
	"testing"
	"time"

	"github.com/orderly/orderly/internal/domain"
)

func registered(id string) *domain.Customer {
	c := domain.NewCustomer(id)
	c.Apply(domain.CustomerRegistered{CustomerID: id, Name: "Ada", Email: "ada@example.com", CreditLimit: domain.Money{Currency: "USD", Minor: 1}})
	return c
}

func TestRecentCustomers(t *testing.T) {
	r := newRecentCustomers(time.Second, 2)
	t0 := time.Unix(1_000, 0)
	a, b, c := registered("a"), registered("b"), registered("c")

	r.put(a, t0)
	if got, ok := r.get("a", t0.Add(time.Second)); !ok || got != a {
		t.Fatalf("get within maxAge = %v, %v", got, ok)
	}
	if _, ok := r.get("a", t0.Add(time.Second+1)); ok {
		t.Fatal("an entry older than maxAge was returned")
	}
	// A customer that does not exist (yet) is never remembered.
	r.put(domain.NewCustomer("ghost"), t0)
	if _, ok := r.get("ghost", t0); ok {
		t.Fatal("a missing customer was remembered")
	}
	r.put(b, t0)
	r.put(c, t0) // full: starts over
	if _, ok := r.get("a", t0); ok {
		t.Fatal("entries survived a full cache")
	}
	if got, ok := r.get("c", t0); !ok || got != c {
		t.Fatalf("the newest entry is missing: %v, %v", got, ok)
	}
}
