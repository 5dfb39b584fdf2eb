package command_test

import (
	"sync"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
)

// TestReplayReturnsFirstResult sends each command twice with the same
// command_id, the second time after the state has moved on, and expects the
// first response back with nothing written.
func TestReplayReturnsFirstResult(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	api := env.API

	regReq := &orderlyv1.RegisterCustomerRequest{CommandId: "reg", Name: "Ada", Email: "ada@example.com", CreditLimit: usd(1_000)}
	reg, err := api.RegisterCustomer(ctx(t), regReq)
	if err != nil {
		t.Fatal(err)
	}
	limitReq := &orderlyv1.ChangeCreditLimitRequest{CommandId: "limit-1", CustomerId: reg.CustomerId, CreditLimit: usd(2_000)}
	limit, err := api.ChangeCreditLimit(ctx(t), limitReq)
	if err != nil {
		t.Fatal(err)
	}
	placeReq := &orderlyv1.PlaceOrderRequest{CommandId: "place", CustomerId: reg.CustomerId, Lines: []*orderlyv1.OrderLine{{Sku: "A", Quantity: 1, UnitPrice: usd(10)}}}
	placed, err := api.PlaceOrder(ctx(t), placeReq)
	if err != nil {
		t.Fatal(err)
	}
	cancelReq := &orderlyv1.CancelOrderRequest{CommandId: "cancel", OrderId: placed.OrderId}
	cancelled, err := api.CancelOrder(ctx(t), cancelReq)
	if err != nil {
		t.Fatal(err)
	}
	// Move the customer on, so that replays would decide differently.
	if _, err := api.ChangeCreditLimit(ctx(t), &orderlyv1.ChangeCreditLimitRequest{CommandId: "limit-2", CustomerId: reg.CustomerId, CreditLimit: usd(3_000)}); err != nil {
		t.Fatal(err)
	}
	head := env.Head(t)

	for name, replay := range map[string]func() (proto.Message, proto.Message, error){
		"register": func() (proto.Message, proto.Message, error) {
			r, err := api.RegisterCustomer(ctx(t), regReq)
			return reg, r, err
		},
		"change limit": func() (proto.Message, proto.Message, error) {
			r, err := api.ChangeCreditLimit(ctx(t), limitReq)
			return limit, r, err
		},
		"place": func() (proto.Message, proto.Message, error) {
			r, err := api.PlaceOrder(ctx(t), placeReq)
			return placed, r, err
		},
		"cancel": func() (proto.Message, proto.Message, error) {
			r, err := api.CancelOrder(ctx(t), cancelReq)
			return cancelled, r, err
		},
	} {
		first, again, err := replay()
		if err != nil {
			t.Errorf("%s replay: %v", name, err)
		} else if !proto.Equal(first, again) {
			t.Errorf("%s replay = %v; first answer was %v", name, again, first)
		}
	}
	if got := env.Head(t); got != head {
		t.Errorf("replays wrote events: head %d -> %d", head, got)
	}
	if c := env.Customer(t, reg.CustomerId); c.CreditLimit.Minor != 3_000 {
		t.Errorf("credit limit %d after replaying an older change; want 3000", c.CreditLimit.Minor)
	}
}

// TestConcurrentDuplicates sends one command_id from many goroutines at once:
// exactly one order is placed and every caller gets its result.
func TestConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	cust := env.RegisterCustomer(t, 1_000)
	req := &orderlyv1.PlaceOrderRequest{CommandId: "dup", CustomerId: cust, Lines: []*orderlyv1.OrderLine{{Sku: "A", Quantity: 1, UnitPrice: usd(10)}}}

	const n = 20
	resps := make([]*orderlyv1.PlaceOrderResponse, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { resps[i], errs[i] = env.API.PlaceOrder(ctx(t), req) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if !proto.Equal(resps[i], resps[0]) {
			t.Fatalf("caller %d got %v, caller 0 got %v", i, resps[i], resps[0])
		}
	}
	if h := env.History(t, eventlog.OrderStream(resps[0].OrderId)); len(h) != 1 || h[0].Position != resps[0].Position {
		t.Fatalf("order stream holds %d events; want the one at %d", len(h), resps[0].Position)
	}
}

