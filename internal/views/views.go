// Package views is the port between the projector, which folds events into
// view documents, and the query side, which reads them. It holds the document
// types, the store interface its adapters implement (package sqlite, embedded;
// package mongo, the store of record) and the small helpers both sides share.
// It imports no storage driver.
//
// # Versions
//
// Each view is kept in numbered versions. One is live: every read goes to it.
// A rebuild fills a shadow version (the "building" one) from the start of the
// log while the live one keeps serving, then Switch makes it live in one
// atomic step and drops the old one. A version is writable only while it is
// live or building; a writer that lost its version gets ErrStale and must
// start over from the live version's checkpoint.
//
// # Guards
//
// Every document records the stream revision it reflects. Apply replaces a
// stored document only with one of a higher revision, so a redelivered or
// replayed batch changes nothing.
package views

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/lease"
)

// View names a view: a set of documents one projection keeps, with its own
// checkpoint and versions.
type View string

const (
	// Orders holds one OrderDoc per order, from the order streams.
	Orders View = "orders"
	// Customers holds one CustomerDoc per customer, from the customer streams.
	Customers View = "customers"
)

// All lists every view, in a fixed order.
func All() []View { return []View{Orders, Customers} }

// Valid reports whether v is one of All.
func (v View) Valid() bool { return v == Orders || v == Customers }

// Errors adapters return; callers test them with errors.Is.
var (
	// ErrNotFound: no document with that ID in the live version.
	ErrNotFound = errors.New("views: not found")
	// ErrStale: the version written to is neither live nor building any more
	// (a rebuild switched or replaced it).
	ErrStale = errors.New("views: version is no longer live or building")
	// ErrBehind: the shadow version's checkpoint is behind the live one's;
	// switching now would take back writes the query side has served.
	ErrBehind = errors.New("views: shadow version is behind the live one")
)

// OrderDoc is an order as the query side serves it.
type OrderDoc struct {
	OrderID    string
	CustomerID string
	Lines      []domain.OrderLine
	// Total is Σ quantity × unit price.
	Total  domain.Money
	Status domain.OrderStatus
	// Reason says why the order was rejected or cancelled; empty otherwise.
	Reason string
	// CreatedAt is when OrderPlaced was recorded; UpdatedAt when the last
	// event folded in was.
	CreatedAt time.Time
	UpdatedAt time.Time
	// Revision is the order stream's revision the document reflects.
	Revision uint64
	// Position is the commit position of the last event folded in.
	Position uint64
}

// Cursor is the keyset position of d in ListOrders' order.
func (d OrderDoc) Cursor() OrderCursor {
	return OrderCursor{CreatedAt: d.CreatedAt, OrderID: d.OrderID}
}

// OrderCounts counts a customer's orders by status.
type OrderCounts struct {
	Total, Pending, Approved, Rejected, Cancelled int64
}

// Add counts n more orders in status s.
func (c *OrderCounts) Add(s domain.OrderStatus, n int64) {
	c.Total += n
	switch s {
	case domain.StatusPending:
		c.Pending += n
	case domain.StatusApproved:
		c.Approved += n
	case domain.StatusRejected:
		c.Rejected += n
	case domain.StatusCancelled:
		c.Cancelled += n
	}
}

// CustomerDoc is a customer as the query side serves it.
type CustomerDoc struct {
	CustomerID     string
	Name           string
	Email          string
	CreditLimit    domain.Money
	CreditReserved domain.Money
	CreatedAt      time.Time
	UpdatedAt      time.Time
	// Revision is the customer stream's revision the document reflects.
	Revision uint64
	// Position is the commit position of the last event folded in.
	Position uint64
	// RegisteredPosition is the commit position of CustomerRegistered:
	// unique, and the registration order ListCustomers pages in.
	RegisteredPosition uint64
	// OrderCounts is not projected: readers fill it from the live orders
	// view when they return the document, and the projector leaves it zero.
	// Order events live on order streams; counting them here would need a
	// second, cross-stream guard (and the status each order had before)
	// kept consistent with the orders view without a transaction on
	// MongoDB. Counting the orders view at read time is exact by
	// construction and uses its customer+status index.
	OrderCounts OrderCounts
}

// CreditAvailable is CreditLimit - CreditReserved.
func (d CustomerDoc) CreditAvailable() domain.Money {
	return domain.Money{Currency: d.CreditLimit.Currency, Minor: d.CreditLimit.Minor - d.CreditReserved.Minor}
}

