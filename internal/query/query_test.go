package query_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/views"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// id returns the n-th test UUID of a kind (1 customer, 2 order).
func id(kind, n int) string { return fmt.Sprintf("%08d-0000-5000-8000-%012d", kind, n) }

func usd(minor int64) domain.Money { return domain.Money{Currency: "USD", Minor: minor} }

func orderDoc(n, customer int, st domain.OrderStatus) views.OrderDoc {
	return views.OrderDoc{
		OrderID: id(2, n), CustomerID: id(1, customer),
		Lines:  []domain.OrderLine{{SKU: "SKU-1", Quantity: int32(n%5 + 1), UnitPrice: usd(100)}},
		Total:  usd(int64(n%5+1) * 100),
		Status: st, CreatedAt: t0.Add(time.Duration(n) * time.Second), UpdatedAt: t0.Add(time.Duration(n) * time.Second),
		Revision: 1, Position: uint64(n),
	}
}

func customerDoc(n int) views.CustomerDoc {
	return views.CustomerDoc{
		CustomerID: id(1, n), Name: fmt.Sprintf("Customer %d", n), Email: fmt.Sprintf("c%d@example.com", n),
		CreditLimit: usd(10_000), CreditReserved: usd(2_500), CreatedAt: t0, UpdatedAt: t0,
		Revision: 2, Position: uint64(n), RegisteredPosition: uint64(n),
	}
}

func TestGetOrderAndCustomer(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		e.apply(10, []views.OrderDoc{orderDoc(1, 1, domain.StatusApproved), orderDoc(2, 1, domain.StatusPending)},
			[]views.CustomerDoc{customerDoc(1)})

		got, err := e.client.GetOrder(e.ctx, &orderlyv1.GetOrderRequest{OrderId: id(2, 1)})
		if err != nil {
			t.Fatal(err)
		}
		o := got.Order
		if o.OrderId != id(2, 1) || o.CustomerId != id(1, 1) || o.Status != orderlyv1.OrderStatus_ORDER_STATUS_APPROVED ||
			o.Total.MinorUnits != 200 || o.Total.CurrencyCode != "USD" || len(o.Lines) != 1 || o.Lines[0].Quantity != 2 ||
			!o.CreatedAt.AsTime().Equal(t0.Add(time.Second)) || o.Revision != 1 {
			t.Fatalf("GetOrder = %v", o)
		}

		c, err := e.client.GetCustomer(e.ctx, &orderlyv1.GetCustomerRequest{CustomerId: id(1, 1)})
		if err != nil {
			t.Fatal(err)
		}
		cu := c.Customer
		if cu.Name != "Customer 1" || cu.CreditLimit.MinorUnits != 10_000 || cu.CreditReserved.MinorUnits != 2_500 ||
			cu.CreditAvailable.MinorUnits != 7_500 || cu.OrderCounts.GetTotal() != 2 || cu.OrderCounts.GetApproved() != 1 ||
			cu.OrderCounts.GetPending() != 1 {
			t.Fatalf("GetCustomer = %v", cu)
		}

		// The same over REST, in lowerCamel JSON with money exact.
		var rest struct {
			Order struct {
				OrderID string `json:"orderId"`
				Status  string `json:"status"`
				Total   struct {
					CurrencyCode string `json:"currencyCode"`
					MinorUnits   string `json:"minorUnits"`
				} `json:"total"`
			} `json:"order"`
		}
		if code, raw := e.rest(http.MethodGet, "/v1/orders/"+id(2, 1), "", &rest); code != http.StatusOK ||
			rest.Order.OrderID != id(2, 1) || rest.Order.Status != "ORDER_STATUS_APPROVED" || rest.Order.Total.MinorUnits != "200" {
			t.Fatalf("GET order = %d %s", code, raw)
		}
	})
}