// TestCommandIDReusedByAnotherCommand: a command_id names one command; a
// different command sent under it is refused, naming the field, rather than
// answered with the first command's result as if it had run.
func TestCommandIDReusedByAnotherCommand(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	cust := env.RegisterCustomer(t, 1_000)
	placed, err := env.API.PlaceOrder(ctx(t), &orderlyv1.PlaceOrderRequest{CommandId: "order-42", CustomerId: cust, Lines: []*orderlyv1.OrderLine{{Sku: "A", Quantity: 1, UnitPrice: usd(10)}}})
	if err != nil {
		t.Fatal(err)
	}
	head := env.Head(t)
	_, err = env.API.CancelOrder(ctx(t), &orderlyv1.CancelOrderRequest{CommandId: "order-42", OrderId: placed.OrderId})
	wantStatus(t, err, codes.InvalidArgument, domain.ReasonCommandIDReused, "command_id")
	if got := env.Head(t); got != head || env.Order(t, placed.OrderId).Status != domain.StatusPending {
		t.Fatalf("the refused cancel changed something: head %d -> %d, order %v", head, got, env.Order(t, placed.OrderId).Status)
	}
	if _, err := env.API.CancelOrder(ctx(t), &orderlyv1.CancelOrderRequest{CommandId: "cancel-42", OrderId: placed.OrderId}); err != nil {
		t.Fatal(err)
	}
	if h := env.History(t, eventlog.OrderStream(placed.OrderId)); h[0].Meta.Command != "PlaceOrder" || h[1].Meta.Command != "CancelOrder" {
		t.Fatalf("events record commands %q, %q; want PlaceOrder, CancelOrder", h[0].Meta.Command, h[1].Meta.Command)
	}
}

// TestNoOpCommand: a command that changes nothing writes nothing and reports
// where the stream stands; its replay is decided again (documented in
// command.execute).
func TestNoOpCommand(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	reg, err := env.API.RegisterCustomer(ctx(t), &orderlyv1.RegisterCustomerRequest{Name: "Ada", Email: "ada@example.com", CreditLimit: usd(1_000)})
	if err != nil {
		t.Fatal(err)
	}
	same := &orderlyv1.ChangeCreditLimitRequest{CommandId: "same", CustomerId: reg.CustomerId, CreditLimit: usd(1_000)}
	resp, err := env.API.ChangeCreditLimit(ctx(t), same)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Position != reg.Position || resp.Revision != reg.Revision {
		t.Fatalf("no-op change = %v; want the registration's position %d and revision %d", resp, reg.Position, reg.Revision)
	}
	if _, err := env.API.ChangeCreditLimit(ctx(t), &orderlyv1.ChangeCreditLimitRequest{CustomerId: reg.CustomerId, CreditLimit: usd(5_000)}); err != nil {
		t.Fatal(err)
	}
	// The no-op left no trace, so its replay now lowers the limit back.
	again, err := env.API.ChangeCreditLimit(ctx(t), same)
	if err != nil {
		t.Fatal(err)
	}
	if again.Revision != 2 || env.Customer(t, reg.CustomerId).CreditLimit.Minor != 1_000 {
		t.Fatalf("replayed no-op = %v", again)
	}
}