// OrderCursor is a keyset position in ListOrders' order: newest first
// (CreatedAt descending), OrderID descending among equal times.
type OrderCursor struct {
	CreatedAt time.Time
	OrderID   string
}

// OrderQuery selects a page of orders.
type OrderQuery struct {
	// CustomerID keeps one customer's orders; "" keeps all.
	CustomerID string
	// Status keeps orders in that status; domain.StatusNone keeps all.
	Status domain.OrderStatus
	// Limit is the most documents returned; it must be positive. Ask for
	// one more than the page size to learn whether another page follows.
	Limit int
	// After starts the page after this position; nil starts at the newest.
	After *OrderCursor
}

// CustomerQuery selects a page of customers in registration order.
type CustomerQuery struct {
	// Limit is the most documents returned; it must be positive.
	Limit int
	// After is the RegisteredPosition of the last customer of the previous
	// page; 0 starts at the first customer.
	After uint64
}

// Version numbers a version of a view. Numbers only grow; 0 means none.
type Version int64

// Target is one version of one view: where a projection writes.
type Target struct {
	View    View
	Version Version
}

// State is a view's version pointer and the checkpoints of its versions.
type State struct {
	Live Version
	// LiveCheckpoint is the commit position the live version has applied
	// every event up to; 0 when it has applied none.
	LiveCheckpoint uint64
	// Building is the shadow version a rebuild is filling; 0 when none.
	Building           Version
	BuildingCheckpoint uint64
	// Partitions holds the live version's checkpoint of each partition, by
	// partition, once the projector's leases are set up in this store
	// (LeaseProcessor); LiveCheckpoint is then the lowest of them. A
	// partition no fenced batch has written yet stands at the version's
	// own checkpoint (the one a rebuild switched live with). Nil before.
	Partitions []uint64
	// Paused is set while an operator has the view's live projection
	// paused (Writer.SetPaused), so that it stays paused across restarts.
	// It belongs to the view, not to a version: a switch keeps it.
	Paused bool
}

// Checkpoint returns the checkpoint of version v; ok is false when v is
// neither live nor building.
func (s State) Checkpoint(v Version) (pos uint64, ok bool) {
	switch {
	case v == 0:
		return 0, false
	case v == s.Live:
		return s.LiveCheckpoint, true
	case v == s.Building:
		return s.BuildingCheckpoint, true
	}
	return 0, false
}

// DeadLetter is an event a projection could not decode, parked with enough
// to find, replay or repair it; the projection went on without it.
type DeadLetter struct {
	EventID    string
	Stream     string
	Revision   uint64
	Position   uint64
	Type       string
	RecordedAt time.Time
	// Error is why decoding failed.
	Error    string
	Data     []byte
	Metadata []byte
}

// Batch is what a projection writes at once. Documents of a version belong
// to its view: a batch for Orders carries no customers and vice versa.
type Batch struct {
	// Orders and Customers are guarded upserts: each replaces the stored
	// document only if its Revision is higher (or none is stored).
	Orders    []OrderDoc
	Customers []CustomerDoc
	// DeadLetters are stored by EventID; storing one twice keeps one.
	DeadLetters []DeadLetter
	// Checkpoint is the commit position up to which every event has been
	// applied once the batch is written. It is saved after the documents —
	// in the same transaction where the store has them — so it never passes
	// an event whose effect is not stored. Checkpoints never move back: a
	// lower one than stored leaves the stored one.
	Checkpoint uint64
	// Fence, when set, makes Checkpoint the checkpoint of the partitions it
	// holds, and only if Fence.Owner still holds each at its epoch, checked
	// in the same write as the checkpoint; otherwise Apply returns an error
	// wrapping lease.ErrLost and moves no checkpoint (see Writer.Apply for
	// the documents). Only a live version takes a fenced batch. Nil: the
	// checkpoint is the whole version's, as a rebuild's shadow, filled by
	// one process, writes it.
	Fence *Fence
}

// LeaseProcessor names the projector's leases in a view store's lease
// table (package lease): one set of partitions covers every view, since
// one subscription feeds them all.
const LeaseProcessor = "projector"

// Fence is the leases a batch's writer holds: the partitions the batch
// covers, each with the epoch of its lease.
type Fence struct {
	Owner string
	Held  map[int]lease.Epoch
}

