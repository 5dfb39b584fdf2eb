// Package auth decides who may call what: API keys and JWT bearer tokens
// authenticate a caller, a table of permissions per RPC authorizes it, and
// per-caller token buckets limit its rate. One Guard's interceptors serve
// every gRPC server of a process, and so the REST gateway, whose calls run
// under the same interceptors.
package auth

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Flags configure a Guard.
type Flags struct {
	APIKeysFile          string
	JWKSURL, JWTKeyFile  string
	JWTIssuer            string
	JWTAudience          string
	JWTPermissionsClaim  string
	RateLimit            float64
	RateBurst            int
	MetricsAuthenticated bool
}

// Register declares the flags on fs (config.Parse adds their ORDERLY_*
// variables).
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.APIKeysFile, "api-keys", "", "file of API keys, one `KEY SUBJECT PERMISSION[,PERMISSION...]` a line, reloaded on change; turns authentication on")
	fs.StringVar(&f.JWKSURL, "jwt-jwks-url", "", "JWKS URL of the keys JWT bearer tokens are signed with; turns authentication on (needs -jwt-issuer and -jwt-audience)")
	fs.StringVar(&f.JWTKeyFile, "jwt-key-file", "", "PEM public key or JWKS file JWT bearer tokens are signed with; turns authentication on")
	fs.StringVar(&f.JWTIssuer, "jwt-issuer", "", "required iss of JWT bearer tokens")
	fs.StringVar(&f.JWTAudience, "jwt-audience", "", "required aud of JWT bearer tokens")
	fs.StringVar(&f.JWTPermissionsClaim, "jwt-permissions-claim", "permissions", "claim of JWT bearer tokens listing their permissions (a JSON array or a space-separated string)")
	fs.Float64Var(&f.RateLimit, "rate-limit", 0, "calls per second each caller may make (its subject, or its address when anonymous); 0 is no limit")
	fs.IntVar(&f.RateBurst, "rate-burst", 20, "calls a caller may make at once above -rate-limit")
	fs.BoolVar(&f.MetricsAuthenticated, "metrics-auth", false, "require the read permission on /metrics too (with authentication on)")
}

// Guard authenticates, authorizes and rate-limits calls. A nil Guard lets
// everything through.
type Guard struct {
	keys    *apiKeys
	tokens  *jwtVerifier
	limiter *limiter
	metrics bool
}

// New returns the Guard the flags configure, nil when they turn nothing
// on. A JWKS is fetched until ctx ends.
func (f Flags) New(ctx context.Context, log *slog.Logger) (*Guard, error) {
	g := &Guard{metrics: f.MetricsAuthenticated}
	var err error
	if f.APIKeysFile != "" {
		if g.keys, err = loadAPIKeys(f.APIKeysFile, log); err != nil {
			return nil, err
		}
	}
	g.tokens, err = newJWTVerifier(ctx, jwtConfig{jwksURL: f.JWKSURL, keyFile: f.JWTKeyFile, issuer: f.JWTIssuer, audience: f.JWTAudience, claim: f.JWTPermissionsClaim}, log)
	if err != nil {
		return nil, err
	}
	switch {
	case f.RateLimit < 0 || math.IsNaN(f.RateLimit) || math.IsInf(f.RateLimit, 0):
		return nil, fmt.Errorf("-rate-limit %v: want a number of calls per second, 0 for none", f.RateLimit)
	case f.RateLimit > 0 && f.RateBurst < 1:
		return nil, fmt.Errorf("-rate-burst %d: want at least 1", f.RateBurst)
	case f.RateLimit > 0:
		g.limiter = newLimiter(f.RateLimit, f.RateBurst, maxLimited)
	}
	if f.MetricsAuthenticated && !g.authenticates() {
		return nil, errors.New("-metrics-auth needs authentication: -api-keys, -jwt-jwks-url or -jwt-key-file")
	}
	if !g.authenticates() && g.limiter == nil {
		return nil, nil
	}
	return g, nil
}

func (g *Guard) authenticates() bool { return g != nil && (g.keys != nil || g.tokens != nil) }

// Unary is the guard's unary server interceptor.
func (g *Guard) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := g.admit(ctx, info.FullMethod)
	if err != nil {
		_ = grpc.SetHeader(ctx, refusalHeader(err))
		return nil, err
	}
	return handler(ctx, req)
}

// Stream is the guard's stream server interceptor: a stream is checked
// once, when it opens.
func (g *Guard) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := g.admit(ss.Context(), info.FullMethod)
	if err != nil {
		_ = ss.SetHeader(refusalHeader(err))
		return err
	}
	return handler(srv, ctxStream{ss, ctx})
}

// refusalHeader is the response header of a refusal, as HTTP has it:
// www-authenticate on UNAUTHENTICATED, retry-after on RESOURCE_EXHAUSTED.
// The REST gateway passes both on as HTTP headers (for streams too, whose
// errors it writes without its error handler); gRPC clients see them as
// header metadata beside the status details.
func refusalHeader(err error) metadata.MD {
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unauthenticated:
		return metadata.Pairs(HeaderChallenge, Challenge(st))
	case codes.ResourceExhausted:
		return metadata.Pairs(HeaderRetryAfter, RetryAfter(st))
	}
	return nil
}

// The response headers of refusals (see refusalHeader).
const (
	HeaderChallenge  = "www-authenticate"
	HeaderRetryAfter = "retry-after"
)

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s ctxStream) Context() context.Context { return s.ctx }

