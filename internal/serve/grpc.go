package serve

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// streamWorkers is how many goroutines serve calls, reused from call to call.
const streamWorkers = 64

// NewGRPCServer returns a gRPC server that logs, measures and recovers every
// call, with the health and reflection services registered, protected as
// sec says. The caller registers its own services, then marks them serving
// on the health server.
func NewGRPCServer(log *slog.Logger, metrics *Metrics, sec Security) (*GRPCServer, *health.Server) {
	obs := &observer{log: log, metrics: metrics, long: newLongCalls()}
	hs := health.NewServer()
	// The observer runs first, so that a refused call is logged, measured
	// and recovered like any other; the guard then admits it or not.
	unary, stream := obs.unary, obs.stream
	if gu, gs := sec.interceptors(); gu != nil {
		unary, stream = chainUnary(obs.unary, gu), chainStream(obs.stream, gs)
	}
	srv := &GRPCServer{
		Server: grpc.NewServer(append([]grpc.ServerOption{
			// Traces every call, continuing the caller's trace (W3C trace
			// context in the metadata).
			grpc.StatsHandler(otelgrpc.NewServerHandler()),
			grpc.UnaryInterceptor(unary),
			grpc.StreamInterceptor(stream),
			// Clients (the EventStoreDB client among them) ping idle connections;
			// the default policy would answer with GOAWAY and drop streams.
			grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
			// A call on a fresh goroutine grows its stack through the
			// handler's depth every time; workers keep theirs. Calls beyond
			// them run on fresh goroutines as usual.
			grpc.NumStreamWorkers(streamWorkers),
		}, sec.grpcOptions()...)...),
		unary:   unary,
		methods: map[string]localMethod{},
		obs:     obs,
		health:  hs,
	}
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return srv, hs
}

// chainUnary runs outer around inner around the handler. The server's
// interceptor is also what the gateway's in-process calls run under (see
// localConn), so the chain is built here, once, for both.
func chainUnary(outer, inner grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return outer(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			return inner(ctx, req, info, handler)
		})
	}
}

func chainStream(outer, inner grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return outer(srv, ss, info, func(srv any, ss grpc.ServerStream) error {
			return inner(srv, ss, info, handler)
		})
	}
}

type observer struct {
	log     *slog.Logger
	metrics *Metrics
	long    *longCalls
}

func (o *observer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	if waits(req) {
		var done func()
		ctx, done = o.long.begin(ctx)
		defer done()
	}
	defer func() {
		if r := recover(); r != nil {
			err = o.panicked(info.FullMethod, r)
		}
		err = outcome(ctx, err, false)
		o.done(ctx, info.FullMethod, start, err)
	}()
	return handler(ctx, req)
}

func (o *observer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	start := time.Now()
	ctx, done := o.long.begin(ss.Context())
	defer done()
	defer func() {
		if r := recover(); r != nil {
			err = o.panicked(info.FullMethod, r)
		}
		err = outcome(ctx, err, true)
		o.done(ctx, info.FullMethod, start, err)
	}()
	return handler(srv, ctxStream{ss, ctx})
}

// ctxStream is a server stream whose handler runs under ctx.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s ctxStream) Context() context.Context { return s.ctx }

// panicked turns a handler panic into Internal: one bad request must not take
// the process, and every other client, down with it.
func (o *observer) panicked(method string, r any) error {
	o.log.Error("handler panicked", "method", method, "panic", r, "stack", string(debug.Stack()))
	return status.Error(codes.Internal, "internal error")
}

func (o *observer) done(ctx context.Context, method string, start time.Time, err error) {
	code := status.Code(err)
	elapsed := time.Since(start)
	o.metrics.observe(method, code, elapsed)
	level := slog.LevelDebug
	switch code {
	// The caller's mistakes, refusals of the guard among them: a flood of
	// refused calls must not flood the log (the metric counts them).
	case codes.OK, codes.Canceled, codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition,
		codes.Unauthenticated, codes.PermissionDenied, codes.ResourceExhausted:
	default:
		level = slog.LevelWarn
	}
	if method == healthpb.Health_Check_FullMethodName || method == healthpb.Health_Watch_FullMethodName {
		level = slog.LevelDebug
	}
	o.log.Log(ctx, level, "rpc", "method", method, "code", code.String(), "ms", float64(elapsed.Microseconds())/1000, "err", errString(err))
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return status.Convert(err).Message()
}

// Metrics holds a service's Prometheus registry and its RPC metrics.
type Metrics struct {
	Registry *prometheus.Registry
	rpcs     *prometheus.HistogramVec
}

// NewMetrics returns a registry with Go runtime and process collectors and the
// RPC histogram every service exports.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	rpcs := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "orderly_grpc_server_handling_seconds",
		Help:    "Time to handle a gRPC call, by method and status code.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"method", "code"})
	reg.MustRegister(rpcs)
	return &Metrics{Registry: reg, rpcs: rpcs}
}

func (m *Metrics) observe(method string, code codes.Code, d time.Duration) {
	if m != nil {
		m.rpcs.WithLabelValues(method, code.String()).Observe(d.Seconds())
	}
}

// ListenGRPC listens on addr with a server for one service, registered by
// register and marked serving on the health service.
func ListenGRPC(addr string, log *slog.Logger, metrics *Metrics, sec Security, service string, register func(grpc.ServiceRegistrar)) (*GRPCServer, net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen for %s: %w", service, err)
	}
	srv, hs := NewGRPCServer(log, metrics, sec)
	register(srv)
	hs.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
	return srv, lis, nil
}
