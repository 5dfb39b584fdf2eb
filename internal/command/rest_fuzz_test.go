package command_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/hostiletest"
)

// restRoutes are the command API's REST routes; %s is the path parameter.
var restRoutes = []string{"/v1/customers", "/v1/customers/%s:changeCreditLimit", "/v1/orders", "/v1/orders/%s:cancel"}

// FuzzREST posts arbitrary bodies, path parameters and query strings to
// every command route of the real gateway in front of a real service. The
// answer is never a server error, always JSON; a refusal is small and
// carries a status, and a malformed request names its field
// (hostiletest.CheckAnswer).
func FuzzREST(f *testing.F) {
	env := commandtest.Start(f, command.Options{})
	cust := env.RegisterCustomer(f, 1_000)
	order := env.PlaceOrder(f, cust, 100)
	for _, s := range []struct {
		route    uint8
		param, q string
		body     string
	}{
		{0, "", "", `{"commandId":"r-1","name":"Ada Lovelace","email":"ada@example.com","creditLimit":{"currencyCode":"USD","minorUnits":"5000"}}`},
		{0, "", "", `{"name":"Ada","email":"ada@example.com","creditLimit":{"currencyCode":"USD","minorUnits":1e400}}`},
		{0, "", "", `{"name":"Ada","unknown":1}`},
		{1, cust, "", `{"commandId":"l-1","creditLimit":{"currencyCode":"USD","minorUnits":"2000"}}`},
		{1, "CUST 1", "x=1", `{"creditLimit":null}`},
		{2, "", "", `{"commandId":"o-1","customerId":"` + cust + `","lines":[{"sku":"SKU-1","quantity":2,"unitPrice":{"currencyCode":"USD","minorUnits":"250"}}]}`},
		{2, "", "customer_id=" + cust, `{"lines":[{},{},{"quantity":"x"}]}`},
		{2, "", "", `{"lines":[` + strings.Repeat(`{"sku":"\u0000"},`, 30) + `{}]}`},
		{3, order, "", `{"commandId":"c-1","reason":"changed my mind"}`},
		{3, order, "reason=%zz", `[]`},
		{3, "", "", `{"reason":"\ud800"}`},
		{0, "", "", ``},
	} {
		f.Add(s.route, s.param, s.q, []byte(s.body))
	}

	f.Fuzz(func(t *testing.T, route uint8, param, query string, body []byte) {
		code, answer, target := hostiletest.SendFuzzed(t, http.MethodPost, env.GatewayURL, restRoutes[int(route)%len(restRoutes)], param, query, string(body))
		if err := hostiletest.CheckAnswer(code, answer); err != nil {
			t.Fatalf("POST %.200s with %.200q: %v", target, body, err)
		}
	})
}
