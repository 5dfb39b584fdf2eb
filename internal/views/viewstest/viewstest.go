// Package viewstest is the contract every views.Store adapter passes: one
// suite, run by each adapter's tests against a real store.
package viewstest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/views"
)

// Run runs the contract against stores from open, which returns a fresh,
// empty store for each subtest (closed by open's cleanup).
func Run(t *testing.T, open func(t *testing.T) views.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s views.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"Guards", testGuards},
		{"GuardsInBulk", testGuardsInBulk},
		{"Recreated", testRecreated},
		{"ApplyGroup", testApplyGroup},
		{"Load", testLoad},
		{"ListOrders", testListOrders},
		{"ListCustomers", testListCustomers},
		{"Checkpoint", testCheckpoint},
		{"DeadLetters", testDeadLetters},
		{"Rebuild", testRebuild},
		{"SwitchLiveAhead", testSwitchLiveAhead},
		{"ReadsDuringSwitch", testReadsDuringSwitch},
		{"WrongView", testWrongView},
		{"LeaseClaim", testLeaseClaim},
		{"LeaseClaimRace", testLeaseClaimRace},
		{"LeaseExpiry", testLeaseExpiry},
		{"LeaseRenew", testLeaseRenew},
		{"LeaseRelease", testLeaseRelease},
		{"LeaseCheckpoint", testLeaseCheckpoint},
		{"LeaseMembers", testLeaseMembers},
		{"LeaseSetup", testLeaseSetup},
		{"FencedApply", testFencedApply},
		{"SwitchPartitioned", testSwitchPartitioned},
		{"Paused", testPaused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// base is a time with nanoseconds, which a millisecond store would lose.
var base = time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC)

func usd(n int64) domain.Money { return domain.Money{Currency: "USD", Minor: n} }

// Order returns a valid order document for tests.
func Order(id, customer string, created time.Time, status domain.OrderStatus, rev uint64) views.OrderDoc {
	lines := []domain.OrderLine{
		{SKU: "SKU-" + id, Quantity: 2, UnitPrice: usd(1250)},
		{SKU: "GIFT.wrap_1", Quantity: 1, UnitPrice: usd(99)},
	}
	total, _ := domain.OrderTotal(lines)
	d := views.OrderDoc{
		OrderID: id, CustomerID: customer, Lines: lines, Total: total, Status: status,
		CreatedAt: created, UpdatedAt: created.Add(time.Duration(rev) * time.Second),
		Revision: rev, Position: 1000 + rev,
	}
	if status == domain.StatusRejected || status == domain.StatusCancelled {
		d.Reason = "because " + status.String()
	}
	return d
}

// Customer returns a valid customer document for tests.
func Customer(id string, registered uint64, rev uint64) views.CustomerDoc {
	return views.CustomerDoc{
		CustomerID: id, Name: "Customer " + id, Email: id + "@example.com",
		CreditLimit: usd(100_000), CreditReserved: usd(int64(rev) * 1000),
		CreatedAt: base.Add(time.Duration(registered) * time.Millisecond), UpdatedAt: base.Add(time.Hour),
		Revision: rev, Position: registered + rev, RegisteredPosition: registered,
	}
}

func live(t *testing.T, s views.Store, v views.View) views.Target {
	t.Helper()
	st, err := s.State(ctxFor(t), v)
	if err != nil {
		t.Fatalf("State(%s): %v", v, err)
	}
	if st.Live == 0 {
		t.Fatalf("State(%s): no live version: %+v", v, st)
	}
	return views.Target{View: v, Version: st.Live}
}

func apply(t *testing.T, s views.Store, target views.Target, b views.Batch) {
	t.Helper()
	if err := s.Apply(ctxFor(t), target, b); err != nil {
		t.Fatalf("Apply(%v): %v", target, err)
	}
}

func getOrder(t *testing.T, s views.Reader, id string) views.OrderDoc {
	t.Helper()
	d, err := s.GetOrder(ctxFor(t), id)
	if err != nil {
		t.Fatalf("GetOrder(%s): %v", id, err)
	}
	return d
}

