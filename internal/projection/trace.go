package projection

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderly/orderly/internal/tracing"
	"github.com/orderly/orderly/internal/views"
)

// traceWindow is the age past which an applied event gets no span.
const traceWindow = 10 * time.Minute

// traceApplied records a span for each event of a written batch that
// carries trace context, as a child of the span that appended it, from the
// batch's start to now: a batch has many parents, so each event's trace
// gets its own span (one per event and view, and none for events written
// before tracing). The live projection calls it, not a rebuild, and only
// for events recorded within traceWindow: older ones are history being
// caught up with (a new view store, a long outage), not a request someone
// follows, and their traces ended long ago.
func traceApplied(t views.Target, d decoded, start time.Time) {
	tr := tracing.Tracer()
	for _, pt := range d.parts {
		for _, rec := range pt.recs {
			if rec.Meta.TraceID == "" || start.Sub(rec.RecordedAt) > traceWindow {
				continue
			}
			_, span := tr.Start(tracing.FromIDs(context.Background(), rec.Meta.TraceID, rec.Meta.SpanID), "projection "+string(t.View),
				trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
					attribute.String("orderly.view", string(t.View)),
					attribute.String("orderly.stream", rec.Stream), attribute.Int64("orderly.revision", int64(rec.Revision)),
					attribute.String("orderly.event_type", rec.Type), attribute.Int("orderly.batch_events", d.own)))
			span.End()
		}
	}
}
