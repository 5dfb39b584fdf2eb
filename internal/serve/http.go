package serve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/orderly/orderly/gen/openapi"
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

// NewGatewayMux returns a grpc-gateway mux that speaks lowerCamel JSON, always
// emits zero values (a client reading `position: 0` should not have to guess),
// refuses unknown request fields rather than silently dropping them, and
// names the offending field of every request it cannot decode.
func NewGatewayMux(opts ...runtime.ServeMuxOption) *runtime.ServeMux {
	marshaler := &runtime.HTTPBodyMarshaler{Marshaler: &runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}}
	return runtime.NewServeMux(append([]runtime.ServeMuxOption{
		runtime.WithMarshalerOption(runtime.MIMEWildcard, marshaler),
		runtime.WithErrorHandler(errorHandler),
		runtime.WithIncomingHeaderMatcher(incomingHeaders),
	}, opts...)...)
}

// NewHTTPHandler routes /metrics, /healthz and /openapi.json beside the API.
func NewHTTPHandler(api http.Handler, metrics *Metrics) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.Handle("GET /metrics", promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{}))
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

// Upstream is a gRPC server address and the REST routes it serves.
type Upstream struct {
	Addr     string
	Register GatewayRegistrar
}

// NewGateway returns the REST handler for the upstream gRPC services. Calls
// go through loopback gRPC connections, so REST and gRPC share interceptors,
// metrics and status mapping exactly. closeConns closes those connections.
func NewGateway(ctx context.Context, metrics *Metrics, upstreams ...Upstream) (h http.Handler, closeConns func() error, err error) {
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
		conn, err := grpc.NewClient(u.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			_ = closeConns()
			return nil, nil, fmt.Errorf("gateway: dial %s: %w", u.Addr, err)
		}
		conns = append(conns, conn)
		if err := u.Register(ctx, mux, conn); err != nil {
			_ = closeConns()
			return nil, nil, fmt.Errorf("gateway: register %s: %w", u.Addr, err)
		}
	}
	return NewHTTPHandler(mux, metrics), closeConns, nil
}
