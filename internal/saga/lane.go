package saga

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/tracing"
)

// lane runs its events one at a time, in the order dispatched (log order),
// until ctx is done.
func (s *Saga) lane(ctx context.Context, jobs <-chan job) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-jobs:
			if !s.process(ctx, j) {
				return // abandoned: unfinished, so the watermark stays before it
			}
			j.mark.wm.finish(j.done)
			s.finished()
			s.meter.Add(1)
			<-s.slots
			s.metrics.handled.WithLabelValues(j.raw.EventType).Inc()
			if s.unsaved.Add(1) >= int64(s.opts.CheckpointEvery) {
				select {
				case s.nudge <- struct{}{}:
				default: // a save is already due
				}
			}
		}
	}
}

// process runs j's step until it is done, retrying failures with backoff
// in this lane only: false when ctx ended first. An event of a newer schema
// waits here, stalling its lane, until a build that reads it runs.
func (s *Saga) process(ctx context.Context, j job) bool {
	waiting, stalled := false, false
	defer func() {
		if waiting {
			s.metrics.waiting.Dec()
		}
		if stalled {
			s.pace.stalled[j.lane].Store(false)
		}
	}()
	if j.err == nil && s.ahead.take(j.rec.EventID) {
		return true // its step was taken right after the step that recorded it
	}
	// The step continues the trace of the command that appended the event.
	ctx, span := tracing.Tracer().Start(tracing.FromIDs(ctx, j.rec.Meta.TraceID, j.rec.Meta.SpanID), "saga "+j.raw.EventType,
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
			attribute.String("orderly.stream", j.raw.StreamID), attribute.Int64("orderly.revision", int64(j.raw.EventNumber)),
			attribute.Int64("orderly.position", int64(j.raw.Position.Commit))))
	defer span.End()
	for failures := 1; ; failures++ {
		err := s.react(ctx, j.rec, j.err)
		var p *poison
		if errors.As(err, &p) {
			err = s.setAside(ctx, j.raw, p)
		}
		if err == nil {
			s.lastErr.Clear()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		s.lastErr.Set(err)
		if !stalled {
			stalled = true
			s.pace.stalled[j.lane].Store(true) // its lane is stuck, not the saga behind: see Pace
			s.finished()
		}
		span.AddEvent("retry", trace.WithAttributes(attribute.String("error", err.Error())))
		kind := "transient"
		if errors.Is(err, eventcodec.ErrNewerSchema) {
			kind = "newer_schema"
			if !waiting {
				waiting = true
				s.metrics.waiting.Inc()
			}
		}
		s.metrics.failures.WithLabelValues(kind).Inc()
		delay := backoff(s.opts.MinBackoff, s.opts.MaxBackoff, failures)
		s.log.Warn("saga step waits; retrying it", "kind", kind, "type", j.rec.Type, "stream", j.rec.Stream,
			"revision", j.rec.Revision, "schema", j.rec.Meta.Schema, "err", err, "after", delay.String())
		if !sleep(ctx, delay) {
			return false
		}
	}
}
