package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/loopback"
)

func TestWalkthroughSQLite(t *testing.T) { walkthrough(t) }

// TestWalkthroughMongo runs the same walkthrough with the views in MongoDB,
// served by the embedded FerretDB the all-in-one starts.
func TestWalkthroughMongo(t *testing.T) {
	walkthrough(t, "-views", "mongo", "-ferretdb-listen", loopback.FreeAddr(t))
}

func usd(minor int64) *orderlyv1.Money {
	return &orderlyv1.Money{CurrencyCode: "USD", MinorUnits: minor}
}

// walkthrough follows the README's walkthrough against the real binary and
// asserts every answer.
func walkthrough(t *testing.T, flags ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	data := t.TempDir()
	s := startSystem(t, data, flags...)

	// 1. Register a customer over REST with a 100.00 USD limit.
	var reg struct {
		CustomerID string `json:"customerId"`
		Position   string `json:"position"`
	}
	code, raw := s.rest(ctx, http.MethodPost, "/v1/customers",
		`{"commandId":"reg-ada","name":"Ada Lovelace","email":"ada@example.com","creditLimit":{"currencyCode":"USD","minorUnits":"10000"}}`, &reg)
	if code != http.StatusOK || reg.CustomerID == "" {
		t.Fatalf("register = %d %s", code, raw)
	}
	// Sending the same command again returns the same customer and writes nothing.
	var again struct {
		CustomerID string `json:"customerId"`
		Position   string `json:"position"`
	}
	s.rest(ctx, http.MethodPost, "/v1/customers",
		`{"commandId":"reg-ada","name":"Ada Lovelace","email":"ada@example.com","creditLimit":{"currencyCode":"USD","minorUnits":"10000"}}`, &again)
	if again != reg {
		t.Fatalf("retried register = %+v, first %+v", again, reg)
	}
	cust := reg.CustomerID

	// 2. An order within the limit (30.00) is approved by the saga; a
	//    watcher sees it go from PENDING to APPROVED.
	placed, err := s.commands.PlaceOrder(ctx, &orderlyv1.PlaceOrderRequest{CommandId: "order-1", CustomerId: cust,
		Lines: []*orderlyv1.OrderLine{{Sku: "BOOK-1", Quantity: 2, UnitPrice: usd(1500)}}})
	if err != nil {
		t.Fatal(err)
	}
	watch, err := s.queries.WatchOrder(ctx, &orderlyv1.WatchOrderRequest{OrderId: placed.OrderId, MinPosition: placed.Position})
	if err != nil {
		t.Fatal(err)
	}
	var statuses []orderlyv1.OrderStatus
	for len(statuses) == 0 || statuses[len(statuses)-1] == orderlyv1.OrderStatus_ORDER_STATUS_PENDING {
		msg, err := watch.Recv()
		if err != nil {
			t.Fatalf("watch after %v: %v", statuses, err)
		}
		statuses = append(statuses, msg.Order.Status)
	}
	if last := statuses[len(statuses)-1]; last != orderlyv1.OrderStatus_ORDER_STATUS_APPROVED || len(statuses) > 2 {
		t.Fatalf("watched statuses %v, want [PENDING] APPROVED", statuses)
	}

	// 3. An order beyond the available 70.00 is rejected.
	big, err := s.commands.PlaceOrder(ctx, &orderlyv1.PlaceOrderRequest{CommandId: "order-2", CustomerId: cust,
		Lines: []*orderlyv1.OrderLine{{Sku: "LAPTOP", Quantity: 1, UnitPrice: usd(8000)}}})
	if err != nil {
		t.Fatal(err)
	}
	rejected := waitStatus(t, s, big.OrderId, orderlyv1.OrderStatus_ORDER_STATUS_REJECTED)
	if rejected.RejectionReason == "" {
		t.Fatalf("rejected order has no reason: %v", rejected)
	}

	// 4. The customer view shows the reservation and the counts.
	c := customer(t, s, cust, 0)
	if c.CreditReserved.MinorUnits != 3000 || c.CreditAvailable.MinorUnits != 7000 ||
		c.OrderCounts.GetApproved() != 1 || c.OrderCounts.GetRejected() != 1 || c.OrderCounts.GetTotal() != 2 {
		t.Fatalf("customer = %v", c)
	}

	// 5. Business rules and bad input answer with the right status.
	_, err = s.commands.ChangeCreditLimit(ctx, &orderlyv1.ChangeCreditLimitRequest{CustomerId: cust, CreditLimit: usd(2000)})
	wantReason(t, err, codes.FailedPrecondition, "CREDIT_LIMIT_BELOW_RESERVED")
	code, raw = s.rest(ctx, http.MethodPost, "/v1/orders", `{"customerId":"`+cust+`","lines":[{"sku":"X","quantity":0,"unitPrice":{"currencyCode":"USD","minorUnits":"1"}}]}`, nil)
	if code != http.StatusBadRequest || !strings.Contains(raw, "lines[0].quantity") {
		t.Fatalf("invalid order over REST = %d %s", code, raw)
	}

	// 6. Cancelling the approved order releases its credit.
	cancelled, err := s.commands.CancelOrder(ctx, &orderlyv1.CancelOrderRequest{OrderId: placed.OrderId, Reason: "changed my mind"})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, s, placed.OrderId, orderlyv1.OrderStatus_ORDER_STATUS_CANCELLED)
	eventually(t, 10*time.Second, "credit released", func() error {
		if c := customer(t, s, cust, cancelled.Position); c.CreditReserved.MinorUnits != 0 || c.CreditAvailable.MinorUnits != 10000 {
			return fmt.Errorf("reserved %d, available %d", c.CreditReserved.MinorUnits, c.CreditAvailable.MinorUnits)
		}
		return nil
	})

	// 7. History and as-of reads come straight from the event store.
	hist, err := s.queries.GetOrderHistory(ctx, &orderlyv1.GetOrderHistoryRequest{OrderId: placed.OrderId})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range hist.Events {
		types = append(types, e.Type)
	}
	if fmt.Sprint(types) != "[orderly.OrderPlaced orderly.OrderApproved orderly.OrderCancelled]" {
		t.Fatalf("history = %v", types)
	}
	at, err := s.queries.GetOrderAt(ctx, &orderlyv1.GetOrderAtRequest{OrderId: placed.OrderId, Point: &orderlyv1.GetOrderAtRequest_AsOf{AsOf: hist.Events[1].RecordedAt}})
	if err != nil || at.Order.Status != orderlyv1.OrderStatus_ORDER_STATUS_APPROVED {
		t.Fatalf("as of approval = %v, %v", at, err)
	}
	var restAt struct {
		Order struct{ Status string } `json:"order"`
	}
	if code, raw := s.rest(ctx, http.MethodGet, "/v1/orders/"+placed.OrderId+"/at?revision=0", "", &restAt); code != http.StatusOK || restAt.Order.Status != "ORDER_STATUS_PENDING" {
		t.Fatalf("REST as of revision 0 = %d %s", code, raw)
	}

	// 8. A rebuild against the running system leaves the views as they were.
	before := snapshot(t, s)
	out := s.run(append([]string{"rebuild", "-eventstore", "esdb://" + s.esAddr + "?tls=false", "-data", data}, viewFlags(s)...)...)
	if after := snapshot(t, s); !after.equal(before) {
		t.Fatalf("views changed by rebuild:\nbefore %v\nafter  %v\nrebuild output:\n%s", before, after, out)
	}

	// 9. Stopped with SIGTERM and started again, it has everything.
	s.restart()
	if after := snapshot(t, s); !after.equal(before) {
		t.Fatalf("views changed by restart:\nbefore %v\nafter  %v", before, after)
	}
	more, err := s.commands.PlaceOrder(ctx, &orderlyv1.PlaceOrderRequest{CommandId: "order-3", CustomerId: cust,
		Lines: []*orderlyv1.OrderLine{{Sku: "PEN", Quantity: 1, UnitPrice: usd(100)}}})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, s, more.OrderId, orderlyv1.OrderStatus_ORDER_STATUS_APPROVED)
	s.stop()
}

