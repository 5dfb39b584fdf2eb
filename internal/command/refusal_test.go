package command_test

import (
	"context"
	"github.com/google/uuid"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/serve"
)

const unknownID = "0b6f1c9e-4d2a-5c8e-9f10-2a3b4c5d6e7f"

// TestValidation sends malformed commands and expects InvalidArgument naming
// every bad field, with nothing written.
func TestValidation(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	api := env.API
	cust := env.RegisterCustomer(t, 1_000)
	order := env.PlaceOrder(t, cust, 100)
	head := env.Head(t)

	tests := []struct {
		name   string
		call   func(ctx context.Context) error
		fields []string
	}{
		{"register: everything missing", func(ctx context.Context) error {
			_, err := api.RegisterCustomer(ctx, &orderlyv1.RegisterCustomerRequest{})
			return err
		}, []string{"name", "email", "credit_limit.currency_code"}},
		{"register: bad values", func(ctx context.Context) error {
			_, err := api.RegisterCustomer(ctx, &orderlyv1.RegisterCustomerRequest{
				CommandId: strings.Repeat("k", 129), Name: "Ada\n", Email: "Ada <ada@example.com>",
				CreditLimit: &orderlyv1.Money{CurrencyCode: "usd", MinorUnits: -1},
			})
			return err
		}, []string{"command_id", "name", "email", "credit_limit.currency_code", "credit_limit.minor_units"}},
		{"change limit: bad customer id and limit", func(ctx context.Context) error {
			_, err := api.ChangeCreditLimit(ctx, &orderlyv1.ChangeCreditLimitRequest{CustomerId: "CUST-1", CreditLimit: usd(domain.MaxCreditLimit + 1)})
			return err
		}, []string{"customer_id", "credit_limit.minor_units"}},
		{"place: no lines", func(ctx context.Context) error {
			_, err := api.PlaceOrder(ctx, &orderlyv1.PlaceOrderRequest{CustomerId: cust})
			return err
		}, []string{"lines"}},
		{"place: bad lines", func(ctx context.Context) error {
			_, err := api.PlaceOrder(ctx, &orderlyv1.PlaceOrderRequest{CustomerId: cust, Lines: []*orderlyv1.OrderLine{
				{Sku: "ok", Quantity: 1, UnitPrice: usd(1)},
				{Sku: "bad sku", Quantity: 0, UnitPrice: &orderlyv1.Money{CurrencyCode: "EUR", MinorUnits: 1}},
			}})
			return err
		}, []string{"lines[1].sku", "lines[1].quantity", "lines[1].unit_price.currency_code"}},
		{"cancel: missing order id, long reason", func(ctx context.Context) error {
			_, err := api.CancelOrder(ctx, &orderlyv1.CancelOrderRequest{Reason: strings.Repeat("r", domain.MaxReasonLen+1)})
			return err
		}, []string{"order_id", "reason"}},
		{"cancel: control characters in command id", func(ctx context.Context) error {
			_, err := api.CancelOrder(ctx, &orderlyv1.CancelOrderRequest{CommandId: "a\tb", OrderId: order})
			return err
		}, []string{"command_id"}},
		{"change limit: a saga step's command id", func(ctx context.Context) error {
			_, err := api.ChangeCreditLimit(ctx, &orderlyv1.ChangeCreditLimitRequest{
				CommandId: command.StepCommandID("reserve-credit", uuid.New()), CustomerId: cust, CreditLimit: usd(2_000),
			})
			return err
		}, []string{"command_id"}},
		{"correlation id too long", func(ctx context.Context) error {
			ctx = metadata.AppendToOutgoingContext(ctx, serve.CorrelationHeader, strings.Repeat("c", 200))
			_, err := api.CancelOrder(ctx, &orderlyv1.CancelOrderRequest{OrderId: order})
			return err
		}, []string{serve.CorrelationHeader}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantStatus(t, tt.call(ctx(t)), codes.InvalidArgument, domain.ReasonInvalidArgument, tt.fields...)
		})
	}
	if got := env.Head(t); got != head {
		t.Errorf("refused commands wrote events: head %d -> %d", head, got)
	}
}

// TestRefusals covers the business refusals: unknown aggregates and rules
// the current state forbids.
func TestRefusals(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	api := env.API
	cust := env.RegisterCustomer(t, 1_000)
	order := env.PlaceOrder(t, cust, 600)
	if _, err := env.Service.ReserveCredit(ctx(t), domain.ReserveCredit{CustomerID: cust, OrderID: order, Amount: domain.Money{Currency: "USD", Minor: 600}},
		eventcodec.Metadata{CommandID: "reserve"}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.CancelOrder(ctx(t), &orderlyv1.CancelOrderRequest{OrderId: order}); err != nil {
		t.Fatal(err)
	}
	head := env.Head(t)

	tests := []struct {
		name   string
		call   func(ctx context.Context) error
		code   codes.Code
		reason string
	}{
		{"change limit of unknown customer", func(ctx context.Context) error {
			_, err := api.ChangeCreditLimit(ctx, &orderlyv1.ChangeCreditLimitRequest{CustomerId: unknownID, CreditLimit: usd(1)})
			return err
		}, codes.NotFound, domain.ReasonCustomerNotFound},
		{"order for unknown customer", func(ctx context.Context) error {
			_, err := api.PlaceOrder(ctx, &orderlyv1.PlaceOrderRequest{CustomerId: unknownID, Lines: []*orderlyv1.OrderLine{{Sku: "A", Quantity: 1, UnitPrice: usd(1)}}})
			return err
		}, codes.NotFound, domain.ReasonCustomerNotFound},
		{"cancel unknown order", func(ctx context.Context) error {
			_, err := api.CancelOrder(ctx, &orderlyv1.CancelOrderRequest{OrderId: unknownID})
			return err
		}, codes.NotFound, domain.ReasonOrderNotFound},
		{"limit in another currency", func(ctx context.Context) error {
			_, err := api.ChangeCreditLimit(ctx, &orderlyv1.ChangeCreditLimitRequest{CustomerId: cust, CreditLimit: &orderlyv1.Money{CurrencyCode: "EUR", MinorUnits: 5_000}})
			return err
		}, codes.FailedPrecondition, domain.ReasonCurrencyMismatch},
		{"limit below reserved credit", func(ctx context.Context) error {
			_, err := api.ChangeCreditLimit(ctx, &orderlyv1.ChangeCreditLimitRequest{CustomerId: cust, CreditLimit: usd(599)})
			return err
		}, codes.FailedPrecondition, domain.ReasonLimitBelowReserved},
		{"order in another currency", func(ctx context.Context) error {
			_, err := api.PlaceOrder(ctx, &orderlyv1.PlaceOrderRequest{CustomerId: cust, Lines: []*orderlyv1.OrderLine{{Sku: "A", Quantity: 1, UnitPrice: &orderlyv1.Money{CurrencyCode: "EUR", MinorUnits: 1}}}})
			return err
		}, codes.FailedPrecondition, domain.ReasonCurrencyMismatch},
		{"cancel a cancelled order", func(ctx context.Context) error {
			_, err := api.CancelOrder(ctx, &orderlyv1.CancelOrderRequest{OrderId: order})
			return err
		}, codes.FailedPrecondition, domain.ReasonOrderAlreadyCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantStatus(t, tt.call(ctx(t)), tt.code, tt.reason)
		})
	}
	if got := env.Head(t); got != head {
		t.Errorf("refused commands wrote events: head %d -> %d", head, got)
	}
}