// TestCommandIDReusedWithAnotherRequest: a command_id names one request; the
// same command with other parameters under it is refused, naming the field,
// on the replica that served the first request (cached) and on another that
// has to load the aggregate, while the same request is still answered with
// the first result. Nothing is written by the refused ones.
func TestCommandIDReusedWithAnotherRequest(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	other := commandtest.StartOn(t, env.ConnString, command.Options{})
	cust, cust2 := env.RegisterCustomer(t, 1_000), env.RegisterCustomer(t, 1_000)
	lines := []*orderlyv1.OrderLine{{Sku: "A", Quantity: 1, UnitPrice: usd(10)}}
	placed, err := env.API.PlaceOrder(ctx(t), &orderlyv1.PlaceOrderRequest{CommandId: "cancel-me", CustomerId: cust, Lines: lines})
	if err != nil {
		t.Fatal(err)
	}

	type call func(api orderlyv1.CommandServiceClient, changed bool) (proto.Message, error)
	for name, send := range map[string]call{
		"register": func(api orderlyv1.CommandServiceClient, changed bool) (proto.Message, error) {
			req := &orderlyv1.RegisterCustomerRequest{CommandId: "reg", Name: "Ada", Email: "ada@example.com", CreditLimit: usd(100)}
			if changed {
				req.CreditLimit = usd(500)
			}
			return api.RegisterCustomer(ctx(t), req)
		},
		"change limit": func(api orderlyv1.CommandServiceClient, changed bool) (proto.Message, error) {
			req := &orderlyv1.ChangeCreditLimitRequest{CommandId: "limit", CustomerId: cust, CreditLimit: usd(100)}
			if changed {
				req.CreditLimit = usd(500)
			}
			return api.ChangeCreditLimit(ctx(t), req)
		},
		"place for another customer": func(api orderlyv1.CommandServiceClient, changed bool) (proto.Message, error) {
			req := &orderlyv1.PlaceOrderRequest{CommandId: "place-1", CustomerId: cust, Lines: lines}
			if changed {
				req.CustomerId = cust2
			}
			return api.PlaceOrder(ctx(t), req)
		},
		"place other lines": func(api orderlyv1.CommandServiceClient, changed bool) (proto.Message, error) {
			req := &orderlyv1.PlaceOrderRequest{CommandId: "place-2", CustomerId: cust, Lines: lines}
			if changed {
				req.Lines = []*orderlyv1.OrderLine{{Sku: "A", Quantity: 2, UnitPrice: usd(10)}}
			}
			return api.PlaceOrder(ctx(t), req)
		},
		"cancel with another reason": func(api orderlyv1.CommandServiceClient, changed bool) (proto.Message, error) {
			req := &orderlyv1.CancelOrderRequest{CommandId: "cancel", OrderId: placed.OrderId, Reason: "changed my mind"}
			if changed {
				req.Reason = "found it cheaper"
			}
			return api.CancelOrder(ctx(t), req)
		},
	} {
		first, err := send(env.API, false)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		head := env.Head(t)
		for replica, api := range map[string]orderlyv1.CommandServiceClient{"same replica": env.API, "other replica": other.API} {
			_, err := send(api, true)
			t.Run(name+"/"+replica, func(t *testing.T) {
				wantStatus(t, err, codes.InvalidArgument, domain.ReasonCommandIDReused, "command_id")
			})
			if again, err := send(api, false); err != nil || !proto.Equal(again, first) {
				t.Errorf("%s on the %s: the same request again = %v, %v; first answer was %v", name, replica, again, err, first)
			}
		}
		if got := env.Head(t); got != head {
			t.Errorf("%s: refused requests wrote events: head %d -> %d", name, head, got)
		}
	}
}

// TestCommandIDWithoutFingerprint: events written before requests were
// fingerprinted carry none; a command under their command_id is answered
// with their result, as before, whatever its parameters.
func TestCommandIDWithoutFingerprint(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	cust := env.RegisterCustomer(t, 1_000)
	data, err := eventlog.Encode(eventcodec.Default(), uuid.New(), domain.CreditLimitChanged{CustomerID: cust, CreditLimit: domain.Money{Currency: "USD", Minor: 100}},
		eventcodec.Metadata{CommandID: "legacy", Command: "ChangeCreditLimit"})
	if err != nil {
		t.Fatal(err)
	}
	wr, err := env.Store.AppendToStream(ctx(t), eventlog.CustomerStream(cust), esdb.AppendToStreamOptions{}, data)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := env.API.ChangeCreditLimit(ctx(t), &orderlyv1.ChangeCreditLimitRequest{CommandId: "legacy", CustomerId: cust, CreditLimit: usd(500)})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Position != wr.CommitPosition || resp.Revision != wr.NextExpectedVersion || env.Customer(t, cust).CreditLimit.Minor != 100 {
		t.Fatalf("replay of an unfingerprinted command = %v; want its result at %d, revision %d, limit unchanged", resp, wr.CommitPosition, wr.NextExpectedVersion)
	}
}
