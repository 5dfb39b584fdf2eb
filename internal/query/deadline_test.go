package query_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/views"
)

// testStoreTimeout is the store timeout of these tests; gRPC calls are made
// with farDeadline, and REST calls carry none to the server, so that only
// the store timeout can end them as they should end.
const (
	testStoreTimeout = 200 * time.Millisecond
	farDeadline      = 10 * time.Second
)

// blockingViews is the real view store, except that its reads never answer:
// each returns only when its context ends.
type blockingViews struct{ views.Store }

func (blockingViews) GetOrder(ctx context.Context, _ string) (views.OrderDoc, error) {
	<-ctx.Done()
	return views.OrderDoc{}, ctx.Err()
}

func (blockingViews) ListOrders(ctx context.Context, _ views.OrderQuery) ([]views.OrderDoc, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (blockingViews) GetCustomer(ctx context.Context, _ string) (views.CustomerDoc, error) {
	<-ctx.Done()
	return views.CustomerDoc{}, ctx.Err()
}

func (blockingViews) ListCustomers(ctx context.Context, _ views.CustomerQuery) ([]views.CustomerDoc, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (blockingViews) Checkpoint(ctx context.Context) (uint64, error) {
	<-ctx.Done()
	return 0, ctx.Err()
}

// wantCode checks a gRPC call's status code.
func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: %v, want %v", what, err, want)
	}
}

// wantREST checks the HTTP status of a GET. HTTP carries no deadline to
// the server; the client gives up after farDeadline.
func wantREST(t *testing.T, e *env, path string, want int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, farDeadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.http+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("GET %s: %v", path, err)
		return
	}
	_ = resp.Body.Close()
	if resp.StatusCode != want {
		t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
	}
}

// TestEventStoreHung: against an event store that accepts connections and
// never answers, history, as-of reads and watches end with Unavailable,
// over gRPC with a far deadline and over REST with none.
func TestEventStoreHung(t *testing.T) {
	t.Parallel()
	e := startOn(t, sqliteStore(t), commandtest.SilentStore(t), testStoreTimeout)
	ctx, cancel := context.WithTimeout(e.ctx, farDeadline)
	defer cancel()
	order := id(2, 1)

	_, err := e.client.GetOrderHistory(ctx, &orderlyv1.GetOrderHistoryRequest{OrderId: order})
	wantCode(t, "GetOrderHistory", err, codes.Unavailable)
	_, err = e.client.GetOrderAt(ctx, &orderlyv1.GetOrderAtRequest{OrderId: order, Point: &orderlyv1.GetOrderAtRequest_AsOf{AsOf: timestamppb.Now()}})
	wantCode(t, "GetOrderAt", err, codes.Unavailable)
	w, err := e.client.WatchOrder(e.ctx, &orderlyv1.WatchOrderRequest{OrderId: order})
	if err == nil {
		_, err = w.Recv()
	}
	wantCode(t, "WatchOrder", err, codes.Unavailable)

	wantREST(t, e, "/v1/orders/"+order+"/history", http.StatusServiceUnavailable)
	wantREST(t, e, "/v1/orders/"+order+"/at?revision=0", http.StatusServiceUnavailable)
}

// TestViewStoreHung: against a view store whose reads never answer, every
// view read — and a min_position wait, which polls the view store — ends
// with Unavailable, over gRPC with a far deadline and over REST with none.
func TestViewStoreHung(t *testing.T) {
	t.Parallel()
	e := startOn(t, blockingViews{sqliteStore(t)}, estest.Start(t), testStoreTimeout)
	ctx, cancel := context.WithTimeout(e.ctx, farDeadline)
	defer cancel()
	order, customer := id(2, 1), id(1, 1)

	_, err := e.client.GetOrder(ctx, &orderlyv1.GetOrderRequest{OrderId: order})
	wantCode(t, "GetOrder", err, codes.Unavailable)
	_, err = e.client.GetOrder(ctx, &orderlyv1.GetOrderRequest{OrderId: order, MinPosition: 1})
	wantCode(t, "GetOrder with min_position", err, codes.Unavailable)
	_, err = e.client.ListOrders(ctx, &orderlyv1.ListOrdersRequest{})
	wantCode(t, "ListOrders", err, codes.Unavailable)
	_, err = e.client.GetCustomer(ctx, &orderlyv1.GetCustomerRequest{CustomerId: customer})
	wantCode(t, "GetCustomer", err, codes.Unavailable)
	_, err = e.client.ListCustomers(ctx, &orderlyv1.ListCustomersRequest{})
	wantCode(t, "ListCustomers", err, codes.Unavailable)

	wantREST(t, e, "/v1/orders/"+order, http.StatusServiceUnavailable)
	wantREST(t, e, "/v1/orders/"+order+"?min_position=1", http.StatusServiceUnavailable)
	wantREST(t, e, "/v1/orders", http.StatusServiceUnavailable)
	wantREST(t, e, "/v1/customers/"+customer, http.StatusServiceUnavailable)
	wantREST(t, e, "/v1/customers", http.StatusServiceUnavailable)
}