func getCustomer(t *testing.T, s views.Reader, id string) views.CustomerDoc {
	t.Helper()
	d, err := s.GetCustomer(ctxFor(t), id)
	if err != nil {
		t.Fatalf("GetCustomer(%s): %v", id, err)
	}
	return d
}

func same(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func testRoundTrip(t *testing.T, s views.Store) {
	o := Order("o1", "c1", base, domain.StatusRejected, 1)
	c := Customer("c1", 7, 3)
	apply(t, s, live(t, s, views.Orders), views.Batch{Orders: []views.OrderDoc{o}, Checkpoint: 10})
	apply(t, s, live(t, s, views.Customers), views.Batch{Customers: []views.CustomerDoc{c}, Checkpoint: 10})

	same(t, "GetOrder", getOrder(t, s, "o1"), o)
	c.OrderCounts = views.OrderCounts{Total: 1, Rejected: 1}
	same(t, "GetCustomer", getCustomer(t, s, "c1"), c)
	if got := getCustomer(t, s, "c1").CreditAvailable(); got != usd(97_000) {
		t.Errorf("CreditAvailable = %v, want 97000 USD", got)
	}

	if _, err := s.GetOrder(ctxFor(t), "nope"); !errors.Is(err, views.ErrNotFound) {
		t.Errorf("GetOrder(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.GetCustomer(ctxFor(t), "nope"); !errors.Is(err, views.ErrNotFound) {
		t.Errorf("GetCustomer(missing) = %v, want ErrNotFound", err)
	}
}

func testGuards(t *testing.T, s views.Store) {
	orders, customers := live(t, s, views.Orders), live(t, s, views.Customers)
	v2 := Order("o1", "c1", base, domain.StatusApproved, 2)
	apply(t, s, orders, views.Batch{Orders: []views.OrderDoc{v2}})

	older := Order("o1", "c1", base, domain.StatusPending, 1)
	equal := Order("o1", "c1", base, domain.StatusCancelled, 2)
	apply(t, s, orders, views.Batch{Orders: []views.OrderDoc{older}})
	apply(t, s, orders, views.Batch{Orders: []views.OrderDoc{equal}})
	same(t, "after older and equal revisions", getOrder(t, s, "o1"), v2)

	v3 := Order("o1", "c1", base, domain.StatusCancelled, 3)
	apply(t, s, orders, views.Batch{Orders: []views.OrderDoc{v3}})
	same(t, "after a newer revision", getOrder(t, s, "o1"), v3)

	// A batch mixing a refused and an accepted upsert applies the one only.
	apply(t, s, orders, views.Batch{Orders: []views.OrderDoc{older, Order("o2", "c1", base, domain.StatusPending, 0)}})
	same(t, "refused upsert in a mixed batch", getOrder(t, s, "o1"), v3)
	getOrder(t, s, "o2")

	c5 := Customer("c1", 1, 5)
	apply(t, s, customers, views.Batch{Customers: []views.CustomerDoc{c5}})
	apply(t, s, customers, views.Batch{Customers: []views.CustomerDoc{Customer("c1", 1, 4)}})
	got := getCustomer(t, s, "c1")
	got.OrderCounts = views.OrderCounts{}
	same(t, "customer after an older revision", got, c5)
}

// testGuardsInBulk refuses stale documents scattered through a batch larger
// than one bulk write. Adapters meet the refusals differently — MongoDB
// answers a duplicate key for each stale upsert and writes the rest of the
// bulk, FerretDB fails at the first and skips the rest — and every path must
// end with each document at its newest revision.
//
// Concurrent writers of one document are not part of the contract (one lane
// writes a stream's document): on FerretDB, whose conditional replace is not
// atomic, a racing older write was seen to overwrite a newer one.
func testGuardsInBulk(t *testing.T, s views.Store) {
	orders := live(t, s, views.Orders)
	const n = 70 // more than one bulk write of 64 (FerretDB retries one refusal per round: keep it small)
	id := func(i int) string { return fmt.Sprintf("b%03d", i) }
	var first []views.OrderDoc
	for i := range n {
		if i%3 != 2 {
			first = append(first, Order(id(i), "c1", base, domain.StatusApproved, 5))
		}
	}
	apply(t, s, orders, views.Batch{Orders: first})

	// Stale, newer and new documents, interleaved.
	var mixed []views.OrderDoc
	want := map[string]uint64{}
	for i := range n {
		rev := []uint64{4, 6, 0}[i%3]
		mixed = append(mixed, Order(id(i), "c1", base, domain.StatusPending, rev))
		want[id(i)] = max(rev, []uint64{5, 5, 0}[i%3])
	}
	apply(t, s, orders, views.Batch{Orders: mixed})

	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	got, err := s.LoadOrders(ctxFor(t), orders, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if d, ok := got[id]; !ok || d.Revision != want[id] {
			t.Errorf("order %s: revision %d (stored: %v), want %d", id, d.Revision, ok, want[id])
		}
	}
}

// testRecreated: a document whose stream was deleted and created anew comes
// back at a newer revision with what never changes otherwise changed (an
// order's customer and creation time, a customer's registration). Every
// lookup then finds it as it is now, also when its batch mixes it with an
// ordinary update and a refused one.
func testRecreated(t *testing.T, s views.Store) {
	orders, customers := live(t, s, views.Orders), live(t, s, views.Customers)
	apply(t, s, orders, views.Batch{Orders: []views.OrderDoc{
		Order("o1", "c1", base, domain.StatusPending, 0),
		Order("o2", "c1", base, domain.StatusPending, 0),
		Order("o3", "c1", base, domain.StatusApproved, 5),
	}})
	moved := Order("o1", "c2", base.Add(time.Hour), domain.StatusPending, 3)
	updated := Order("o2", "c1", base, domain.StatusApproved, 1)
	apply(t, s, orders, views.Batch{Orders: []views.OrderDoc{moved, updated, Order("o3", "c1", base, domain.StatusCancelled, 4)}})
	same(t, "recreated order", getOrder(t, s, "o1"), moved)
	same(t, "updated order", getOrder(t, s, "o2"), updated)
	same(t, "order refused beside them", getOrder(t, s, "o3").Status, domain.StatusApproved)
	for _, tc := range []struct {
		q    views.OrderQuery
		want []string
	}{
		{views.OrderQuery{CustomerID: "c2", Limit: 10}, []string{"o1"}},
		{views.OrderQuery{CustomerID: "c2", Status: domain.StatusPending, Limit: 10}, []string{"o1"}},
		{views.OrderQuery{CustomerID: "c1", Status: domain.StatusPending, Limit: 10}, nil},
		{views.OrderQuery{CustomerID: "c1", Limit: 10}, []string{"o3", "o2"}},
		{views.OrderQuery{Status: domain.StatusPending, Limit: 10}, []string{"o1"}},
		{views.OrderQuery{Limit: 1}, []string{"o1"}}, // the newest now
	} {
		docs, err := s.ListOrders(ctxFor(t), tc.q)
		if err != nil {
			t.Fatalf("ListOrders(%+v): %v", tc.q, err)
		}
		if got := ids(docs); !slices.Equal(got, tc.want) {
			t.Errorf("ListOrders(%+v) = %v, want %v", tc.q, got, tc.want)
		}
	}

	apply(t, s, customers, views.Batch{Customers: []views.CustomerDoc{Customer("c1", 5, 1), Customer("c2", 7, 1)}})
	again := Customer("c1", 9, 4)
	apply(t, s, customers, views.Batch{Customers: []views.CustomerDoc{again, Customer("c2", 7, 2)}})
	for _, tc := range []struct {
		after uint64
		want  []string
	}{{0, []string{"c2", "c1"}}, {7, []string{"c1"}}, {9, nil}} {
		docs, err := s.ListCustomers(ctxFor(t), views.CustomerQuery{Limit: 10, After: tc.after})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range docs {
			got = append(got, d.CustomerID)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("ListCustomers after %d = %v, want %v", tc.after, got, tc.want)
		}
	}
	if got := getCustomer(t, s, "c1"); got.RegisteredPosition != 9 || got.Revision != 4 {
		t.Errorf("re-registered customer = %+v, want registered at 9, revision 4", got)
	}
}

// testApplyGroup: a store that writes several views' batches at once writes
// all of them or, when any fails, none.
func testApplyGroup(t *testing.T, s views.Store) {
	g, ok := s.(views.GroupWriter)
	if !ok {
		t.Skip("the store writes one view's batch at a time")
	}
	ctx := ctxFor(t)
	orders, customers := live(t, s, views.Orders), live(t, s, views.Customers)
	if err := g.ApplyGroup(ctx, []views.Write{
		{Target: orders, Batch: views.Batch{Orders: []views.OrderDoc{Order("o1", "c1", base, domain.StatusPending, 0)}, Checkpoint: 10}},
		{Target: customers, Batch: views.Batch{Customers: []views.CustomerDoc{Customer("c1", 1, 0)}, Checkpoint: 10}},
	}); err != nil {
		t.Fatal(err)
	}
	getOrder(t, s, "o1")
	getCustomer(t, s, "c1")
	checkpoint(t, s, 10)

	// The failing write comes last: what the first wrote is taken back.
	gone := views.Target{View: views.Orders, Version: orders.Version + 100}
	err := g.ApplyGroup(ctx, []views.Write{
		{Target: customers, Batch: views.Batch{Customers: []views.CustomerDoc{Customer("c2", 2, 0)}, Checkpoint: 20}},
		{Target: orders, Batch: views.Batch{Orders: []views.OrderDoc{Order("o2", "c2", base, domain.StatusPending, 0)}, Checkpoint: 20}},
		{Target: gone, Batch: views.Batch{Checkpoint: 20}},
	})
	if !errors.Is(err, views.ErrStale) {
		t.Fatalf("ApplyGroup with a version that is not there = %v, want ErrStale", err)
	}
	if _, err := s.GetCustomer(ctx, "c2"); !errors.Is(err, views.ErrNotFound) {
		t.Errorf("customer of the refused group: %v, want ErrNotFound", err)
	}
	if _, err := s.GetOrder(ctx, "o2"); !errors.Is(err, views.ErrNotFound) {
		t.Errorf("order of the refused group: %v, want ErrNotFound", err)
	}
	checkpoint(t, s, 10)
	if err := g.ApplyGroup(ctx, []views.Write{{Target: orders, Batch: views.Batch{Customers: []views.CustomerDoc{Customer("c3", 3, 0)}}}}); err == nil {
		t.Error("ApplyGroup of customers to the orders view: no error")
	}
}

func testLoad(t *testing.T, s views.Store) {
	orders, customers := live(t, s, views.Orders), live(t, s, views.Customers)
	var docs []views.OrderDoc
	var ids []string
	// More IDs than one lookup query takes in either adapter; few documents,
	// as FerretDB scans the collection for each write.
	for i := range 700 {
		id := fmt.Sprintf("o%03d", i)
		ids = append(ids, id)
		if i%25 == 0 {
			docs = append(docs, Order(id, "c1", base.Add(time.Duration(i)), domain.StatusPending, 0))
		}
	}
	apply(t, s, orders, views.Batch{Orders: docs})
	got, err := s.LoadOrders(ctxFor(t), orders, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(docs) {
		t.Fatalf("LoadOrders: %d documents, want %d", len(got), len(docs))
	}
	for _, d := range docs {
		same(t, "LoadOrders "+d.OrderID, got[d.OrderID], d)
	}

	c := Customer("c1", 3, 1)
	apply(t, s, customers, views.Batch{Customers: []views.CustomerDoc{c}})
	gotC, err := s.LoadCustomers(ctxFor(t), customers, []string{"c1", "c2"})
	if err != nil {
		t.Fatal(err)
	}
	same(t, "LoadCustomers", gotC, map[string]views.CustomerDoc{"c1": c})
}

func testListOrders(t *testing.T, s views.Store) {
	orders := live(t, s, views.Orders)
	statuses := []domain.OrderStatus{domain.StatusPending, domain.StatusApproved, domain.StatusRejected, domain.StatusCancelled}
	var all []views.OrderDoc
	for i := range 60 {
		// Every third order shares its creation time with the previous
		// one, so the order ID has to break ties.
		created := base.Add(time.Duration(i-i/3) * time.Microsecond)
		all = append(all, Order(fmt.Sprintf("o%02d", (i*37)%60), fmt.Sprintf("c%d", i%3), created, statuses[i%len(statuses)], uint64(i%3)))
	}
	apply(t, s, orders, views.Batch{Orders: all})

	newestFirst := slices.Clone(all)
	slices.SortFunc(newestFirst, func(a, b views.OrderDoc) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return -cmpString(a.OrderID, b.OrderID)
	})
	for _, customer := range []string{"", "c1"} {
		for _, status := range []domain.OrderStatus{domain.StatusNone, domain.StatusApproved} {
			var want []views.OrderDoc
			for _, d := range newestFirst {
				if (customer == "" || d.CustomerID == customer) && (status == domain.StatusNone || d.Status == status) {
					want = append(want, d)
				}
			}
			q := views.OrderQuery{CustomerID: customer, Status: status, Limit: 7}
			var got []views.OrderDoc
			for page := 0; ; page++ {
				docs, err := s.ListOrders(ctxFor(t), q)
				if err != nil {
					t.Fatalf("ListOrders(%+v): %v", q, err)
				}
				if len(docs) > q.Limit {
					t.Fatalf("ListOrders(%+v): %d documents over the limit", q, len(docs))
				}
				got = append(got, docs...)
				if len(docs) < q.Limit || page > 100 {
					break
				}
				cursor := docs[len(docs)-1].Cursor()
				q.After = &cursor
			}
			same(t, fmt.Sprintf("ListOrders(customer %q, status %v) paged by 7", customer, status), ids(got), ids(want))
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ListOrders(customer %q, status %v): documents differ from those stored", customer, status)
			}
		}
	}
	if _, err := s.ListOrders(ctxFor(t), views.OrderQuery{}); err == nil {
		t.Error("ListOrders with limit 0: no error")
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func ids(docs []views.OrderDoc) []string {
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = d.OrderID
	}
	return out
}

func testListCustomers(t *testing.T, s views.Store) {
	customers, orders := live(t, s, views.Customers), live(t, s, views.Orders)
	var docs []views.CustomerDoc
	for i := range 25 {
		// IDs in the opposite order to registration: the listing must
		// follow registration.
		docs = append(docs, Customer(fmt.Sprintf("c%02d", 99-i), uint64(10+i*3), 1))
	}
	apply(t, s, customers, views.Batch{Customers: docs})
	apply(t, s, orders, views.Batch{Orders: []views.OrderDoc{
		Order("o1", "c99", base, domain.StatusPending, 0),
		Order("o2", "c99", base, domain.StatusApproved, 1),
		Order("o3", "c99", base, domain.StatusApproved, 1),
		Order("o4", "c98", base, domain.StatusCancelled, 2),
		Order("o5", "c75", base, domain.StatusRejected, 1),
	}})
	counts := map[string]views.OrderCounts{
		"c99": {Total: 3, Pending: 1, Approved: 2},
		"c98": {Total: 1, Cancelled: 1},
		"c75": {Total: 1, Rejected: 1},
	}

	var got []views.CustomerDoc
	q := views.CustomerQuery{Limit: 10}
	for {
		page, err := s.ListCustomers(ctxFor(t), q)
		if err != nil {
			t.Fatalf("ListCustomers(%+v): %v", q, err)
		}
		got = append(got, page...)
		if len(page) < q.Limit {
			break
		}
		q.After = page[len(page)-1].RegisteredPosition
	}
	want := slices.Clone(docs)
	for i := range want {
		want[i].OrderCounts = counts[want[i].CustomerID]
	}
	same(t, "ListCustomers paged by 10", got, want)
	same(t, "GetCustomer counts", getCustomer(t, s, "c99").OrderCounts, counts["c99"])
}

func testCheckpoint(t *testing.T, s views.Store) {
	ctx := ctxFor(t)
	orders, customers := live(t, s, views.Orders), live(t, s, views.Customers)
	if cp, err := s.Checkpoint(ctx); err != nil || cp != 0 {
		t.Fatalf("Checkpoint of a new store = %d, %v; want 0", cp, err)
	}
	apply(t, s, orders, views.Batch{Checkpoint: 50})
	if cp, _ := s.Checkpoint(ctx); cp != 0 {
		t.Errorf("Checkpoint with customers at 0 = %d, want 0 (the lowest view)", cp)
	}
	apply(t, s, customers, views.Batch{Customers: []views.CustomerDoc{Customer("c1", 1, 0)}, Checkpoint: 40})
	if cp, _ := s.Checkpoint(ctx); cp != 40 {
		t.Errorf("Checkpoint = %d, want 40", cp)
	}
	apply(t, s, orders, views.Batch{Checkpoint: 45})
	st, err := s.State(ctx, views.Orders)
	if err != nil || st.LiveCheckpoint != 50 || st.Building != 0 || st.Partitions != nil {
		t.Errorf("State(orders) = %+v, %v; want live checkpoint 50 (a lower one leaves it), nothing building, no partitions", st, err)
	}
}

func testDeadLetters(t *testing.T, s views.Store) {
	orders := live(t, s, views.Orders)
	letter := func(id string, pos uint64) views.DeadLetter {
		return views.DeadLetter{
			EventID: id, Stream: "order-x", Revision: 3, Position: pos, Type: domain.TypeOrderPlaced,
			RecordedAt: base, Error: "decode: unexpected end of JSON input", Data: []byte(`{"order_id":`), Metadata: []byte(`{"schema":2}`),
		}
	}
	a, b := letter("e2", 200), letter("e1", 100)
	apply(t, s, orders, views.Batch{DeadLetters: []views.DeadLetter{a}, Checkpoint: 200})
	apply(t, s, orders, views.Batch{DeadLetters: []views.DeadLetter{a, b}, Checkpoint: 200})
	got, err := s.DeadLetters(ctxFor(t), views.Orders)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "DeadLetters", got, []views.DeadLetter{b, a})
}

// testSwitchLiveAhead: a live version past the event store's head (restored
// from an older backup) gives way to a shadow behind it when the caller
// says so, and the view's checkpoint goes back to the shadow's.
func testSwitchLiveAhead(t *testing.T, s views.Store) {
	ctx := ctxFor(t)
	old := live(t, s, views.Customers)
	apply(t, s, old, views.Batch{Customers: []views.CustomerDoc{Customer("gone", 1, 0)}, Checkpoint: 90})
	shadow, err := s.BeginRebuild(ctx, views.Customers)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, s, shadow, views.Batch{Checkpoint: 40})
	if err := s.Switch(ctx, shadow, false); !errors.Is(err, views.ErrBehind) {
		t.Fatalf("Switch behind without liveAhead = %v, want ErrBehind", err)
	}
	if err := s.Switch(ctx, shadow, true); err != nil {
		t.Fatalf("Switch with liveAhead: %v", err)
	}
	if st, _ := s.State(ctx, views.Customers); st.Live != shadow.Version || st.LiveCheckpoint != 40 {
		t.Errorf("State after the switch = %+v, want version %d live at 40", st, shadow.Version)
	}
	if _, err := s.GetCustomer(ctx, "gone"); !errors.Is(err, views.ErrNotFound) {
		t.Errorf("the old version's customer is still served: %v", err)
	}
}

