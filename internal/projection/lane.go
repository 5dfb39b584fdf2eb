package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/lease"
	"github.com/orderly/orderly/internal/views"
)

// lane is one view's share of a follower: the version it writes, the
// checkpoint it has reached, and the pipeline that folds its documents.
type lane interface {
	target() views.Target
	checkpoint() uint64
	// decode decodes the lane's share of a batch: its views' events from
	// floor on. It reads nothing but the events.
	decode(events []*esdb.RecordedEvent, floor uint64) decoded
	// apply folds and writes a decoded batch with its checkpoint: the
	// last event's position, or the subscription's checkpoint if later.
	// A failing view store is retried with backoff, never skipped; a stale
	// version is returned at once, and so is a batch of several events the
	// store could not write within StoreTimeout (errTooSlow: the caller
	// splits it).
	apply(ctx context.Context, d decoded, checkpoint uint64) error
	// due, fold and applied are apply's steps, for a follower writing
	// several lanes' batches at once (see follower.applyTogether): the
	// checkpoint a batch takes the lane to and whether it is to be written;
	// the batch to write; the lane moved past it once written.
	due(d decoded, checkpoint uint64) (uint64, bool)
	fold(ctx context.Context, d decoded, next uint64) (views.Batch, error)
	applied(d decoded, batch views.Batch, start time.Time)
	// observe updates the lag metrics (and a rebuild's progress) after a
	// batch, with backlog items received but not yet applied.
	observe(ctx context.Context, caughtUp bool, backlog int)
	// report sends a rebuild's progress to Options.Progress.
	report(ctx context.Context, done bool)
	// read is how many events of $all the lane has been through.
	read() uint64
}

// viewLane is the lane of a view whose documents are of type D.
type viewLane[D any] struct {
	f    *follower
	pipe pipeline[D]
	t    views.Target
	cp   uint64
	log  *slog.Logger
	// lastEventAt is when the last applied event was recorded.
	lastEventAt time.Time
	// events counts the events of $all applied, for a rebuild's progress.
	events uint64
	// ctl is the operator's side of a live lane; nil in a rebuild.
	ctl *viewControl
	// skipped is set once the lane passed over a batch while paused: it
	// is behind until the follower resubscribes.
	skipped bool
	// share, in a live lane, is the partitions this instance holds; nil in
	// a rebuild, which writes every partition.
	share *share
}

// share is the partitions of the work a live follower holds, with where
// each stood when the follower subscribed (a lane skips what its
// partition has applied already) and the fence its batches carry.
type share struct {
	n      int
	floors map[int]uint64
	fence  views.Fence
}

// whole reports whether sh is every partition (or no share: a rebuild).
func (sh *share) whole() bool { return sh == nil || len(sh.floors) == sh.n }

// floor returns where the partition of stream stood, and false if this
// instance does not hold it.
func (sh *share) floor(stream string) (uint64, bool) {
	cp, ok := sh.floors[lease.Of(stream, sh.n)]
	return cp, ok
}

// newLane returns the lane writing t from checkpoint cp, having been
// through events of $all already (a rebuild that resubscribes).
// sh, when set, limits it to the partitions sh holds.
func (f *follower) newLane(t views.Target, cp, events uint64, sh *share) lane {
	switch t.View {
	case views.Orders:
		return newViewLane(f, orders, t, cp, events, sh)
	case views.Customers:
		return newViewLane(f, customers, t, cp, events, sh)
	}
	panic("projection: no lane for view " + string(t.View)) // views.Valid is checked by the callers
}

func newViewLane[D any](f *follower, k kind[D], t views.Target, cp, events uint64, sh *share) *viewLane[D] {
	var ctl *viewControl
	if !f.rebuild {
		ctl = f.p.ctl.views[t.View]
	}
	return &viewLane[D]{
		ctl: ctl,
		f:   f,
		pipe: pipeline[D]{kind: k, codec: f.p.opts.Codec, store: f.p.store, partitions: f.p.opts.Partitions,
			cache: newDocCache(k, f.p.opts.DocCacheBytes)},
		t:      t,
		cp:     cp,
		log:    f.log.With("view", string(t.View), "version", t.Version),
		events: events,
		share:  sh,
	}
}

func (l *viewLane[D]) target() views.Target { return l.t }
func (l *viewLane[D]) checkpoint() uint64   { return l.cp }
func (l *viewLane[D]) read() uint64         { return l.events }

func (l *viewLane[D]) decode(events []*esdb.RecordedEvent, floor uint64) decoded {
	// Inclusive of the floor itself: a checkpoint can be a position the
	// server reported scanning past, where an event may land later (see
	// eventlog.ResumePoint); an event applied already is absorbed by the
	// guards.
	for len(events) > 0 && events[0].Position.Commit < floor {
		events = events[1:]
	}
	if l.share == nil || len(events) == 0 {
		return l.pipe.decode(events)
	}
	// Every event of the batch is seen, whichever partition it is in: the
	// checkpoint of the partitions held passes the others' events too.
	last := events[len(events)-1]
	ours := make([]*esdb.RecordedEvent, 0, len(events))
	for _, e := range events {
		if cp, ok := l.share.floor(e.StreamID); ok && e.Position.Commit >= cp {
			ours = append(ours, e)
		}
	}
	d := l.pipe.decode(ours)
	d.last, d.lastAt, d.events = last.Position.Commit, last.CreatedDate, len(events)
	return d
}

