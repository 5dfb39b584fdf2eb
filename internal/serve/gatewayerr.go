package serve

import (
	"context"
	"net/http"
	"regexp"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fieldInMessage finds the field a gateway decoding error is about: query
// parameters ("parsing field"), path parameters ("parameter:"), and protojson
// body errors (unknown field, invalid value for a field).
var fieldInMessage = []*regexp.Regexp{
	regexp.MustCompile(`parsing (?:field|list) "([^"]+)"`),
	regexp.MustCompile(`parameter: ([A-Za-z0-9_.]+)`),
	regexp.MustCompile(`unknown field "([^"]+)"`),
	regexp.MustCompile(`invalid value for [a-z0-9 ]*field ([A-Za-z0-9_]+)`),
}

// errorMarshaler writes error bodies with only the fields that are set: the
// API's resources always show their zero values, but an empty reason or a
// null localized message in every field violation says nothing.
var errorMarshaler = &runtime.JSONPb{}

// errorHandler is grpc-gateway's default error writer, except that a request
// the gateway itself could not decode (bad JSON, a malformed query or path
// parameter) gets the same google.rpc.BadRequest detail the services give, so
// every 400 names its field.
func errorHandler(ctx context.Context, mux *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if st, ok := status.FromError(err); ok && st.Code() == codes.InvalidArgument && !hasBadRequest(st) {
		field := "body"
		for _, re := range fieldInMessage {
			if sub := re.FindStringSubmatch(st.Message()); sub != nil {
				field = sub[1]
				break
			}
		}
		br := &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: st.Message()}}}
		if ds, derr := st.WithDetails(br); derr == nil {
			err = ds.Err()
		}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, errorMarshaler, w, r, err)
}

func hasBadRequest(st *status.Status) bool {
	for _, d := range st.Details() {
		if _, ok := d.(*errdetails.BadRequest); ok {
			return true
		}
	}
	return false
}