func testRebuild(t *testing.T, s views.Store) {
	ctx := ctxFor(t)
	old := live(t, s, views.Orders)
	apply(t, s, old, views.Batch{Orders: []views.OrderDoc{Order("o1", "c1", base, domain.StatusPending, 0)}, Checkpoint: 30})

	shadow, err := s.BeginRebuild(ctx, views.Orders)
	if err != nil {
		t.Fatal(err)
	}
	if shadow.View != views.Orders || shadow.Version <= old.Version {
		t.Fatalf("BeginRebuild = %+v, want a version of orders above %d", shadow, old.Version)
	}
	if st, _ := s.State(ctx, views.Orders); st.Building != shadow.Version || st.BuildingCheckpoint != 0 || st.Live != old.Version {
		t.Fatalf("State after BeginRebuild = %+v", st)
	}
	approved := Order("o1", "c1", base, domain.StatusApproved, 1)
	apply(t, s, shadow, views.Batch{Orders: []views.OrderDoc{approved}, Checkpoint: 20})
	if d := getOrder(t, s, "o1"); d.Status != domain.StatusPending {
		t.Errorf("reads went to the shadow before the switch: %v", d.Status)
	}
	if err := s.Switch(ctx, shadow, false); !errors.Is(err, views.ErrBehind) {
		t.Fatalf("Switch with the shadow at 20 and live at 30 = %v, want ErrBehind", err)
	}
	apply(t, s, shadow, views.Batch{Checkpoint: 30})
	if err := s.Switch(ctx, shadow, false); err != nil {
		t.Fatalf("Switch: %v", err)
	}
	same(t, "order after the switch", getOrder(t, s, "o1"), approved)
	if st, _ := s.State(ctx, views.Orders); st.Live != shadow.Version || st.LiveCheckpoint != 30 || st.Building != 0 {
		t.Errorf("State after Switch = %+v", st)
	}
	if err := s.Apply(ctx, old, views.Batch{Checkpoint: 40}); !errors.Is(err, views.ErrStale) {
		t.Errorf("Apply to the replaced version = %v, want ErrStale", err)
	}
	if _, err := s.LoadOrders(ctx, old, []string{"o1"}); !errors.Is(err, views.ErrStale) {
		t.Errorf("LoadOrders from the replaced version = %v, want ErrStale", err)
	}
	if err := s.Switch(ctx, shadow, false); !errors.Is(err, views.ErrStale) {
		t.Errorf("Switch to the live version again = %v, want ErrStale", err)
	}

	// An interrupted rebuild is abandoned by the next one, whose version
	// starts empty; the abandoned version is no longer writable.
	first, err := s.BeginRebuild(ctx, views.Orders)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, s, first, views.Batch{Orders: []views.OrderDoc{Order("o9", "c1", base, domain.StatusPending, 0)}, Checkpoint: 5})
	second, err := s.BeginRebuild(ctx, views.Orders)
	if err != nil {
		t.Fatal(err)
	}
	if second.Version <= first.Version {
		t.Fatalf("second BeginRebuild = %+v, want a version above %d", second, first.Version)
	}
	if err := s.Apply(ctx, first, views.Batch{Checkpoint: 6}); !errors.Is(err, views.ErrStale) {
		t.Errorf("Apply to an abandoned shadow = %v, want ErrStale", err)
	}
	if got, err := s.LoadOrders(ctx, second, []string{"o9", "o1"}); err != nil || len(got) != 0 {
		t.Errorf("new shadow holds %v, %v; want nothing", got, err)
	}
	// Customers keep their own versions.
	if st, _ := s.State(ctx, views.Customers); st.Building != 0 {
		t.Errorf("rebuilding orders touched customers: %+v", st)
	}
}

