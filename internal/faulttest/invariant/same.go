package invariant

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/orderly/orderly/internal/views"
)

// SameViews compares every order and customer document two view stores
// serve, and lists the differences (at most a few of each kind).
func SameViews(ctx context.Context, a, b views.Reader) ([]string, error) {
	orders, err := sameDocs(ctx, a, b, "order", listOrders, func(d views.OrderDoc) string { return d.OrderID },
		func(d, e views.OrderDoc) bool {
			d.CreatedAt, d.UpdatedAt = sameInstant(d.CreatedAt, e.CreatedAt), sameInstant(d.UpdatedAt, e.UpdatedAt)
			return reflect.DeepEqual(d, e)
		})
	if err != nil {
		return nil, err
	}
	customers, err := sameDocs(ctx, a, b, "customer", listCustomers, func(d views.CustomerDoc) string { return d.CustomerID },
		func(d, e views.CustomerDoc) bool {
			d.CreatedAt, d.UpdatedAt = sameInstant(d.CreatedAt, e.CreatedAt), sameInstant(d.UpdatedAt, e.UpdatedAt)
			return reflect.DeepEqual(d, e)
		})
	return append(orders, customers...), err
}

// sameDocs compares the documents of one kind that list reads from a and
// from b, by id, with same.
func sameDocs[D any](ctx context.Context, a, b views.Reader, kind string, list func(context.Context, views.Reader) ([]D, error),
	id func(D) string, same func(D, D) bool) ([]string, error) {
	la, err := list(ctx, a)
	if err != nil {
		return nil, err
	}
	lb, err := list(ctx, b)
	if err != nil {
		return nil, err
	}
	var diffs []string
	ia, ib := byID(la, id), byID(lb, id)
	if len(ia) != len(ib) {
		diffs = append(diffs, fmt.Sprintf("%d %ss and %d %ss", len(ia), kind, len(ib), kind))
	}
	for k, d := range ia {
		if e, ok := ib[k]; (!ok || !same(d, e)) && len(diffs) < 10 {
			diffs = append(diffs, fmt.Sprintf("%s %s:\n\t%+v\n\t%+v", kind, k, d, e))
		}
	}
	return diffs, nil
}

// sameInstant is b if a is the same instant (stores differ in time zones),
// so that the documents compare equal on it; a otherwise.
func sameInstant(a, b time.Time) time.Time {
	if a.Equal(b) {
		return b
	}
	return a
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
