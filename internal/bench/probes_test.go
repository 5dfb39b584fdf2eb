package bench

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
)

// A REST error is counted as the gRPC status the gateway wrote in its body.
func TestRESTError(t *testing.T) {
	body := `{"code":9,"message":"order x is already cancelled","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"ORDER_ALREADY_CANCELLED","domain":"orderly"}]}`
	k := keyOf("cancel", restError(400, strings.NewReader(body)))
	if k != (errKey{"cancel", codes.FailedPrecondition, "ORDER_ALREADY_CANCELLED"}) {
		t.Errorf("got %+v", k)
	}
	if k := keyOf("get_order_rest", restError(502, strings.NewReader("<html>bad gateway</html>"))); k.code != codes.Unknown {
		t.Errorf("a body that is not the gateway's: %+v", k)
	}
}
