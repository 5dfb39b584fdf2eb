package invariant

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/views"
)

// Sources are what the checker reads: the event store through the official
// client, and the views through the view store's reader.
type Sources struct {
	Store *esdb.Client
	Views views.Reader
	// Leases holds the credit saga's checkpoints (Settle reads them), under
	// SagaProcessor ("" for the saga's default), and the processors'
	// leases: the view store.
	Leases        views.Store
	SagaProcessor string
}

// Ack is a command a client saw acknowledged: its ID, and the stream,
// revision and commit position of its last event as the answer gave them.
type Ack struct {
	CommandID string
	Stream    string
	Revision  uint64
	Position  uint64
}

// Report is what Check read and what it found wrong.
type Report struct {
	// Events is the number of events read from $all; Orders and Customers
	// the aggregates folded; Acks the acknowledged commands checked.
	Events, Orders, Customers, Acks int
	// Problems lists every broken invariant; none when all hold.
	Problems []string
}

// Err is nil when no invariant is broken, or lists (the first 20 of) the
// problems.
func (r Report) Err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	shown := r.Problems[:min(len(r.Problems), 20)]
	return fmt.Errorf("%d broken invariants (of %d events, %d orders, %d customers, %d acknowledged commands):\n  %s",
		len(r.Problems), r.Events, r.Orders, r.Customers, r.Acks, strings.Join(shown, "\n  "))
}

// Check folds the store and compares it with the views and acks. Call it
// once the system is settled (Settle): it reads a moving system as broken.
// The error is for a failed read; broken invariants are in the report.
func Check(ctx context.Context, src Sources, acks []Ack) (Report, error) {
	f, err := readFold(ctx, src.Store)
	if err != nil {
		return Report{}, err
	}
	f.checkCredit()
	f.checkAcks(acks)
	if err := f.checkOrderViews(ctx, src.Views); err != nil {
		return Report{}, err
	}
	if err := f.checkCustomerViews(ctx, src.Views); err != nil {
		return Report{}, err
	}
	return Report{Events: f.events, Orders: len(f.orders), Customers: len(f.customers), Acks: len(acks), Problems: f.problems}, nil
}

// checkCredit: every order is decided once, nothing is left PENDING, and a
// customer holds credit for exactly its APPROVED orders, their totals'
// sum.
func (f *fold) checkCredit() {
	approved := map[string]int64{}
	for id, o := range f.orders {
		if o.Status == domain.StatusNone {
			f.problem("order %s: stream without OrderPlaced", id)
			continue
		}
		if o.Status == domain.StatusPending {
			f.problem("order %s: still PENDING with the saga idle", id)
		}
		c := f.customers[o.CustomerID]
		if c == nil || !c.Registered {
			f.problem("order %s: customer %s does not exist", id, o.CustomerID)
			continue
		}
		if n := c.decided[id]; n > 1 {
			f.problem("order %s: credit decided %d times", id, n)
		}
		if held := c.HasReservation(id); held != (o.Status == domain.StatusApproved) {
			f.problem("order %s is %s and its credit reservation held is %t", id, o.Status, held)
		}
		if o.Status == domain.StatusApproved {
			approved[o.CustomerID] += o.Total.Minor
		}
	}
	for id, c := range f.customers {
		if !c.Registered {
			f.problem("customer %s: stream without CustomerRegistered", id)
			continue
		}
		if c.Reserved.Minor != approved[id] {
			f.problem("customer %s: %d reserved, its approved orders total %d", id, c.Reserved.Minor, approved[id])
		}
	}
}

// checkAcks: each acknowledged command's events are in its stream, whole,
// at the revision and position its answer named.
func (f *fold) checkAcks(acks []Ack) {
	for _, a := range acks {
		evs := f.streams[a.Stream]
		if a.Revision >= uint64(len(evs)) {
			f.problem("command %s acknowledged at %s@%d: the stream has %d events", a.CommandID, a.Stream, a.Revision, len(evs))
			continue
		}
		if e := evs[a.Revision]; e.commandID != a.CommandID || e.position != a.Position {
			f.problem("command %s acknowledged at %s@%d (position %d): there is command %q's event at position %d",
				a.CommandID, a.Stream, a.Revision, a.Position, e.commandID, e.position)
			continue
		}
		// Its events are one run ending at the acknowledged revision: none
		// before the run, none after it.
		first := a.Revision
		for first > 0 && evs[first-1].commandID == a.CommandID {
			first--
		}
		for rev, e := range evs {
			if e.commandID == a.CommandID && (uint64(rev) < first || uint64(rev) > a.Revision) {
				f.problem("command %s acknowledged at %s@%d has an event at revision %d too, outside its run from %d", a.CommandID, a.Stream, a.Revision, rev, first)
			}
		}
	}
}