// due returns the checkpoint a batch takes the lane to, and whether there
// is anything to write: not when the batch brings nothing new, nor while
// the lane is paused.
func (l *viewLane[D]) due(d decoded, checkpoint uint64) (uint64, bool) {
	next := max(l.cp, d.last, checkpoint)
	if next == l.cp && d.events == 0 {
		return next, false // nothing new, not even the event at the checkpoint (see decode)
	}
	if l.ctl != nil && l.ctl.gate.Paused() {
		l.skipped = true // the resume resubscribes from l.cp
		return next, false
	}
	return next, true
}

// fold folds a decoded batch into the batch to write, with checkpoint next
// and the lane's fence.
func (l *viewLane[D]) fold(ctx context.Context, d decoded, next uint64) (views.Batch, error) {
	batch, err := l.pipe.fold(ctx, l.t, d)
	if err != nil {
		return batch, err
	}
	batch.Checkpoint = next
	if l.share != nil {
		batch.Fence = &l.share.fence
	}
	return batch, nil
}

// storeContext is the context of one write: a write begun finishes, under
// its own deadline, even once ctx is done, so a projector stopping saves
// the batch it was writing and its checkpoint rather than leave it to be
// redone on restart.
func (f *follower) storeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), f.p.opts.StoreTimeout)
}

func (l *viewLane[D]) apply(ctx context.Context, d decoded, checkpoint uint64) error {
	next, due := l.due(d, checkpoint)
	if !due {
		return nil
	}
	view, run := string(l.t.View), l.f.run
	m := l.f.p.metrics
	for failures := 0; ; {
		start := time.Now()
		sctx, cancel := l.f.storeContext(ctx)
		batch, err := l.fold(sctx, d, next)
		if err == nil {
			err = l.f.p.store.Apply(sctx, l.t, batch)
		}
		timedOut := errors.Is(sctx.Err(), context.DeadlineExceeded)
		cancel()
		if err == nil {
			l.applied(d, batch, start)
			return nil
		}
		if errors.Is(err, views.ErrStale) || errors.Is(err, lease.ErrLost) || ctx.Err() != nil {
			return err
		}
		m.errors.WithLabelValues(view, run, errStore).Inc()
		if l.ctl != nil {
			l.ctl.lastErr.Set(err)
		}
		if timedOut && d.events > 1 {
			return fmt.Errorf("%s: %d events: %w (%w)", view, d.events, errTooSlow, err)
		}
		failures++
		wait := backoff(failures)
		l.log.Warn("view store failed; retrying the batch", "err", err, "events", d.events,
			"checkpoint", l.cp, "attempt", failures, "retry_in", wait.String())
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// applied moves the lane past a batch the store has written, begun at
// start: the cache, the metrics, the checkpoint and who waits for it.
func (l *viewLane[D]) applied(d decoded, batch views.Batch, start time.Time) {
	view, run := string(l.t.View), l.f.run
	m := l.f.p.metrics
	l.pipe.cache.put(l.pipe.kind.key, l.pipe.kind.docs(batch))
	m.events.WithLabelValues(view, run).Add(float64(d.own))
	m.documents.WithLabelValues(view, run).Add(float64(len(batch.Orders) + len(batch.Customers)))
	m.batchEvents.WithLabelValues(view, run).Observe(float64(d.own))
	m.applyTime.WithLabelValues(view, run).Observe(time.Since(start).Seconds())
	m.checkpoint.WithLabelValues(view, run).Set(float64(batch.Checkpoint))
	if n := len(batch.DeadLetters); n > 0 {
		m.deadLetters.WithLabelValues(view, run).Add(float64(n))
		m.errors.WithLabelValues(view, run, errDecode).Add(float64(n))
		for _, dl := range batch.DeadLetters {
			l.log.Error("event parked in the dead-letter view", "stream", dl.Stream, "revision", dl.Revision,
				"position", dl.Position, "type", dl.Type, "event_id", dl.EventID, "err", dl.Error)
		}
	}
	l.cp = batch.Checkpoint
	if l.ctl != nil {
		// Live only: a rebuild replaying the log would add a span to
		// every trace ever recorded.
		traceApplied(l.t, d, start)
		l.ctl.applied(l.cp, d, len(batch.DeadLetters))
	}
	if !l.f.rebuild && l.share.whole() {
		// Only the instance doing all the work knows the view's
		// checkpoint; with others sharing it, waiters read the store.
		l.f.p.publish(l.t.View, l.cp)
	}
	l.events += uint64(d.events)
	if d.events > 0 {
		l.lastEventAt = d.lastAt
	}
}

func (l *viewLane[D]) observe(ctx context.Context, caughtUp bool, backlog int) {
	view, run := string(l.t.View), l.f.run
	m := l.f.p.metrics
	caughtUp = caughtUp && backlog == 0 && !l.skipped
	var head uint64
	headOK := false
	if caughtUp {
		m.lagEvents.WithLabelValues(view, run).Set(0)
		m.lagSeconds.WithLabelValues(view, run).Set(0)
		head, headOK = l.cp, true
	} else if head, headOK = l.f.head.get(ctx, l.f.p.conn, l.f.p.opts.EventStoreTimeout); headOK {
		m.lagEvents.WithLabelValues(view, run).Set(float64(head - min(head, l.cp)))
		if !l.lastEventAt.IsZero() {
			m.lagSeconds.WithLabelValues(view, run).Set(time.Since(l.lastEventAt).Seconds())
		}
	}
	if l.ctl != nil {
		l.ctl.observed(caughtUp, head, headOK)
	}
	if l.f.rebuild {
		l.report(ctx, false)
	}
}
