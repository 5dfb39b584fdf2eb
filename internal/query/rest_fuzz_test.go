package query_test

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/orderly/orderly/internal/hostiletest"
)

// queryRoutes are the query API's REST routes; %s is the path parameter.
var queryRoutes = []string{
	"/v1/orders/%s", "/v1/orders", "/v1/customers/%s", "/v1/customers",
	"/v1/orders/%s/history", "/v1/orders/%s/at",
}

// FuzzQueryREST sends arbitrary path parameters and query strings to every
// read route of the real gateway in front of a real query service. The
// answer is never a server error, always JSON; a refusal is small and
// carries a status, and a malformed request names its field
// (hostiletest.CheckAnswer). The one 5xx allowed is the 504 of a
// min_position the views have not reached within the service's wait.
func FuzzQueryREST(f *testing.F) {
	e := start(f, sqliteStore(f))
	const id = "0b6f1c9e-4d2a-5c8e-9f10-2a3b4c5d6e7f"
	for _, s := range []struct {
		route    uint8
		param, q string
	}{
		{0, id, ""},
		{0, id, "min_position=1"},
		{0, "ORDER 1", "minPosition=-1"},
		{1, "", "customer_id=" + id + "&status=ORDER_STATUS_PENDING&page_size=10"},
		{1, "", "status=2&pageSize=2147483648&page_token=abc.def"},
		{1, "", "status=NOPE&status=APPROVED&customer_id=%zz"},
		{2, id, "unknown=1"},
		{3, "", "page_size=-1&page_token="},
		{3, "", "page_token=e30.AAAAAAAAAAAAAAAAAAAAAA"},
		{4, id, "page_size=1000000&page_token=\x00"},
		{5, id, "revision=3"},
		{5, id, "as_of=2026-11-30T06:00:00Z"},
		{5, id, "as_of=yesterday&revision=1"},
		{5, id, "as_of.seconds=-62135596801"},
	} {
		f.Add(s.route, s.param, s.q)
	}

	f.Fuzz(func(t *testing.T, route uint8, param, query string) {
		code, answer, target := hostiletest.SendFuzzed(t, http.MethodGet, e.http, queryRoutes[int(route)%len(queryRoutes)], param, query, "")
		if code == http.StatusGatewayTimeout && bytes.Contains(answer, []byte("have not reached min_position")) {
			return
		}
		if err := hostiletest.CheckAnswer(code, answer); err != nil {
			t.Fatalf("GET %.300s: %v", target, err)
		}
	})
}