func TestReadErrors(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		missing := id(2, 999)
		for _, tc := range []struct {
			name  string
			call  func() error
			code  codes.Code
			path  string
			http  int
			field string
		}{
			{"unknown order", func() error {
				_, err := e.client.GetOrder(e.ctx, &orderlyv1.GetOrderRequest{OrderId: missing})
				return err
			}, codes.NotFound, "/v1/orders/" + missing, http.StatusNotFound, ""},
			{"malformed order id", func() error {
				_, err := e.client.GetOrder(e.ctx, &orderlyv1.GetOrderRequest{OrderId: "nope"})
				return err
			}, codes.InvalidArgument, "/v1/orders/nope", http.StatusBadRequest, "order_id"},
			{"unknown customer", func() error {
				_, err := e.client.GetCustomer(e.ctx, &orderlyv1.GetCustomerRequest{CustomerId: id(1, 999)})
				return err
			}, codes.NotFound, "/v1/customers/" + id(1, 999), http.StatusNotFound, ""},
			{"malformed customer filter", func() error {
				_, err := e.client.ListOrders(e.ctx, &orderlyv1.ListOrdersRequest{CustomerId: "x"})
				return err
			}, codes.InvalidArgument, "/v1/orders?customer_id=x", http.StatusBadRequest, "customer_id"},
			{"unknown status", func() error {
				_, err := e.client.ListOrders(e.ctx, &orderlyv1.ListOrdersRequest{Status: 42})
				return err
			}, codes.InvalidArgument, "/v1/orders?status=42", http.StatusBadRequest, "status"},
			{"page too large", func() error {
				_, err := e.client.ListCustomers(e.ctx, &orderlyv1.ListCustomersRequest{PageSize: 501})
				return err
			}, codes.InvalidArgument, "/v1/customers?page_size=501", http.StatusBadRequest, "page_size"},
			{"forged token", func() error {
				_, err := e.client.ListCustomers(e.ctx, &orderlyv1.ListCustomersRequest{PageToken: "eyJwIjo1fQ.AAAAAAAAAAAAAAAAAAAAAA"})
				return err
			}, codes.InvalidArgument, "/v1/customers?page_token=eyJwIjo1fQ.AAAAAAAAAAAAAAAAAAAAAA", http.StatusBadRequest, "page_token"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if err := tc.call(); status.Code(err) != tc.code {
					t.Fatalf("gRPC: %v, want %v", err, tc.code)
				}
				e.with(t).wantRESTError(http.MethodGet, tc.path, tc.http, tc.field)
			})
		}
	})
}

// TestRESTRefusesWhatItDoesNotRoute: a query parameter naming no field is
// refused like an unknown body field (grpc-gateway would ignore it), and a
// method a path does not take is 405 with the Allow header, not 501.
func TestRESTRefusesWhatItDoesNotRoute(t *testing.T) {
	e := start(t, sqliteStore(t))
	e.apply(1, []views.OrderDoc{orderDoc(1, 1, domain.StatusApproved)}, nil)

	for path, field := range map[string]string{
		"/v1/orders?pagesize=5":                       "pagesize",
		"/v1/orders?page_size=5&customer.id=x":        "customer.id",
		"/v1/orders/" + id(2, 1) + "?min_postion=1":   "min_postion",
		"/v1/orders/" + id(2, 1) + "/history?pge=2":   "pge",
		"/v1/orders/" + id(2, 1) + "/at?revision[0]=": "revision[0]",
	} {
		e.wantRESTError(http.MethodGet, path, http.StatusBadRequest, field)
	}
	for _, path := range []string{"/v1/orders?pageSize=5&customerId=" + id(1, 1), "/v1/orders?page_size=5&customer_id=" + id(1, 1)} {
		var page struct {
			Orders []struct{ OrderID string }
		}
		if code, raw := e.rest(http.MethodGet, path, "", &page); code != http.StatusOK || len(page.Orders) != 1 || page.Orders[0].OrderID != id(2, 1) {
			t.Errorf("GET %s = %d %s, want the one order", path, code, raw)
		}
	}

	for path, allow := range map[string]string{"/v1/orders": "GET", "/v1/orders/" + id(2, 1): "GET"} {
		req, err := http.NewRequestWithContext(e.ctx, http.MethodDelete, e.http+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != allow {
			t.Errorf("DELETE %s = %s, Allow %q; want 405, Allow %q", path, resp.Status, resp.Header.Get("Allow"), allow)
		}
	}
	e.wantRESTError(http.MethodDelete, "/v1/orders", http.StatusMethodNotAllowed, "")
	e.wantRESTError(http.MethodDelete, "/v1/nothing", http.StatusNotFound, "")
}

// TestPaginationWhileOrdersArrive walks 1,000 orders (150 on FerretDB) in
// pages while newer orders keep arriving: every original order is seen
// exactly once, in order.
func TestPaginationWhileOrdersArrive(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		n := 1000
		if e.small() {
			n = 150
		}
		docs := make([]views.OrderDoc, n)
		for i := range docs {
			docs[i] = orderDoc(i+1, i%3, []domain.OrderStatus{domain.StatusPending, domain.StatusApproved, domain.StatusRejected, domain.StatusCancelled}[i%4])
		}
		e.apply(1, docs, nil)

		// New orders land while the client pages.
		var wg sync.WaitGroup
		stop := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := n + 1; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				e.apply(1, []views.OrderDoc{orderDoc(i, i%3, domain.StatusPending)}, nil)
				time.Sleep(time.Millisecond)
			}
		}()

		seen := map[string]bool{}
		var prev *orderlyv1.Order
		var pages int
		req := &orderlyv1.ListOrdersRequest{PageSize: 37}
		for {
			resp, err := e.client.ListOrders(e.ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, o := range resp.Orders {
				if seen[o.OrderId] {
					t.Fatalf("order %s served twice", o.OrderId)
				}
				seen[o.OrderId] = true
				if prev != nil && !o.CreatedAt.AsTime().Before(prev.CreatedAt.AsTime()) {
					t.Fatalf("order %s (%v) after %s (%v): not newest first", o.OrderId, o.CreatedAt.AsTime(), prev.OrderId, prev.CreatedAt.AsTime())
				}
				prev = o
			}
			if resp.NextPageToken == "" {
				break
			}
			req.PageToken = resp.NextPageToken
		}
		close(stop)
		wg.Wait()
		for _, d := range docs {
			if !seen[d.OrderID] {
				t.Fatalf("order %s never served (%d pages)", d.OrderID, pages)
			}
		}
		if pages < n/37 {
			t.Fatalf("%d pages for %d orders of 37", pages, n)
		}

		// Filters page too, and a token only works with the filters it was
		// issued for.
		filtered := &orderlyv1.ListOrdersRequest{CustomerId: id(1, 1), Status: orderlyv1.OrderStatus_ORDER_STATUS_APPROVED, PageSize: 10}
		var count int
		for {
			resp, err := e.client.ListOrders(e.ctx, filtered)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range resp.Orders {
				if o.CustomerId != id(1, 1) || o.Status != orderlyv1.OrderStatus_ORDER_STATUS_APPROVED {
					t.Fatalf("filter leaked %v", o)
				}
				count++
			}
			if resp.NextPageToken == "" {
				break
			}
			foreign := &orderlyv1.ListOrdersRequest{CustomerId: id(1, 2), PageToken: resp.NextPageToken}
			if _, err := e.client.ListOrders(e.ctx, foreign); status.Code(err) != codes.InvalidArgument {
				t.Fatalf("token reused with other filters: %v", err)
			}
			filtered.PageToken = resp.NextPageToken
		}
		var want int
		for i := range n {
			if i%3 == 1 && i%4 == 1 {
				want++
			}
		}
		if count != want {
			t.Fatalf("filtered walk saw %d orders, want %d", count, want)
		}

		// REST pages the same way.
		q := url.Values{"customer_id": {id(1, 1)}, "status": {"ORDER_STATUS_APPROVED"}, "page_size": {"500"}}
		var page struct {
			Orders []struct {
				OrderID string `json:"orderId"`
			} `json:"orders"`
			NextPageToken string `json:"nextPageToken"`
		}
		if code, raw := e.rest(http.MethodGet, "/v1/orders?"+q.Encode(), "", &page); code != http.StatusOK || len(page.Orders) != want || page.NextPageToken != "" {
			t.Fatalf("REST filtered list = %d, %d orders (want %d): %.200s", code, len(page.Orders), want, raw)
		}
	})
}

