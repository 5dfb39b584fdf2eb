// Package tracing sets up OpenTelemetry for a process and carries trace
// context through the event store: an event's metadata records the trace
// and span that appended it ($traceId, $spanId, as the official .NET
// client and Eventuous write them), and a reader of the event (the saga,
// the projector) starts its span as a child of that one, so one trace
// follows a request across the event hop.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Name is the instrumentation scope of Orderly's own spans.
const Name = "github.com/orderly/orderly"

// Tracer is Orderly's tracer, from the global provider (set by Setup, or a
// test's).
func Tracer() trace.Tracer { return otel.Tracer(Name) }

// Enabled reports whether the standard OTEL_* environment asks for traces
// to be exported over OTLP: an OTLP endpoint is set, the SDK is not
// disabled, and OTEL_TRACES_EXPORTER is unset or "otlp".
func Enabled(getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	if e := getenv("OTEL_TRACES_EXPORTER"); e != "" && e != "otlp" {
		return false
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup installs the W3C trace-context propagator and, when the
// environment enables it (see Enabled), a tracer provider exporting to
// OTLP over HTTP as the OTEL_EXPORTER_OTLP_* variables say, with service
// as service.name unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES
// names one. Otherwise spans are not recorded, and trace context still
// passes through (a caller's trace goes on in events). shutdown flushes
// the spans not yet exported.
func Setup(ctx context.Context, service string, log *slog.Logger) (shutdown func(context.Context) error, err error) {
	UsePropagator()
	if !Enabled(os.Getenv) {
		return func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res, err := resource.Merge(resource.NewSchemaless(attribute.String("service.name", service)), resource.Environment())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing", "err", err) }))
	log.Info("exporting traces over OTLP", "service", service)
	return tp.Shutdown, nil
}

// UsePropagator makes W3C trace context (and baggage) the global
// propagator, which the otelgrpc and otelhttp handlers read and write.
func UsePropagator() {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
}

// IDs returns the trace and span IDs of ctx's span, in hex; empty when it
// has none.
func IDs(ctx context.Context) (traceID, spanID string) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return "", ""
	}
	return sc.TraceID().String(), sc.SpanID().String()
}

// FromIDs returns ctx with the span traceID/spanID (from an event's
// metadata) as its remote parent; ctx unchanged when they are absent or
// malformed (events written before tracing, or by hand). The parent is
// taken as sampled: metadata does not record the flags, and a consumer's
// spans are worth having whenever the trace is recorded at all.
func FromIDs(ctx context.Context, traceID, spanID string) context.Context {
	if traceID == "" || spanID == "" {
		return ctx
	}
	tid, err1 := trace.TraceIDFromHex(traceID)
	sid, err2 := trace.SpanIDFromHex(spanID)
	if err1 != nil || err2 != nil {
		return ctx
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

// Fail marks span failed with err, if any.
func Fail(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
}

// flushTimeout bounds the export of the last spans on the way out.
const flushTimeout = 2 * time.Second

// Start is Setup for a command: the returned closer (for serve.Closers,
// added first so that it runs last) flushes the spans within a bound.
func Start(ctx context.Context, service string, log *slog.Logger) (closer func() error, err error) {
	shutdown, err := Setup(ctx, service, log)
	if err != nil {
		return nil, err
	}
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
		defer cancel()
		return shutdown(ctx)
	}, nil
}
