package command

import (
	"sync"
	"time"

	"github.com/orderly/orderly/internal/domain"
)

// recentCustomers remembers customers PlaceOrder read, for a short while.
//
// PlaceOrder consults the customer without locking it (it appends to the
// order's stream only), so its view of the customer is already a past one by
// the time the order is written; credit is decided later, by the saga, under
// optimistic concurrency on the customer's stream. A view up to maxAge old is
// therefore as good as a fresh read, and it spares a store round trip for
// every order of a customer who orders often. Only customers that exist are
// kept: one registered a moment ago must not be reported missing.
//
// Cached customers are shared and must never be changed: load folds a new
// value on every read.
type recentCustomers struct {
	maxAge  time.Duration
	maxSize int

	mu      sync.Mutex
	entries map[string]recentCustomer
}

type recentCustomer struct {
	customer *domain.Customer
	readAt   time.Time
}

func newRecentCustomers(maxAge time.Duration, maxSize int) *recentCustomers {
	return &recentCustomers{maxAge: maxAge, maxSize: maxSize, entries: map[string]recentCustomer{}}
}

func (r *recentCustomers) get(id string, now time.Time) (*domain.Customer, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[id]
	if !ok || now.Sub(e.readAt) > r.maxAge {
		return nil, false
	}
	return e.customer, true
}

// put remembers c as read at readAt (when its read started). When full, it
// starts over: entries live a second, so little is lost.
func (r *recentCustomers) put(c *domain.Customer, readAt time.Time) {
	if !c.Registered {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.entries) >= r.maxSize {
		clear(r.entries)
	}
	r.entries[c.ID] = recentCustomer{customer: c, readAt: readAt}
}