// Check reports a batch whose documents are not view v's.
func (b Batch) Check(v View) error {
	if (v != Orders && len(b.Orders) > 0) || (v != Customers && len(b.Customers) > 0) {
		return fmt.Errorf("views: batch for %s carries %d orders and %d customers", v, len(b.Orders), len(b.Customers))
	}
	return nil
}

// Reader is what the query side needs. Reads go to the live version of each
// view and never see a version being built or one half switched.
type Reader interface {
	// GetOrder returns the order, or ErrNotFound.
	GetOrder(ctx context.Context, orderID string) (OrderDoc, error)
	// ListOrders returns up to q.Limit orders, newest first.
	ListOrders(ctx context.Context, q OrderQuery) ([]OrderDoc, error)
	// GetCustomer returns the customer with its order counts, or ErrNotFound.
	GetCustomer(ctx context.Context, customerID string) (CustomerDoc, error)
	// ListCustomers returns up to q.Limit customers with their order counts,
	// in registration order.
	ListCustomers(ctx context.Context, q CustomerQuery) ([]CustomerDoc, error)
	// Checkpoint is the commit position every live view has applied every
	// event up to: the lowest live checkpoint. A query with min_position p
	// may read once Checkpoint ≥ p (see WaitCheckpoint).
	Checkpoint(ctx context.Context) (uint64, error)
	// State returns view v's version pointer and checkpoints.
	State(ctx context.Context, v View) (State, error)
}

// Writer is what the projection needs.
type Writer interface {
	// LoadOrders returns the stored documents among ids, keyed by OrderID;
	// missing ones are absent from the map.
	LoadOrders(ctx context.Context, t Target, ids []string) (map[string]OrderDoc, error)
	// LoadCustomers is LoadOrders for customers; OrderCounts stay zero.
	LoadCustomers(ctx context.Context, t Target, ids []string) (map[string]CustomerDoc, error)
	// Apply writes a batch to t: the guarded upserts, then the dead letters,
	// then the checkpoint. It returns ErrStale if t is no longer writable;
	// nothing of the batch then counts. Stores without transactions may
	// have written documents before failing: the guards make retrying safe.
	// The same holds for a fenced batch whose lease was lost (lease.ErrLost):
	// its documents may be stored (guarded, so never older than what is
	// there), no checkpoint of a lost partition moves.
	Apply(ctx context.Context, t Target, b Batch) error
	// BeginRebuild creates an empty shadow version of v with checkpoint 0
	// and returns it. A shadow left by an interrupted rebuild is dropped
	// first: a rebuild always starts from the beginning, so rebuilding twice
	// gives the same views, and a concurrent rebuild of the same view loses
	// its version (ErrStale) rather than mixing into this one.
	BeginRebuild(ctx context.Context, v View) (Target, error)
	// Switch makes the shadow version t live and drops the version it
	// replaces, atomically for readers. It returns ErrBehind, changing
	// nothing, while t's checkpoint is below the live one's — unless
	// liveAhead is set: the caller found the live checkpoint past the event
	// store's head (the store was restored from an older backup), so the
	// live version serves events the store no longer has, and t, caught up
	// with the store, replaces it although its checkpoint is lower. It
	// returns ErrStale if t is not the building version.
	Switch(ctx context.Context, t Target, liveAhead bool) error
	// DeadLetters returns the live version's dead letters, oldest first.
	DeadLetters(ctx context.Context, v View) ([]DeadLetter, error)
	// SetPaused records whether an operator has v's live projection
	// paused (State.Paused). Setting what is already set changes nothing.
	SetPaused(ctx context.Context, v View, paused bool) error
}

// Store is a view store: both sides of the port.
type Store interface {
	Reader
	Writer
	lease.Store
	Close() error
}

// GroupWriter is a Writer that can write the batches of several views in
// one transaction. A store whose writes queue behind one writer (SQLite)
// then pays one commit for a projector's batch, not one per view, and
// readers see every view at the same checkpoint.
type GroupWriter interface {
	Writer
	// ApplyGroup writes each batch to its target as Apply does, all or
	// none: on an error (ErrStale for any target, lease.ErrLost for any
	// fence, a failed commit) nothing of any batch is written.
	ApplyGroup(ctx context.Context, writes []Write) error
}

// Write is one batch of ApplyGroup and the version it goes to.
type Write struct {
	Target Target
	Batch  Batch
}
