package command_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/serve"
)

// post sends a JSON body, with headers given as name, value pairs, and
// returns the status and decoded JSON answer.
func post(t *testing.T, url, body string, headers ...string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := commandtest.HTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("POST %s: %s: body is not JSON: %q", url, resp.Status, raw)
	}
	return resp.StatusCode, out
}

// violatedFields lists the fields named by a REST error body's BadRequest.
func violatedFields(body map[string]any) []string {
	var fields []string
	details, _ := body["details"].([]any)
	for _, d := range details {
		d, _ := d.(map[string]any)
		vs, _ := d["fieldViolations"].([]any)
		for _, v := range vs {
			if v, ok := v.(map[string]any); ok {
				fields = append(fields, v["field"].(string))
			}
		}
	}
	return fields
}

// TestREST drives the commands through the grpc-gateway: success, bad input,
// unknown aggregate and business refusal, with grpc-gateway's status mapping
// (InvalidArgument and FailedPrecondition → 400, NotFound → 404).
func TestREST(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	base := env.GatewayURL

	code, body := post(t, base+"/v1/customers",
		`{"commandId":"rest-1","name":"Ada","email":"ada@example.com","creditLimit":{"currencyCode":"USD","minorUnits":"5000"}}`,
		"X-Correlation-Id", "rest-corr")
	if code != http.StatusOK {
		t.Fatalf("POST /v1/customers: %d %v", code, body)
	}
	custID, _ := body["customerId"].(string)
	if !domain.ValidID(custID) || body["position"] == "0" || body["revision"] != "0" {
		t.Fatalf("POST /v1/customers = %v", body)
	}
	if m := env.History(t, eventlog.CustomerStream(custID))[0].Meta; m.CommandID != "rest-1" || m.CausationID != "rest-1" || m.CorrelationID != "rest-corr" {
		t.Errorf("metadata through the gateway = %+v", m)
	}

	code, body = post(t, base+"/v1/orders", `{"customerId":"`+custID+`","lines":[{"sku":"A-1","quantity":2,"unitPrice":{"currencyCode":"USD","minorUnits":"300"}}]}`)
	if code != http.StatusOK {
		t.Fatalf("POST /v1/orders: %d %v", code, body)
	}
	orderID, _ := body["orderId"].(string)
	if o := env.Order(t, orderID); o.Status != domain.StatusPending || o.Total.Minor != 600 {
		t.Fatalf("order placed over REST = %+v", o)
	}

	code, body = post(t, base+"/v1/orders/"+orderID+":cancel", `{"reason":"too slow"}`)
	if code != http.StatusOK || body["orderId"] != orderID || body["revision"] != "1" {
		t.Fatalf("POST :cancel: %d %v", code, body)
	}

	code, body = post(t, base+"/v1/customers", `{"name":"","email":"nope","creditLimit":{"currencyCode":"USD","minorUnits":"1"}}`)
	if got := violatedFields(body); code != http.StatusBadRequest || strings.Join(got, ",") != "name,email" {
		t.Fatalf("invalid registration: %d, fields %v, body %v", code, got, body)
	}
	if raw := toJSON(t, body); strings.Contains(raw, `"reason":""`) || strings.Contains(raw, "null") {
		t.Fatalf("error body carries unset fields: %s", raw)
	}

	code, body = post(t, base+"/v1/customers/"+unknownID+":changeCreditLimit", `{"creditLimit":{"currencyCode":"USD","minorUnits":"1"}}`)
	if code != http.StatusNotFound || !strings.Contains(body["message"].(string), unknownID) {
		t.Fatalf("unknown customer: %d %v", code, body)
	}

	code, body = post(t, base+"/v1/orders/"+orderID+":cancel", `{}`)
	if code != http.StatusBadRequest || !strings.Contains(toJSON(t, body), domain.ReasonOrderAlreadyCancelled) {
		t.Fatalf("cancelling twice: %d %v", code, body)
	}

	code, body = post(t, base+"/v1/orders", `{"customerId":"`+custID+`","bogus":1}`)
	if got := violatedFields(body); code != http.StatusBadRequest || strings.Join(got, ",") != "bogus" {
		t.Fatalf("unknown JSON field: %d, fields %v, body %v", code, got, body)
	}

	huge := `{"customerId":"` + custID + `","lines":[{"sku":"` + strings.Repeat("A", serve.MaxRequestBody) + `","quantity":1}]}`
	code, body = post(t, base+"/v1/orders", huge)
	if got := violatedFields(body); code != http.StatusBadRequest || strings.Join(got, ",") != "body" {
		t.Fatalf("oversized body: %d, fields %v, body %v", code, got, body)
	}
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
