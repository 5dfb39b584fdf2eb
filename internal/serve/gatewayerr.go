package serve

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orderly/orderly/internal/auth"
)

// fieldInMessage finds the field a gateway decoding error is about: query
// parameters ("parsing field", strictQuery's "unknown query parameter"), path
// parameters ("parameter:"), and protojson body errors (unknown field, invalid
// value for a field).
var fieldInMessage = []*regexp.Regexp{
	regexp.MustCompile(`parsing (?:field|list) "([^"]+)"`),
	regexp.MustCompile(`too many values for field "([^"]+)"`),
	regexp.MustCompile(`parameter: ([A-Za-z0-9_.]+)`),
	regexp.MustCompile(`unknown (?:field|query parameter) "([^"]+)"`),
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
//
// The gateway's own messages quote the request (a value it could not parse,
// an unknown field's name), which may be megabytes long: they are cut to
// maxGatewayMessage bytes, so that a refusal stays small, and bytes that are
// not UTF-8 are replaced: protojson cannot encode them, and the client would
// get a 500 for its own malformed request.
//
// On 401 WWW-Authenticate is the guard's bearer challenge alone:
// grpc-gateway copies the status message into it, besides the challenge
// the guard sent as header metadata (see outgoingHeaders).
func errorHandler(ctx context.Context, mux *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if st, ok := status.FromError(err); ok && !utf8.ValidString(st.Message()) {
		p := st.Proto()
		p.Message = strings.ToValidUTF8(p.Message, "\uFFFD")
		err = status.FromProto(p).Err()
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unauthenticated {
		w = challengeWriter{w, auth.Challenge(st)}
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.InvalidArgument && !hasBadRequest(st) {
		msg := truncate(st.Message(), maxGatewayMessage)
		field := "body"
		for _, re := range fieldInMessage {
			if sub := re.FindStringSubmatch(msg); sub != nil {
				field = sub[1]
				break
			}
		}
		st = status.New(st.Code(), msg)
		br := &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: msg}}}
		if ds, derr := st.WithDetails(br); derr == nil {
			err = ds.Err()
		} else {
			err = st.Err()
		}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, errorMarshaler, w, r, err)
}

// challengeWriter sets WWW-Authenticate as the answer's header is
// written, over what grpc-gateway put there.
type challengeWriter struct {
	http.ResponseWriter
	challenge string
}

func (c challengeWriter) WriteHeader(code int) {
	c.Header().Set("WWW-Authenticate", c.challenge)
	c.ResponseWriter.WriteHeader(code)
}

// maxGatewayMessage bounds the message of a request the gateway could not
// decode.
const maxGatewayMessage = 512

// truncate cuts s to at most n bytes, on a UTF-8 boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

func hasBadRequest(st *status.Status) bool {
	for _, d := range st.Details() {
		if _, ok := d.(*errdetails.BadRequest); ok {
			return true
		}
	}
	return false
}

// probeKey marks a request routingErrorHandler sends through the mux to learn
// whether a method is routed; the value is the *bool allowProbe sets.
type probeKey struct{}

// allowProbe is a gateway middleware: it answers a probe by noting that the
// method is routed, before the handler, so a probe never reaches a service.
func allowProbe(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if routed, ok := r.Context().Value(probeKey{}).(*bool); ok {
			*routed = true
			return
		}
		next(w, r, params)
	}
}

// probedMethods are the methods a 405's Allow header may list: those the
// API's routes use.
var probedMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// routingErrorHandler answers a method a path does not take with 405 and the
// Allow header HTTP requires (grpc-gateway answers 501 Not Implemented and
// no Allow); other routing errors go to grpc-gateway's handler. The methods
// allowed are found by sending bodiless probes for each through the mux.
func routingErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	if r.Context().Value(probeKey{}) != nil {
		return // a probe for a method the path does not take
	}
	if httpStatus != http.StatusMethodNotAllowed {
		runtime.DefaultRoutingErrorHandler(ctx, mux, m, w, r, httpStatus)
		return
	}
	var allow []string
	for _, method := range probedMethods {
		routed := false
		probe := r.Clone(context.WithValue(r.Context(), probeKey{}, &routed))
		probe.Method, probe.Body, probe.ContentLength = method, http.NoBody, 0
		// Without these a POST probe could be routed as another method.
		probe.Header.Del("X-HTTP-Method-Override")
		probe.Header.Del("Content-Type")
		mux.ServeHTTP(discard{}, probe)
		if routed {
			allow = append(allow, method)
		}
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	errorHandler(ctx, mux, m, w, r, &runtime.HTTPStatusError{
		HTTPStatus: http.StatusMethodNotAllowed,
		Err:        status.Errorf(codes.Unimplemented, "%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")),
	})
}

// discard is a ResponseWriter for probes, which write nothing.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}
