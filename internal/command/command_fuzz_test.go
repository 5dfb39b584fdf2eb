package command_test

import (
	"context"
	"fmt"
	"regexp"
	"runtime"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/hostiletest"
)

// fuzzCall is one RPC of the command API: its request type, the fields a
// violation may name, and the call.
type fuzzCall struct {
	name   string
	req    func() proto.Message
	fields *regexp.Regexp
	call   func(context.Context, orderlyv1.CommandServiceClient, proto.Message) error
}

var fuzzCalls = []fuzzCall{
	{"RegisterCustomer", func() proto.Message { return &orderlyv1.RegisterCustomerRequest{} },
		regexp.MustCompile(`^(command_id|name|email|credit_limit\.(currency_code|minor_units))$`),
		func(ctx context.Context, api orderlyv1.CommandServiceClient, m proto.Message) error {
			_, err := api.RegisterCustomer(ctx, m.(*orderlyv1.RegisterCustomerRequest))
			return err
		}},
	{"ChangeCreditLimit", func() proto.Message { return &orderlyv1.ChangeCreditLimitRequest{} },
		regexp.MustCompile(`^(command_id|customer_id|credit_limit\.(currency_code|minor_units))$`),
		func(ctx context.Context, api orderlyv1.CommandServiceClient, m proto.Message) error {
			_, err := api.ChangeCreditLimit(ctx, m.(*orderlyv1.ChangeCreditLimitRequest))
			return err
		}},
	{"PlaceOrder", func() proto.Message { return &orderlyv1.PlaceOrderRequest{} },
		regexp.MustCompile(`^(command_id|customer_id|lines|lines\[\d+\]\.(sku|quantity|unit_price\.(currency_code|minor_units)))$`),
		func(ctx context.Context, api orderlyv1.CommandServiceClient, m proto.Message) error {
			_, err := api.PlaceOrder(ctx, m.(*orderlyv1.PlaceOrderRequest))
			return err
		}},
	{"CancelOrder", func() proto.Message { return &orderlyv1.CancelOrderRequest{} },
		regexp.MustCompile(`^(command_id|order_id|reason)$`),
		func(ctx context.Context, api orderlyv1.CommandServiceClient, m proto.Message) error {
			_, err := api.CancelOrder(ctx, m.(*orderlyv1.CancelOrderRequest))
			return err
		}},
}

// fixedCost is what any refused call may allocate whatever its size: the
// gRPC round trip, the status and its details, on both ends.
const fixedCost = 256 << 10