// viewFlags are the view store flags the system runs with, for rebuild.
func viewFlags(s *system) []string {
	for i, a := range s.args {
		if a == "-views" && s.args[i+1] == "mongo" {
			return []string{"-views", "mongo", "-mongo-uri", "mongodb://" + s.args[indexOf(s.args, "-ferretdb-listen")+1], "-mongo-bulk-size", "64"}
		}
	}
	return nil
}

func indexOf(args []string, flag string) int {
	for i, a := range args {
		if a == flag {
			return i
		}
	}
	return -1
}

// waitStatus waits until the order view shows st and returns it.
func waitStatus(t *testing.T, s *system, orderID string, st orderlyv1.OrderStatus) *orderlyv1.Order {
	t.Helper()
	var o *orderlyv1.Order
	eventually(t, 10*time.Second, "order "+orderID+" "+st.String(), func() error {
		resp, err := s.queries.GetOrder(context.Background(), &orderlyv1.GetOrderRequest{OrderId: orderID})
		if err != nil {
			return err
		}
		if o = resp.Order; o.Status != st {
			return fmt.Errorf("status %v", o.Status)
		}
		return nil
	})
	return o
}

func customer(t *testing.T, s *system, id string, minPosition uint64) *orderlyv1.Customer {
	t.Helper()
	resp, err := s.queries.GetCustomer(context.Background(), &orderlyv1.GetCustomerRequest{CustomerId: id, MinPosition: minPosition})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Customer
}

func wantReason(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Fatalf("err = %v, want %v", err, code)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Reason == reason {
			return
		}
	}
	t.Fatalf("err %v lacks reason %s", err, reason)
}

// viewSnapshot is every order and customer view, for before/after checks.
type viewSnapshot struct {
	orders    *orderlyv1.ListOrdersResponse
	customers *orderlyv1.ListCustomersResponse
}

func (v viewSnapshot) equal(w viewSnapshot) bool {
	return proto.Equal(v.orders, w.orders) && proto.Equal(v.customers, w.customers)
}

func (v viewSnapshot) String() string {
	return fmt.Sprintf("orders %v customers %v", v.orders, v.customers)
}

func snapshot(t *testing.T, s *system) viewSnapshot {
	t.Helper()
	ctx := context.Background()
	orders, err := s.queries.ListOrders(ctx, &orderlyv1.ListOrdersRequest{PageSize: 500})
	if err != nil {
		t.Fatal(err)
	}
	customers, err := s.queries.ListCustomers(ctx, &orderlyv1.ListCustomersRequest{PageSize: 500})
	if err != nil {
		t.Fatal(err)
	}
	return viewSnapshot{orders, customers}
}