// testReadsDuringSwitch switches versions over and over while readers read:
// every read must see one complete version, never an empty or dropped one.
func testReadsDuringSwitch(t *testing.T, s views.Store) {
	const n = 12
	fill := func(target views.Target, status domain.OrderStatus, cp uint64) {
		var docs []views.OrderDoc
		for i := range n {
			docs = append(docs, Order(fmt.Sprintf("o%02d", i), "c1", base.Add(time.Duration(i)), status, 0))
		}
		apply(t, s, target, views.Batch{Orders: docs, Checkpoint: cp})
	}
	fill(live(t, s, views.Orders), domain.StatusPending, 1)
	apply(t, s, live(t, s, views.Customers), views.Batch{Customers: []views.CustomerDoc{Customer("c1", 1, 0)}, Checkpoint: 1})

	ctx, cancel := context.WithCancel(ctxFor(t))
	var wg sync.WaitGroup
	var reads atomic.Int64
	for r := range 3 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				var err error
				switch r {
				case 0:
					_, err = s.GetOrder(ctx, fmt.Sprintf("o%02d", i%n))
				case 1:
					var docs []views.OrderDoc
					if docs, err = s.ListOrders(ctx, views.OrderQuery{Limit: n + 1}); err == nil && len(docs) != n {
						err = fmt.Errorf("ListOrders returned %d of %d orders", len(docs), n)
					}
				case 2:
					var d views.CustomerDoc
					if d, err = s.GetCustomer(ctx, "c1"); err == nil && d.OrderCounts.Total != n {
						err = fmt.Errorf("customer counts %d of %d orders", d.OrderCounts.Total, n)
					}
				}
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					t.Errorf("read during switches: %v", err)
					cancel()
					return
				}
				reads.Add(1)
			}
		})
	}
	for i := range 5 {
		shadow, err := s.BeginRebuild(ctx, views.Orders)
		if err != nil {
			t.Error(err)
			break
		}
		fill(shadow, domain.StatusApproved, uint64(2+i))
		if err := s.Switch(ctx, shadow, false); err != nil {
			t.Error(err)
			break
		}
	}
	cancel()
	wg.Wait()
	if reads.Load() == 0 {
		t.Error("no read completed during the switches")
	}
}