func (f *fold) checkOrderViews(ctx context.Context, r views.Reader) error {
	docs, err := listOrders(ctx, r)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, d := range docs {
		if seen[d.OrderID] {
			f.problem("orders view: %s listed twice", d.OrderID)
		}
		seen[d.OrderID] = true
		f.compareOrder(d)
	}
	for id := range f.orders {
		if !seen[id] {
			f.problem("orders view: %s missing", id)
		}
	}
	return nil
}

func (f *fold) compareOrder(d views.OrderDoc) {
	o := f.orders[d.OrderID]
	if o == nil {
		f.problem("orders view: %s has no stream", d.OrderID)
		return
	}
	var diff []string
	diff = differ(diff, "customer", d.CustomerID, o.CustomerID)
	if !slices.Equal(d.Lines, o.Lines) {
		diff = append(diff, fmt.Sprintf("lines %v, fold %v", d.Lines, o.Lines))
	}
	diff = differ(diff, "total", d.Total, o.Total)
	diff = differ(diff, "status", d.Status, o.Status)
	diff = differ(diff, "reason", d.Reason, o.Reason)
	diff = o.compareHead(diff, d.CreatedAt, d.UpdatedAt, d.Revision, d.Position)
	if len(diff) > 0 {
		f.problem("orders view: %s differs from its stream: %s", d.OrderID, strings.Join(diff, "; "))
	}
}

func (f *fold) checkCustomerViews(ctx context.Context, r views.Reader) error {
	counts := map[string]*views.OrderCounts{}
	for _, o := range f.orders {
		if counts[o.CustomerID] == nil {
			counts[o.CustomerID] = &views.OrderCounts{}
		}
		counts[o.CustomerID].Add(o.Status, 1)
	}
	docs, err := listCustomers(ctx, r)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, d := range docs {
		if seen[d.CustomerID] {
			f.problem("customers view: %s listed twice", d.CustomerID)
		}
		seen[d.CustomerID] = true
		f.compareCustomer(d, counts[d.CustomerID])
	}
	for id := range f.customers {
		if !seen[id] {
			f.problem("customers view: %s missing", id)
		}
	}
	return nil
}

func (f *fold) compareCustomer(d views.CustomerDoc, counts *views.OrderCounts) {
	c := f.customers[d.CustomerID]
	if c == nil {
		f.problem("customers view: %s has no stream", d.CustomerID)
		return
	}
	if counts == nil {
		counts = &views.OrderCounts{}
	}
	var diff []string
	diff = differ(diff, "name", d.Name, c.Name)
	diff = differ(diff, "email", d.Email, c.Email)
	diff = differ(diff, "credit limit", d.CreditLimit, c.CreditLimit)
	diff = differ(diff, "credit reserved", d.CreditReserved, c.Reserved)
	diff = differ(diff, "registered at position", d.RegisteredPosition, c.created)
	diff = differ(diff, "order counts", d.OrderCounts, *counts)
	diff = c.compareHead(diff, d.CreatedAt, d.UpdatedAt, d.Revision, d.Position)
	if len(diff) > 0 {
		f.problem("customers view: %s differs from its stream: %s", d.CustomerID, strings.Join(diff, "; "))
	}
}

// compareHead compares a document's times (to the millisecond: MongoDB
// keeps no finer), revision and position with the fold's.
func (h *head) compareHead(diff []string, created, updated time.Time, revision, position uint64) []string {
	diff = differ(diff, "created at", created.UnixMilli(), h.createdAt.UnixMilli())
	diff = differ(diff, "updated at", updated.UnixMilli(), h.updatedAt.UnixMilli())
	diff = differ(diff, "revision", revision, h.revision)
	return differ(diff, "position", position, h.position)
}

// differ appends "what VIEW, fold FOLD" to diff when they differ.
func differ[T comparable](diff []string, what string, view, folded T) []string {
	if view != folded {
		diff = append(diff, fmt.Sprintf("%s %v, fold %v", what, view, folded))
	}
	return diff
}
