package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/loopback"
	"github.com/orderly/orderly/internal/statuscmd"
)

// TestPauseSurvivesRestart: the orders view and the saga, paused by an
// operator, are still paused after the all-in-one restarts: the start says
// so, `orderly status` shows it, and an order placed then is projected into
// the customers view's checkpoint but not into the orders view, nor acted on
// by the saga. Resumed, both process it. On both view stores.
func TestPauseSurvivesRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		args func(t *testing.T) []string
	}{
		{"sqlite", func(*testing.T) []string { return nil }},
		{"ferretdb", func(t *testing.T) []string {
			return []string{"-views", "mongo", "-ferretdb-listen", loopback.FreeAddr(t)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := t.TempDir()
			start := func() (allAddrs, *syncBuffer, func()) {
				return startStoppable(t, append([]string{"-data", data, "-log-level", "warn"}, tc.args(t)...)...)
			}
			addrs, _, stop := start()
			ctx := callCtx(t)
			admin := orderlyv1.NewAdminServiceClient(dialGRPC(t, addrs.commands, insecure.NewCredentials()))
			for _, name := range []string{"orders", "credit-saga"} {
				if _, err := admin.PauseProcessor(ctx, &orderlyv1.PauseProcessorRequest{Name: name}); err != nil {
					t.Fatalf("pause %s: %v", name, err)
				}
			}
			stop()

			addrs, logs, _ := start()
			admin = orderlyv1.NewAdminServiceClient(dialGRPC(t, addrs.commands, insecure.NewCredentials()))
			processors := func() map[string]*orderlyv1.Processor {
				list, err := admin.ListProcessors(ctx, &orderlyv1.ListProcessorsRequest{})
				if err != nil {
					t.Fatal(err)
				}
				out := map[string]*orderlyv1.Processor{}
				for _, p := range list.GetProcessors() {
					out[p.GetName()] = p
				}
				return out
			}
			waitFor(t, func() bool {
				for _, p := range processors() {
					if p.GetState() == orderlyv1.ProcessorState_PROCESSOR_STATE_STARTING {
						return false
					}
				}
				return true
			})
			for _, name := range []string{"orders", "credit-saga"} {
				if !hasLine(logs.String(), "paused by an operator", `"processor":"`+name+`"`) {
					t.Errorf("the start does not say %s is paused:\n%s", name, logs.String())
				}
			}
			var table bytes.Buffer
			if err := statuscmd.Main(ctx, []string{"-admin", addrs.commands}, &table); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"orders", "credit-saga"} {
				if !hasLine(table.String(), name+" ", " paused ") {
					t.Errorf("orderly status does not show %s paused:\n%s", name, table.String())
				}
			}

			commands := orderlyv1.NewCommandServiceClient(dialGRPC(t, addrs.commands, insecure.NewCredentials()))
			queries := orderlyv1.NewQueryServiceClient(dialGRPC(t, addrs.queries, insecure.NewCredentials()))
			reg, err := commands.RegisterCustomer(ctx, &orderlyv1.RegisterCustomerRequest{CommandId: "pause-c", Name: "Ada", Email: "ada@example.com", CreditLimit: usd(1000)})
			if err != nil {
				t.Fatal(err)
			}
			placed, err := commands.PlaceOrder(ctx, &orderlyv1.PlaceOrderRequest{CommandId: "pause-o", CustomerId: reg.GetCustomerId(),
				Lines: []*orderlyv1.OrderLine{{Sku: "A", Quantity: 1, UnitPrice: usd(10)}}})
			if err != nil {
				t.Fatal(err)
			}
			// The shared subscription has carried the order past the
			// projections once the customers view's checkpoint passed it.
			waitFor(t, func() bool { return processors()["customers"].GetPosition() >= placed.GetPosition() })
			ps := processors()
			for _, name := range []string{"orders", "credit-saga"} {
				if p := ps[name]; p.GetState() != orderlyv1.ProcessorState_PROCESSOR_STATE_PAUSED || p.GetPosition() >= placed.GetPosition() {
					t.Errorf("%s after the restart: %v at %d; want paused before the order at %d", name, p.GetState(), p.GetPosition(), placed.GetPosition())
				}
			}
			if _, err := queries.GetOrder(ctx, &orderlyv1.GetOrderRequest{OrderId: placed.GetOrderId()}); status.Code(err) != codes.NotFound {
				t.Errorf("GetOrder with orders paused: %v; want NOT_FOUND", err)
			}

			for _, name := range []string{"orders", "credit-saga"} {
				if _, err := admin.ResumeProcessor(ctx, &orderlyv1.ResumeProcessorRequest{Name: name}); err != nil {
					t.Fatalf("resume %s: %v", name, err)
				}
			}
			waitFor(t, func() bool {
				o, err := queries.GetOrder(ctx, &orderlyv1.GetOrderRequest{OrderId: placed.GetOrderId()})
				return err == nil && o.GetOrder().GetStatus() == orderlyv1.OrderStatus_ORDER_STATUS_APPROVED
			})
		})
	}
}

// hasLine reports whether a line of text contains every one of parts.
func hasLine(text string, parts ...string) bool {
	for line := range strings.SplitSeq(text, "\n") {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			return true
		}
	}
	return false
}
