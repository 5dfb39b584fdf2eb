package query_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/hostiletest"
)

// TestHostileQueries sends each query the largest request the transport
// accepts, every string field at its longest, over gRPC and REST: each is
// refused with a short answer, and the process allocates a bounded number of
// bytes per byte of request. Not parallel: it counts the whole process's
// allocations.
func TestHostileQueries(t *testing.T) {
	e := start(t, sqliteStore(t))
	const maxMessage = hostiletest.MaxMessage
	long := func(n int) string { return strings.Repeat("\x01", n) }
	half, third := long(maxMessage/2-100), long(maxMessage/3-100)
	okID := "0b6f1c9e-4d2a-5c8e-9f10-2a3b4c5d6e7f"

	grpcCases := []struct {
		name string
		req  proto.Message
		call func(proto.Message) error
	}{
		{"GetOrder", &orderlyv1.GetOrderRequest{OrderId: long(maxMessage - 100)}, func(m proto.Message) error {
			_, err := e.client.GetOrder(e.ctx, m.(*orderlyv1.GetOrderRequest))
			return err
		}},
		{"ListOrders", &orderlyv1.ListOrdersRequest{CustomerId: half, PageToken: half}, func(m proto.Message) error {
			_, err := e.client.ListOrders(e.ctx, m.(*orderlyv1.ListOrdersRequest))
			return err
		}},
		{"ListOrders token", &orderlyv1.ListOrdersRequest{CustomerId: okID, PageToken: long(maxMessage/2) + "." + long(maxMessage/2-200)}, func(m proto.Message) error {
			_, err := e.client.ListOrders(e.ctx, m.(*orderlyv1.ListOrdersRequest))
			return err
		}},
		{"GetCustomer", &orderlyv1.GetCustomerRequest{CustomerId: long(maxMessage - 100)}, func(m proto.Message) error {
			_, err := e.client.GetCustomer(e.ctx, m.(*orderlyv1.GetCustomerRequest))
			return err
		}},
		{"ListCustomers", &orderlyv1.ListCustomersRequest{PageToken: long(maxMessage/2) + "." + long(maxMessage/2-200)}, func(m proto.Message) error {
			_, err := e.client.ListCustomers(e.ctx, m.(*orderlyv1.ListCustomersRequest))
			return err
		}},
		{"GetOrderHistory", &orderlyv1.GetOrderHistoryRequest{OrderId: third, PageToken: third + "." + third}, func(m proto.Message) error {
			_, err := e.client.GetOrderHistory(e.ctx, m.(*orderlyv1.GetOrderHistoryRequest))
			return err
		}},
		{"GetOrderAt", &orderlyv1.GetOrderAtRequest{OrderId: long(maxMessage - 100), Point: &orderlyv1.GetOrderAtRequest_AsOf{AsOf: timestamppb.Now()}}, func(m proto.Message) error {
			_, err := e.client.GetOrderAt(e.ctx, m.(*orderlyv1.GetOrderAtRequest))
			return err
		}},
		{"WatchOrder", &orderlyv1.WatchOrderRequest{OrderId: long(maxMessage - 100)}, func(m proto.Message) error {
			w, err := e.client.WatchOrder(e.ctx, m.(*orderlyv1.WatchOrderRequest))
			if err != nil {
				return err
			}
			_, err = w.Recv()
			return err
		}},
	}
	for _, c := range grpcCases {
		hostiletest.CheckGRPC(t, "gRPC "+c.name, c.req, c.call)
	}

	const maxURL = hostiletest.MaxURL
	esc := func(n int) string { return url.PathEscape(long(n / 3)) } // 3 bytes a character
	restCases := []struct{ name, path string }{
		{"GetOrder", "/v1/orders/" + esc(maxURL)},
		{"ListOrders", "/v1/orders?customer_id=" + esc(maxURL/2) + "&page_token=" + esc(maxURL/2)},
		{"ListOrders unknown parameter", "/v1/orders?" + strings.Repeat("x", maxURL) + "=1"},
		{"GetCustomer", "/v1/customers/" + esc(maxURL)},
		{"ListCustomers", "/v1/customers?page_token=" + strings.Repeat("A", maxURL/2) + "." + strings.Repeat("A", maxURL/2)},
		{"GetOrderHistory", "/v1/orders/" + esc(maxURL/2) + "/history?page_token=" + esc(maxURL/2)},
		{"GetOrderAt", "/v1/orders/" + esc(maxURL/2) + "/at?revision=" + strings.Repeat("9", maxURL/2)},
		{"WatchOrder", "/v1/orders/" + esc(maxURL) + ":watch"},
	}
	for _, c := range restCases {
		hostiletest.CheckREST(t, e.ctx, "REST "+c.name, http.MethodGet, e.http+c.path, "")
	}
}
