package command_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/hostiletest"
	"github.com/orderly/orderly/internal/serve"
)

const maxMessage = hostiletest.MaxMessage

// fill is n bytes of a character every field check refuses.
func fill(n int) string { return strings.Repeat("\x01", n) }

// TestHostileRequests sends each command the largest request the transport
// accepts, built to cost the most to refuse — every repeated field at its
// most numerous, every string field at its longest — over gRPC and REST. Each
// is refused with a short answer, and the process allocates a bounded number
// of bytes per byte of request. Not parallel: it counts the whole process's
// allocations.
func TestHostileRequests(t *testing.T) {
	env := commandtest.Start(t, command.Options{})
	custID := env.RegisterCustomer(t, 100)
	ctx := commandtest.Ctx(t, 5*time.Minute)

	emptyLines := make([]*orderlyv1.OrderLine, (maxMessage-100)/2) // 2 bytes each on the wire
	for i := range emptyLines {
		emptyLines[i] = &orderlyv1.OrderLine{}
	}
	grpcCases := []struct {
		name string
		req  proto.Message
		call func(proto.Message) error
	}{
		{"RegisterCustomer", &orderlyv1.RegisterCustomerRequest{
			CommandId: fill(maxMessage / 4), Name: fill(maxMessage / 4), Email: fill(maxMessage / 4),
			CreditLimit: &orderlyv1.Money{CurrencyCode: fill(maxMessage/4 - 100), MinorUnits: -1},
		}, func(m proto.Message) error {
			_, err := env.API.RegisterCustomer(ctx, m.(*orderlyv1.RegisterCustomerRequest))
			return err
		}},
		{"ChangeCreditLimit", &orderlyv1.ChangeCreditLimitRequest{
			CommandId: fill(maxMessage / 3), CustomerId: fill(maxMessage / 3),
			CreditLimit: &orderlyv1.Money{CurrencyCode: fill(maxMessage/3 - 100), MinorUnits: -1},
		}, func(m proto.Message) error {
			_, err := env.API.ChangeCreditLimit(ctx, m.(*orderlyv1.ChangeCreditLimitRequest))
			return err
		}},
		{"PlaceOrder", &orderlyv1.PlaceOrderRequest{CustomerId: custID, Lines: emptyLines}, func(m proto.Message) error {
			_, err := env.API.PlaceOrder(ctx, m.(*orderlyv1.PlaceOrderRequest))
			return err
		}},
		{"CancelOrder", &orderlyv1.CancelOrderRequest{
			CommandId: fill(maxMessage / 3), OrderId: fill(maxMessage / 3), Reason: fill(maxMessage/3 - 100),
		}, func(m proto.Message) error {
			_, err := env.API.CancelOrder(ctx, m.(*orderlyv1.CancelOrderRequest))
			return err
		}},
	}
	for _, c := range grpcCases {
		hostiletest.CheckGRPC(t, "gRPC "+c.name, c.req, c.call)
	}

	maxBody := serve.MaxRequestBody/hostiletest.Scale - 100
	longField := func(prefix string, n int) string { return prefix + strings.Repeat("A", n) }
	restCases := []struct {
		name, path, body string
	}{
		{"RegisterCustomer", "/v1/customers", `{"commandId":"` + longField("", maxBody/4) + `","name":"` + longField("", maxBody/4) +
			`","email":"` + longField("", maxBody/4) + `","creditLimit":{"currencyCode":"` + longField("", maxBody/4-200) + `","minorUnits":"-1"}}`},
		{"ChangeCreditLimit", "/v1/customers/" + longField("", hostiletest.MaxURL/2) + ":changeCreditLimit",
			`{"commandId":"` + longField("", maxBody/2) + `","creditLimit":{"currencyCode":"` + longField("", maxBody/2-200) + `","minorUnits":"-1"}}`},
		{"PlaceOrder", "/v1/orders", `{"customerId":"` + custID + `","lines":[{}` + strings.Repeat(",{}", (maxBody-200)/3) + `]}`},
		{"PlaceOrder undecodable", "/v1/orders", `{"lines":[{"quantity":"` + longField("", maxBody-200) + `"}]}`},
		{"PlaceOrder unknown field", "/v1/orders", `{"` + longField("x", maxBody-200) + `":1}`},
		{"CancelOrder", "/v1/orders/" + longField("", hostiletest.MaxURL/2) + ":cancel",
			`{"commandId":"` + longField("", maxBody/2) + `","reason":"` + longField("\\u0001", maxBody/2-200) + `"}`},
	}
	for _, c := range restCases {
		if len(c.body) > serve.MaxRequestBody {
			t.Fatalf("REST %s: %d-byte body, over %d", c.name, len(c.body), serve.MaxRequestBody)
		}
		hostiletest.CheckREST(t, ctx, "REST "+c.name, http.MethodPost, env.GatewayURL+c.path, c.body)
	}
}
