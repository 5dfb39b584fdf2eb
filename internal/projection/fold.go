package projection

import (
	"context"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/views"
)

// kind is what the engine needs to know about one view whose documents are
// of type D: from which streams it folds events, and how.
type kind[D any] struct {
	view views.View
	// prefix is the stream prefix of the view's documents: one document
	// per stream, keyed by the stream's aggregate ID.
	prefix string
	// creates is the type of the event at revision 0 that creates a
	// document; a document whose first event in a batch is its creation
	// is folded from scratch, without loading it.
	creates string
	// fold applies rec to d (the zero D when the document does not exist)
	// if rec is newer than d, and reports whether it did.
	fold func(d *D, key string, rec eventlog.Recorded) bool
	load func(ctx context.Context, w views.Writer, t views.Target, ids []string) (map[string]D, error)
	// put adds docs to a batch, and docs takes them back.
	put  func(b *views.Batch, docs []D)
	docs func(b views.Batch) []D
	// key, revision and size are a document's key, the revision of its
	// stream it reflects, and an estimate of its bytes, for docCache.
	key      func(D) string
	revision func(D) uint64
	size     func(D) int
}

var orders = kind[views.OrderDoc]{
	view:    views.Orders,
	prefix:  eventlog.OrderPrefix,
	creates: domain.TypeOrderPlaced,
	fold:    foldOrder,
	load: func(ctx context.Context, w views.Writer, t views.Target, ids []string) (map[string]views.OrderDoc, error) {
		return w.LoadOrders(ctx, t, ids)
	},
	put:      func(b *views.Batch, docs []views.OrderDoc) { b.Orders = docs },
	docs:     func(b views.Batch) []views.OrderDoc { return b.Orders },
	key:      func(d views.OrderDoc) string { return d.OrderID },
	revision: func(d views.OrderDoc) uint64 { return d.Revision },
	size: func(d views.OrderDoc) int {
		n := 160 + len(d.OrderID) + len(d.CustomerID) + len(d.Reason)
		for _, l := range d.Lines {
			n += 48 + len(l.SKU)
		}
		return n
	},
}

var customers = kind[views.CustomerDoc]{
	view:    views.Customers,
	prefix:  eventlog.CustomerPrefix,
	creates: domain.TypeCustomerRegistered,
	fold:    foldCustomer,
	load: func(ctx context.Context, w views.Writer, t views.Target, ids []string) (map[string]views.CustomerDoc, error) {
		return w.LoadCustomers(ctx, t, ids)
	},
	put:      func(b *views.Batch, docs []views.CustomerDoc) { b.Customers = docs },
	docs:     func(b views.Batch) []views.CustomerDoc { return b.Customers },
	key:      func(d views.CustomerDoc) string { return d.CustomerID },
	revision: func(d views.CustomerDoc) uint64 { return d.Revision },
	size:     func(d views.CustomerDoc) int { return 200 + len(d.CustomerID) + len(d.Name) + len(d.Email) },
}

// newer is the revision guard: an event applies to a document that does not
// exist yet only if it creates it, and to one that exists only if it comes
// after the revision the document reflects. Replays and redeliveries fail it.
func newer(exists bool, docRevision uint64, rec eventlog.Recorded, creates string) bool {
	if !exists {
		return rec.Type == creates
	}
	return rec.Revision > docRevision
}

// foldOrder folds an order stream's event. Events for an order whose
// OrderPlaced was never folded (it was dead-lettered) are skipped: a
// document exists only from its creation on.
func foldOrder(d *views.OrderDoc, key string, rec eventlog.Recorded) bool {
	if !newer(d.OrderID != "", d.Revision, rec, domain.TypeOrderPlaced) {
		return false
	}
	switch e := rec.Event.(type) {
	case domain.OrderPlaced:
		*d = views.OrderDoc{
			OrderID: key, CustomerID: e.CustomerID, Lines: e.Lines, Total: e.Total,
			Status: domain.StatusPending, CreatedAt: rec.RecordedAt,
		}
	case domain.OrderApproved:
		d.Status = domain.StatusApproved
	case domain.OrderRejected:
		d.Status, d.Reason = domain.StatusRejected, e.Reason
	case domain.OrderCancelled:
		d.Status, d.Reason = domain.StatusCancelled, e.Reason
	}
	// Any other event of the stream shows nothing but is still reflected.
	d.Revision, d.Position, d.UpdatedAt = rec.Revision, rec.Position, rec.RecordedAt
	return true
}

// foldCustomer folds a customer stream's event, as foldOrder.
func foldCustomer(d *views.CustomerDoc, key string, rec eventlog.Recorded) bool {
	if !newer(d.CustomerID != "", d.Revision, rec, domain.TypeCustomerRegistered) {
		return false
	}
	switch e := rec.Event.(type) {
	case domain.CustomerRegistered:
		*d = views.CustomerDoc{
			CustomerID: key, Name: e.Name, Email: e.Email,
			CreditLimit: e.CreditLimit, CreditReserved: domain.Zero(e.CreditLimit.Currency),
			CreatedAt: rec.RecordedAt, RegisteredPosition: rec.Position,
		}
	case domain.CreditLimitChanged:
		d.CreditLimit = e.CreditLimit
	case domain.CreditReserved:
		d.CreditReserved.Minor += e.Amount.Minor
	case domain.CreditReleased:
		d.CreditReserved.Minor -= e.Amount.Minor
	}
	d.Revision, d.Position, d.UpdatedAt = rec.Revision, rec.Position, rec.RecordedAt
	return true
}