// admit checks a call of method: its caller's credentials and permission,
// then its rate. The context it returns carries the caller (see Subject).
func (g *Guard) admit(ctx context.Context, method string) (context.Context, error) {
	perm := required(method)
	if g == nil || perm == open {
		return ctx, nil
	}
	key := ""
	if g.authenticates() {
		p, err := g.authenticate(bearer(metadata.ValueFromIncomingContext(ctx, "authorization")))
		if err != nil {
			return ctx, err
		}
		if !p.Allows(perm) {
			return ctx, status.Errorf(codes.PermissionDenied, "%s may not call %s: it needs the %s permission", p.Subject, method, perm)
		}
		ctx = context.WithValue(ctx, principalKey{}, p)
		key = "subject:" + p.Subject
	} else {
		key = "address:" + clientAddress(ctx)
	}
	if g.limiter != nil {
		if ok, wait := g.limiter.allow(key, time.Now()); !ok {
			return ctx, rateLimited(wait)
		}
	}
	return ctx, nil
}

// bearer is the token of an "authorization: Bearer <token>" header; "" if
// there is none.
func bearer(values []string) string {
	if len(values) != 1 {
		return ""
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// authenticate finds the caller of token: an API key, else a JWT.
func (g *Guard) authenticate(token string) (Principal, error) {
	if token == "" {
		return Principal{}, unauthenticated(reasonMissing, "missing credentials: send authorization: Bearer <API key or token>")
	}
	if g.keys != nil {
		if p, err := g.keys.lookup(token); err == nil {
			return p, nil
		}
	}
	if g.tokens != nil && strings.Count(token, ".") == 2 {
		p, err := g.tokens.verify(token)
		if err != nil {
			return Principal{}, unauthenticated(reasonInvalid, "invalid token: "+err.Error())
		}
		return p, nil
	}
	return Principal{}, unauthenticated(reasonInvalid, "invalid credentials")
}

// Reasons of an Unauthenticated error, in its ErrorInfo: they choose the
// WWW-Authenticate challenge of a REST answer (see Challenge).
const (
	errorDomain   = "orderly"
	reasonMissing = "MISSING_CREDENTIALS"
	reasonInvalid = "INVALID_CREDENTIALS"
)

func unauthenticated(reason, msg string) error {
	st, err := status.New(codes.Unauthenticated, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain})
	if err != nil {
		return status.Error(codes.Unauthenticated, msg)
	}
	return st.Err()
}

// rateLimited is ResourceExhausted with a RetryInfo detail saying when to
// come back (a REST answer's Retry-After, see RetryAfter).
func rateLimited(wait time.Duration) error {
	msg := fmt.Sprintf("rate limit exceeded: retry in %s", wait.Round(time.Millisecond))
	st, err := status.New(codes.ResourceExhausted, msg).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)})
	if err != nil {
		return status.Error(codes.ResourceExhausted, msg)
	}
	return st.Err()
}

// Challenge is the WWW-Authenticate header of an Unauthenticated answer
// (RFC 6750): it says that a bearer token is wanted and, when the one sent
// was refused, that it was invalid.
func Challenge(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain && info.GetReason() == reasonInvalid {
			return `Bearer realm="orderly", error="invalid_token"`
		}
	}
	return `Bearer realm="orderly"`
}

// RetryAfter is the Retry-After header of an answer that has a RetryInfo
// detail, in whole seconds rounded up (at least 1); "" without one.
func RetryAfter(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.RetryInfo); ok {
			return fmt.Sprint(max(1, int64(math.Ceil(info.GetRetryDelay().AsDuration().Seconds()))))
		}
	}
	return ""
}

type principalKey struct{}

// Subject is the authenticated caller of the call ctx belongs to; "" when
// the call was not authenticated.
func Subject(ctx context.Context) string {
	p, _ := ctx.Value(principalKey{}).(Principal)
	return p.Subject
}

// inProcessNetwork is the network of the REST gateway's in-memory
// connection (grpc's bufconn).
const inProcessNetwork = "bufconn"

// clientAddress is the caller's IP address: its connection's, or for a
// REST call (which reaches the server in process, with no peer or an
// in-memory one) the address the gateway appended to x-forwarded-for from
// the HTTP connection. A client's own x-forwarded-for over gRPC is never
// read: it could name anyone.
func clientAddress(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil && p.Addr.Network() != inProcessNetwork {
		return hostOf(p.Addr.String())
	}
	fwd := metadata.ValueFromIncomingContext(ctx, "x-forwarded-for")
	if len(fwd) == 0 {
		return "unknown"
	}
	last := fwd[len(fwd)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.TrimSpace(last)
}

func hostOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// Metrics wraps the /metrics handler: with -metrics-auth it needs the read
// permission, answered like the API's refusals.
func (g *Guard) Metrics(next http.Handler) http.Handler {
	if g == nil || !g.metrics {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := g.authenticate(bearer(r.Header.Values("Authorization")))
		if err == nil && !p.Allows(Read) {
			err = status.Errorf(codes.PermissionDenied, "%s may not read /metrics: it needs the %s permission", p.Subject, Read)
		}
		if err != nil {
			st := status.Convert(err)
			code := http.StatusForbidden
			if st.Code() == codes.Unauthenticated {
				code = http.StatusUnauthorized
				w.Header().Set("WWW-Authenticate", Challenge(st))
			}
			http.Error(w, st.Message(), code)
			return
		}
		next.ServeHTTP(w, r)
	})
}