func TestListCustomers(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		var docs []views.CustomerDoc
		for i := 1; i <= 25; i++ {
			docs = append(docs, customerDoc(i))
		}
		e.apply(1, nil, docs)
		var got []string
		req := &orderlyv1.ListCustomersRequest{PageSize: 10}
		for {
			resp, err := e.client.ListCustomers(e.ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range resp.Customers {
				got = append(got, c.CustomerId)
			}
			if resp.NextPageToken == "" {
				break
			}
			req.PageToken = resp.NextPageToken
		}
		if len(got) != 25 {
			t.Fatalf("listed %d customers, want 25", len(got))
		}
		for i, c := range got {
			if c != id(1, i+1) {
				t.Fatalf("customer %d = %s, want registration order", i, c)
			}
		}
	})
}

// TestMinPosition: a read with min_position waits for the views to reach it,
// and gives up with DeadlineExceeded (REST 504) when they do not in time.
func TestMinPosition(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		e.apply(100, []views.OrderDoc{orderDoc(1, 1, domain.StatusPending)}, []views.CustomerDoc{customerDoc(1)})

		if _, err := e.client.GetOrder(e.ctx, &orderlyv1.GetOrderRequest{OrderId: id(2, 1), MinPosition: 100}); err != nil {
			t.Fatalf("position already reached: %v", err)
		}
		short, cancel := context.WithTimeout(e.ctx, 200*time.Millisecond)
		defer cancel()
		_, err := e.client.GetOrder(short, &orderlyv1.GetOrderRequest{OrderId: id(2, 1), MinPosition: 101})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("position not reached: %v, want DeadlineExceeded", err)
		}
		// Without a deadline the server's bound (1 s here) applies.
		e.wantRESTError(http.MethodGet, "/v1/orders/"+id(2, 1)+"?min_position=101", http.StatusGatewayTimeout, "")

		// A waiting read returns as soon as the projection catches up.
		done := make(chan *orderlyv1.Order, 1)
		go func() {
			resp, err := e.client.GetOrder(e.ctx, &orderlyv1.GetOrderRequest{OrderId: id(2, 1), MinPosition: 150})
			if err != nil {
				t.Errorf("waiting read: %v", err)
				done <- nil
				return
			}
			done <- resp.Order
		}()
		time.Sleep(50 * time.Millisecond)
		approved := orderDoc(1, 1, domain.StatusApproved)
		approved.Revision = 2
		e.apply(150, []views.OrderDoc{approved}, nil)
		select {
		case o := <-done:
			if o == nil || o.Status != orderlyv1.OrderStatus_ORDER_STATUS_APPROVED {
				t.Fatalf("read after catch-up = %v", o)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("waiting read did not return after the views caught up")
		}
	})
}
