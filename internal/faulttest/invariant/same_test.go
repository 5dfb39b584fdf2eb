package invariant_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/faulttest/invariant"
	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/sqlite"
	"github.com/orderly/orderly/internal/views/viewstest"
)

// TestSameViewsFindsDifferences: equal stores compare equal, whatever the
// time zone of their times; a document missing or different is named.
func TestSameViewsFindsDifferences(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	open := func() views.Store {
		s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "views.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	created := time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
	write := func(s views.Store, orders []views.OrderDoc, customers []views.CustomerDoc) {
		for v, b := range map[views.View]views.Batch{views.Orders: {Orders: orders, Checkpoint: 9}, views.Customers: {Customers: customers, Checkpoint: 9}} {
			if err := s.Apply(ctx, views.Target{View: v, Version: 1}, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	a, b := open(), open()
	order := viewstest.Order("o1", "c1", created, domain.StatusApproved, 2)
	customer := viewstest.Customer("c1", 1, 3)
	write(a, []views.OrderDoc{order}, []views.CustomerDoc{customer})
	elsewhere := order
	elsewhere.CreatedAt = created.In(time.FixedZone("east", 3600))
	write(b, []views.OrderDoc{elsewhere}, []views.CustomerDoc{customer})
	if diffs, err := invariant.SameViews(ctx, a, b); err != nil || len(diffs) != 0 {
		t.Fatalf("equal stores: %v (%v)", diffs, err)
	}
	rejected := viewstest.Order("o1", "c1", created, domain.StatusRejected, 3)
	write(b, []views.OrderDoc{rejected, viewstest.Order("o2", "c1", created, domain.StatusPending, 0)}, nil)
	diffs, err := invariant.SameViews(ctx, a, b)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(diffs, "\n")
	if !strings.Contains(all, "1 orders and 2 orders") || !strings.Contains(all, "order o1") {
		t.Fatalf("differences found: %q; want the count and order o1 named", all)
	}
}
