package invariant

import (
	"context"
	"fmt"
	"reflect"

	"github.com/orderly/orderly/internal/views"
)

// SameViews compares every order and customer document two view stores
// serve, and lists the differences (at most a few of them).
func SameViews(ctx context.Context, a, b views.Reader) ([]string, error) {
	var diffs []string
	diff := func(format string, args ...any) {
		if len(diffs) < 10 {
			diffs = append(diffs, fmt.Sprintf(format, args...))
		}
	}
	orderID := func(d views.OrderDoc) string { return d.OrderID }
	customerID := func(d views.CustomerDoc) string { return d.CustomerID }
	la, err := listOrders(ctx, a)
	if err != nil {
		return nil, err
	}
	lb, err := listOrders(ctx, b)
	if err != nil {
		return nil, err
	}
	ao, bo := byID(la, orderID), byID(lb, orderID)
	if len(ao) != len(bo) {
		diff("%d orders and %d orders", len(ao), len(bo))
	}
	for id, d := range ao {
		if e, ok := bo[id]; !ok || !sameOrder(d, e) {
			diff("order %s:\n\t%+v\n\t%+v", id, d, e)
		}
	}
	ca, err := listCustomers(ctx, a)
	if err != nil {
		return nil, err
	}
	cb, err := listCustomers(ctx, b)
	if err != nil {
		return nil, err
	}
	ac, bc := byID(ca, customerID), byID(cb, customerID)
	if len(ac) != len(bc) {
		diff("%d customers and %d customers", len(ac), len(bc))
	}
	for id, d := range ac {
		if e, ok := bc[id]; !ok || !sameCustomer(d, e) {
			diff("customer %s:\n\t%+v\n\t%+v", id, d, e)
		}
	}
	return diffs, nil
}

// sameOrder and sameCustomer compare documents with their times as
// instants (stores differ in time zones).
func sameOrder(a, b views.OrderDoc) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) || !a.UpdatedAt.Equal(b.UpdatedAt) {
		return false
	}
	a.CreatedAt, a.UpdatedAt = b.CreatedAt, b.UpdatedAt
	return reflect.DeepEqual(a, b)
}

func sameCustomer(a, b views.CustomerDoc) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) || !a.UpdatedAt.Equal(b.UpdatedAt) {
		return false
	}
	a.CreatedAt, a.UpdatedAt = b.CreatedAt, b.UpdatedAt
	return reflect.DeepEqual(a, b)
}

// page is the page size of the view listings.
const page = 500

// byID keys docs by id.
func byID[D any](docs []D, id func(D) string) map[string]D {
	out := make(map[string]D, len(docs))
	for _, d := range docs {
		out[id(d)] = d
	}
	return out
}

// listOrders lists every order the views serve, newest first.
func listOrders(ctx context.Context, r views.Reader) ([]views.OrderDoc, error) {
	var all []views.OrderDoc
	q := views.OrderQuery{Limit: page}
	for {
		docs, err := r.ListOrders(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("list orders: %w", err)
		}
		all = append(all, docs...)
		if len(docs) < page {
			return all, nil
		}
		c := docs[len(docs)-1].Cursor()
		q.After = &c
	}
}

// listCustomers lists every customer the views serve, in registration
// order.
func listCustomers(ctx context.Context, r views.Reader) ([]views.CustomerDoc, error) {
	var all []views.CustomerDoc
	q := views.CustomerQuery{Limit: page}
	for {
		docs, err := r.ListCustomers(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("list customers: %w", err)
		}
		all = append(all, docs...)
		if len(docs) < page {
			return all, nil
		}
		q.After = docs[len(docs)-1].RegisteredPosition
	}
}