// FuzzCommandRequest unmarshals arbitrary bytes into each command's request
// and sends it to a real service over gRPC. Every call ends (no hang) with
// success or a refusal the contract names; never Internal or Unknown. An
// InvalidArgument lists 1 to domain.MaxViolations+1 violations (the last may
// say how many more), each naming a field of that request, in a status of
// at most hostiletest.MaxAnswer bytes, having allocated at most
// hostiletest.AllocPerByte bytes per request byte beyond a fixed cost
// (checked without the race detector: see hostiletest.Race).
func FuzzCommandRequest(f *testing.F) {
	env := commandtest.Start(f, command.Options{})
	cust := env.RegisterCustomer(f, 1_000)
	order := env.PlaceOrder(f, cust, 100)

	lines := func(n int, l *orderlyv1.OrderLine) []*orderlyv1.OrderLine {
		ls := make([]*orderlyv1.OrderLine, n)
		for i := range ls {
			ls[i] = l
		}
		return ls
	}
	good := &orderlyv1.OrderLine{Sku: "SKU-1", Quantity: 2, UnitPrice: commandtest.USD(250)}
	bad := &orderlyv1.OrderLine{Sku: "bad sku", Quantity: -1, UnitPrice: &orderlyv1.Money{CurrencyCode: "usd", MinorUnits: -1}}
	seeds := []struct {
		call uint8
		req  proto.Message
	}{
		{0, &orderlyv1.RegisterCustomerRequest{CommandId: "reg-1", Name: "Ada Lovelace", Email: "ada@example.com", CreditLimit: commandtest.USD(5_000)}},
		{0, &orderlyv1.RegisterCustomerRequest{CommandId: "\x01", Name: "\n", Email: "Ada <ada@example.com>", CreditLimit: &orderlyv1.Money{CurrencyCode: "usd", MinorUnits: -1}}},
		{1, &orderlyv1.ChangeCreditLimitRequest{CommandId: "limit-1", CustomerId: cust, CreditLimit: commandtest.USD(2_000)}},
		{1, &orderlyv1.ChangeCreditLimitRequest{CustomerId: "CUST-1", CreditLimit: commandtest.USD(domain.MaxCreditLimit + 1)}},
		{2, &orderlyv1.PlaceOrderRequest{CommandId: "order-1", CustomerId: cust, Lines: lines(3, good)}},
		{2, &orderlyv1.PlaceOrderRequest{CustomerId: unknownID, Lines: lines(1, good)}},
		{2, &orderlyv1.PlaceOrderRequest{CommandId: "saga:x", CustomerId: cust, Lines: lines(domain.MaxLines, bad)}},
		{2, &orderlyv1.PlaceOrderRequest{CustomerId: cust, Lines: lines(domain.MaxLines+1, good)}},
		{3, &orderlyv1.CancelOrderRequest{CommandId: "cancel-1", OrderId: order, Reason: "changed my mind"}},
		{3, &orderlyv1.CancelOrderRequest{OrderId: order[1:], Reason: "\u2028"}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s.req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(s.call, b)
	}
	f.Add(uint8(2), []byte{0x1a, 0x00, 0x1a, 0x00})

	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		c := fuzzCalls[int(which)%len(fuzzCalls)]
		req := c.req()
		if err := proto.Unmarshal(b, req); err != nil {
			t.Skip("not a", c.name, "request")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var err error
		allocated := allocatedBy(func() { err = c.call(ctx, env.API, req) })
		st, _ := status.FromError(err)
		switch st.Code() {
		case codes.OK, codes.NotFound, codes.FailedPrecondition, codes.AlreadyExists:
			return
		case codes.InvalidArgument:
		default:
			t.Fatalf("%s %.300v: %v", c.name, req, err)
		}
		if n := proto.Size(st.Proto()); n > hostiletest.MaxAnswer {
			t.Fatalf("%s: %d-byte refusal of a %d-byte request, over %d", c.name, n, len(b), hostiletest.MaxAnswer)
		}
		limit := uint64(fixedCost + hostiletest.AllocPerByte*len(b))
		// The count is process-wide, and goroutines of earlier tests (a
		// snapshot merge, a page writer) may still be allocating: a
		// refusal changes nothing, so it is measured again, and its
		// cheapest run counts. Under the race detector the pools that
		// make the fixed cost fixed drop buffers at random, so the
		// bound is checked by runs without it (go test ./..., .ci/fuzz).
		for retry := 0; retry < 3 && allocated > limit; retry++ {
			allocated = min(allocated, allocatedBy(func() { _ = c.call(ctx, env.API, req) }))
		}
		if allocated > limit && !hostiletest.Race {
			t.Fatalf("%s: refusing a %d-byte request allocated %d bytes, over %d", c.name, len(b), allocated, limit)
		}
		if err := checkViolations(st, c.fields); err != nil {
			t.Fatalf("%s %.300v: %v", c.name, req, err)
		}
	})
}

// checkViolations checks an InvalidArgument status's BadRequest: 1 to
// domain.MaxViolations+1 violations, each naming a field that matches.
func checkViolations(st *status.Status, fields *regexp.Regexp) error {
	for _, d := range st.Details() {
		br, ok := d.(*errdetails.BadRequest)
		if !ok {
			continue
		}
		vs := br.GetFieldViolations()
		if len(vs) == 0 || len(vs) > domain.MaxViolations+1 {
			return fmt.Errorf("%d field violations, want 1 to %d: %v", len(vs), domain.MaxViolations+1, st.Message())
		}
		for _, v := range vs {
			if !fields.MatchString(v.GetField()) || v.GetDescription() == "" {
				return fmt.Errorf("violation %q: %q names no field of the request", v.GetField(), v.GetDescription())
			}
		}
		return nil
	}
	return fmt.Errorf("no field violations: %v", st.Message())
}

// allocatedBy is hostiletest.Allocated without its garbage collection,
// which would dominate a fuzzer's run: TotalAlloc only grows.
func allocatedBy(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
