package serve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/orderly/orderly/gen/openapi"
	"github.com/orderly/orderly/internal/apijson"
	"github.com/orderly/orderly/internal/auth"
)

// CorrelationHeader carries a client's correlation ID: gRPC metadata, or an
// HTTP header of the same name that the gateway passes on.
const CorrelationHeader = "x-correlation-id"

// incomingHeaders passes the correlation header to the gRPC call besides the
// gateway's defaults (grpc-gateway v2 forwards no custom header by itself).
func incomingHeaders(key string) (string, bool) {
	if strings.EqualFold(key, CorrelationHeader) {
		return CorrelationHeader, true
	}
	return runtime.DefaultHeaderMatcher(key)
}

// outgoingHeaders passes the guard's refusal headers (WWW-Authenticate,
// Retry-After) on as the HTTP headers they are; other header metadata keeps
// grpc-gateway's Grpc-Metadata- prefix.
func outgoingHeaders(key string) (string, bool) {
	switch key {
	case auth.HeaderChallenge, auth.HeaderRetryAfter:
		return key, true
	}
	return runtime.MetadataHeaderPrefix + key, true
}

var setQueryParser sync.Once

// NewGatewayMux returns a grpc-gateway mux that speaks lowerCamel JSON
// (written by apijson, protojson's output at a fraction of its cost), always
// emits zero values (a client reading `position: 0` should not have to guess),
// refuses unknown request fields and query parameters rather than silently
// dropping them, names the offending field of every request it cannot
// decode, and answers a method a path does not take with 405 and Allow.
func NewGatewayMux(opts ...runtime.ServeMuxOption) *runtime.ServeMux {
	setQueryParser.Do(func() {
		// grpc-gateway keeps the query parser in a global, set by applying
		// this option to any mux: set once, before any of our gateways
		// exists, not by each (two gateways built at once would race).
		runtime.NewServeMux(runtime.SetQueryParameterParser(&strictQuery{}))
	})
	marshaler := &runtime.HTTPBodyMarshaler{Marshaler: apijson.NewMarshaler()}
	return runtime.NewServeMux(append([]runtime.ServeMuxOption{
		runtime.WithMarshalerOption(runtime.MIMEWildcard, marshaler),
		runtime.WithErrorHandler(errorHandler),
		runtime.WithRoutingErrorHandler(routingErrorHandler),
		runtime.WithMiddlewares(allowProbe),
		runtime.WithIncomingHeaderMatcher(incomingHeaders),
		runtime.WithOutgoingHeaderMatcher(outgoingHeaders),
	}, opts...)...)
}

// NewHTTPHandler routes /metrics, /healthz and /openapi.json beside the
// API. Health and the API description are open to all; /metrics too unless
// sec's guard says otherwise (-metrics-auth).
func NewHTTPHandler(api http.Handler, metrics *Metrics, sec Security) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.Handle("GET /metrics", sec.Guard.Metrics(promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapi.Spec)
	})
	return mux
}

// GatewayRegistrar registers a service's REST routes on a mux, forwarding
// to conn (the generated Register<Service>HandlerClient, adapted).
type GatewayRegistrar func(ctx context.Context, mux *runtime.ServeMux, conn grpc.ClientConnInterface) error

// Upstream is a gRPC server of this process and the REST routes it serves.
type Upstream struct {
	Server   *GRPCServer
	Register GatewayRegistrar
}

// inProcessBuffer is the in-memory connection's buffer per direction.
const inProcessBuffer = 1 << 20

// NewGateway returns the REST handler for the upstream gRPC servers. REST
// calls reach each server in process (see localConn): they share the
// servers' interceptors, metrics and status mapping exactly, with no network
// hop. The servers' Stop ends the in-memory connections that carry streams;
// closeConns closes their client side.
func NewGateway(ctx context.Context, metrics *Metrics, sec Security, upstreams ...Upstream) (h http.Handler, closeConns func() error, err error) {
	var conns []*grpc.ClientConn
	closeConns = func() error {
		var errs []error
		for _, c := range conns {
			errs = append(errs, c.Close())
		}
		return errors.Join(errs...)
	}
	mux := NewGatewayMux()
	for _, u := range upstreams {
		lis := bufconn.Listen(inProcessBuffer)
		go func() { _ = u.Server.Serve(inProcessListener{lis}) }()
		conn, err := grpc.NewClient("passthrough:///in-process",
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
		if err != nil {
			_ = closeConns()
			return nil, nil, fmt.Errorf("gateway: connect in process: %w", err)
		}
		conns = append(conns, conn)
		if err := u.Register(ctx, mux, localConn{srv: u.Server, remote: conn}); err != nil {
			_ = closeConns()
			return nil, nil, fmt.Errorf("gateway: register: %w", err)
		}
	}
	// otelhttp traces each REST call, continuing the caller's trace; the
	// gRPC handler it reaches runs in that span.
	api := otelhttp.NewHandler(http.MaxBytesHandler(mux, MaxRequestBody), "rest", otelhttp.WithSpanNameFormatter(restSpanName))
	return NewHTTPHandler(api, metrics, sec), closeConns, nil
}

// restSpanName names a REST call's span by its method only: paths carry
// IDs, which would make every span name unique.
func restSpanName(_ string, r *http.Request) string { return "HTTP " + r.Method }

// MaxRequestBody bounds a REST request body as gRPC's default receive limit
// bounds a message: calls no longer pass through a gRPC transport, and a
// body past it is refused (400, naming "body") before it is decoded.
const MaxRequestBody = 4 << 20

// ListenGateway serves the REST gateway of upstreams on addr, as a Server
// for Run; closeConns closes its connections to the upstreams.
func ListenGateway(ctx context.Context, addr string, metrics *Metrics, sec Security, upstreams ...Upstream) (s Server, closeConns func() error, err error) {
	handler, closeConns, err := NewGateway(ctx, metrics, sec, upstreams...)
	if err != nil {
		return Server{}, nil, err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		_ = closeConns()
		return Server{}, nil, fmt.Errorf("listen for REST: %w", err)
	}
	return HTTP("rest", NewHTTPServer(handler, sec), lis), closeConns, nil
}

// NewHTTPServer returns the server of an HTTP listener of ours, with TLS
// when sec has certificates (HTTP serves it).
func NewHTTPServer(h http.Handler, sec Security) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, TLSConfig: sec.httpTLS()}
}
