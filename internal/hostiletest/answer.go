package hostiletest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// CheckAnswer checks a REST answer to whatever a client may send: never a
// server error; a JSON body; a refusal of at most MaxAnswer bytes carrying
// a gRPC status code and a message; and an InvalidArgument naming at least
// one field, each with a reason (google.rpc.BadRequest).
func CheckAnswer(code int, body []byte) error {
	if code >= 500 {
		return fmt.Errorf("status %d for a client's request: %.300s", code, body)
	}
	if !json.Valid(body) {
		return fmt.Errorf("status %d, body not JSON: %.300q", code, body)
	}
	if code < 400 {
		return nil
	}
	if len(body) > MaxAnswer {
		return fmt.Errorf("status %d, %d-byte body, over %d: %.300s", code, len(body), MaxAnswer, body)
	}
	var st struct {
		Code    *codes.Code
		Message string
		Details []struct {
			Type            string `json:"@type"`
			FieldViolations []struct{ Field, Description string }
		}
	}
	if err := json.Unmarshal(body, &st); err != nil || st.Code == nil || st.Message == "" {
		return fmt.Errorf("status %d, not a status with code and message (%v): %.300s", code, err, body)
	}
	if *st.Code != codes.InvalidArgument {
		return nil
	}
	if code != http.StatusBadRequest {
		return fmt.Errorf("InvalidArgument as status %d: %.300s", code, body)
	}
	named := 0
	for _, d := range st.Details {
		for _, v := range d.FieldViolations {
			if v.Field == "" || v.Description == "" {
				return fmt.Errorf("field violation without a field or reason: %.300s", body)
			}
			named++
		}
	}
	if named == 0 {
		return fmt.Errorf("InvalidArgument naming no field: %.300s", body)
	}
	return nil
}

// SendFuzzed sends a fuzzed REST request: route under base, with param
// (escaped) for its %s and query, under a deadline that turns a hang into a
// failure. Inputs that make no URL skip the test.
func SendFuzzed(t *testing.T, method, base, route, param, query, body string) (code int, answer []byte, target string) {
	t.Helper()
	target = base + strings.Replace(route, "%s", url.PathEscape(param), 1)
	if query != "" {
		target += "?" + escapeUnsendable(query)
	}
	if _, err := url.Parse(target); err != nil {
		t.Skip("not a URL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, answer = Do(t, ctx, method, target, body)
	return code, answer, target
}

// escapeUnsendable escapes the bytes of a query that an HTTP request line
// cannot carry (spaces, controls, non-ASCII, and '#', which would end the
// URL): the client would send them as they are, and net/http's server would
// refuse the line in plain text before any handler of ours ran. Everything
// else, malformed escapes included, goes as it is.
func escapeUnsendable(q string) string {
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		if c := q[i]; c <= ' ' || c >= 0x7f || c == '#' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