func testWrongView(t *testing.T, s views.Store) {
	err := s.Apply(ctxFor(t), live(t, s, views.Customers), views.Batch{Orders: []views.OrderDoc{Order("o1", "c1", base, domain.StatusPending, 0)}})
	if err == nil {
		t.Error("Apply of orders to the customers view: no error")
	}
}

// testPaused: a pause is kept per view, set twice or cleared twice
// without error, and kept through a checkpoint and a switch to a rebuilt
// version.
func testPaused(t *testing.T, s views.Store) {
	ctx := ctxFor(t)
	paused := func(v views.View) bool {
		t.Helper()
		st, err := s.State(ctx, v)
		if err != nil {
			t.Fatal(err)
		}
		return st.Paused
	}
	set := func(v views.View, p bool) {
		t.Helper()
		if err := s.SetPaused(ctx, v, p); err != nil {
			t.Fatalf("SetPaused(%s, %v): %v", v, p, err)
		}
	}
	if paused(views.Orders) || paused(views.Customers) {
		t.Fatal("a new store has a view paused")
	}
	set(views.Orders, true)
	set(views.Orders, true)
	if !paused(views.Orders) || paused(views.Customers) {
		t.Fatalf("after pausing orders: orders %v, customers %v", paused(views.Orders), paused(views.Customers))
	}
	apply(t, s, live(t, s, views.Orders), views.Batch{Checkpoint: 5})
	shadow, err := s.BeginRebuild(ctx, views.Orders)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, s, shadow, views.Batch{Checkpoint: 5})
	if err := s.Switch(ctx, shadow, false); err != nil {
		t.Fatal(err)
	}
	if !paused(views.Orders) {
		t.Error("a checkpoint and a switch resumed orders")
	}
	set(views.Orders, false)
	set(views.Orders, false)
	if paused(views.Orders) {
		t.Error("orders still paused after SetPaused(false)")
	}
	if err := s.SetPaused(ctx, "payments", true); err == nil {
		t.Error("SetPaused of an unknown view succeeded")
	}
}

// RunReopen checks that a store opened again on the same data (a restart, or
// a second process such as a rebuild beside the running system) opens, and
// serves what the first one wrote, pauses included. open must return a store
// on the same data every time it is called.
func RunReopen(t *testing.T, open func(t *testing.T) views.Store) {
	ctx := ctxFor(t)
	first := open(t)
	st, err := first.State(ctx, views.Orders)
	if err != nil {
		t.Fatal(err)
	}
	want := Order("o-1", "c-1", base, domain.StatusApproved, 1)
	if err := first.Apply(ctx, views.Target{View: views.Orders, Version: st.Live}, views.Batch{Orders: []views.OrderDoc{want}, Checkpoint: 7}); err != nil {
		t.Fatal(err)
	}
	if err := first.SetPaused(ctx, views.Customers, true); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // open twice while the first is still open, then again
		again := open(t)
		got, err := again.GetOrder(ctx, "o-1")
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("reopen %d: GetOrder = %+v, %v", i, got, err)
		}
		if st, err := again.State(ctx, views.Customers); err != nil || !st.Paused {
			t.Fatalf("reopen %d: customers %+v, %v; want paused", i, st, err)
		}
		if err := again.Close(); err != nil {
			t.Fatalf("reopen %d: close: %v", i, err)
		}
	}
}
