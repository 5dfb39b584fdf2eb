package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/lease"
	"github.com/orderly/orderly/internal/views"
)

// follower runs one subscription to $all for several views at once — every
// view reads every event, and the event store's delivery is the costliest
// part of projecting, so the views share it. Each view is a lane with its
// own target version and checkpoint: the subscription starts at the lowest
// checkpoint and each lane skips what it has already applied.
type follower struct {
	p *Projector
	// rebuild is set for a rebuild's follower: its lanes are shadows, each
	// switched live once caught up; it stops when all are.
	rebuild bool
	run     string // metric label: "live" or "rebuild"
	log     *slog.Logger

	head    headCache
	started time.Time
	// progress receives a rebuild's progress; nil for none.
	progress func(Progress)

	// size is the most events decodeLoop puts in a batch: BatchSize, less
	// while the view store is too slow to write a full batch within
	// StoreTimeout (see split and grow).
	size atomic.Int64
}

func newFollower(p *Projector, rebuild bool) *follower {
	run := "live"
	if rebuild {
		run = "rebuild"
	}
	f := &follower{p: p, rebuild: rebuild, run: run, log: p.log.With("run", run), started: time.Now()}
	f.size.Store(int64(p.opts.BatchSize))
	return f
}

// batchSize is the most events a batch takes now.
func (f *follower) batchSize() int { return int(f.size.Load()) }

// errSwitched ends a rebuild: every shadow is live.
var errSwitched = errors.New("switched")

// errResubscribe asks for a fresh subscription from the checkpoints.
var errResubscribe = errors.New("resubscribe")

// runLive follows the live versions of every view, in the partitions this
// instance holds, until ctx ends. Whatever fails — the subscription, the
// event store, the view store, a switch to a rebuilt version, a lease — it
// starts again from the live checkpoints, after a backoff unless a version
// or the partitions held merely changed.
func (f *follower) runLive(ctx context.Context) error {
	var failures int
	for {
		held, moved := f.p.leases.Held()
		if len(held) == 0 {
			select {
			case <-moved:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		kind := errStore
		lanes, err := f.liveLanes(ctx, held)
		if err == nil {
			// Holding every partition, this instance alone moves the
			// views: its notifier is then as fresh as the store.
			whole := len(held) == f.p.leases.Partitions()
			for _, l := range lanes {
				f.p.setSole(l.target().View, whole)
			}
			kind, err = errSubscription, f.follow(ctx, lanes, moved)
			for _, l := range lanes {
				f.p.setSole(l.target().View, false)
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch {
		case errors.Is(err, views.ErrStale):
			f.log.Info("view version switched; following the new live version", "reason", err)
			failures = 0
			continue
		case errors.Is(err, lease.ErrLost):
			f.log.Warn("a batch was refused: this instance lost a partition's lease; following the partitions it still holds", "reason", err)
			f.p.leases.Refused(ctx)
			continue
		case errors.Is(err, errResubscribe):
			continue // a view was resumed, or the partitions held changed
		}
		failures++
		f.countError(views.All(), kind)
		for _, vc := range f.p.ctl.views {
			vc.lastErr.Set(err)
		}
		wait := backoff(failures)
		f.log.Warn("projection interrupted; resubscribing from the checkpoints", "err", err, "retry_in", wait.String())
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// liveLanes returns a lane for every view's live version, limited to the
// partitions held. It refuses to follow a view whose checkpoint is past
// the event store's head (the store was restored from an older backup):
// events the store appends next would land below that checkpoint and be
// skipped. A rebuild resolves it; runLive tries again meanwhile.
func (f *follower) liveLanes(ctx context.Context, held map[int]lease.Epoch) ([]lane, error) {
	var lanes []lane
	var highest uint64
	n := f.p.leases.Partitions()
	for _, v := range views.All() {
		var st views.State
		if err := f.p.ctl.views[v].gate.Restore(func() (bool, error) {
			var err error
			st, err = f.state(ctx, v)
			return st.Paused, err
		}, f.log, string(v)); err != nil {
			return nil, err
		}
		if len(st.Partitions) != n {
			return nil, fmt.Errorf("view %s has %d partitioned checkpoints, want %d", v, len(st.Partitions), n)
		}
		sh := &share{n: n, floors: make(map[int]uint64, len(held)), fence: views.Fence{Owner: f.p.leases.Owner(), Held: held}}
		cp := uint64(math.MaxUint64)
		for p := range held {
			sh.floors[p] = st.Partitions[p]
			cp = min(cp, st.Partitions[p])
		}
		highest = max(highest, slices.Max(st.Partitions))
		f.p.publish(v, st.LiveCheckpoint)
		f.p.ctl.views[v].begin(st.LiveCheckpoint)
		lanes = append(lanes, f.newLane(views.Target{View: v, Version: st.Live}, cp, 0, sh))
	}
	// The head is read after the checkpoints: in a consistent store it is
	// at least any checkpoint read before it.
	head, err := storeHead(ctx, f.p.conn, f.p.opts.EventStoreTimeout)
	if err != nil {
		return nil, fmt.Errorf("read the event store's head: %w", err)
	}
	if highest > head {
		return nil, fmt.Errorf("views at position %d are past the event store's head at %d: the event store was restored from an older backup, or replaced? "+
			"Rebuild the views from it (orderly rebuild); the projector waits until then, as it would skip what the store appends below %d",
			highest, head, highest)
	}
	return lanes, nil
}

// runRebuild fills the shadow versions targets from the start of the log,
// switching each live once it has caught up. It resubscribes after failures
// like runLive, but gives up if a target stops being its view's building
// version (another rebuild replaced it).
func (f *follower) runRebuild(ctx context.Context, targets []views.Target) error {
	var failures int
	read := map[views.View]uint64{} // events each lane has been through, across resubscriptions
	for {
		var lanes []lane
		var err error
		kind := errStore
		for _, t := range targets {
			var st views.State
			if st, err = f.state(ctx, t.View); err != nil {
				break
			}
			if t.Version == st.Live {
				continue // switched already
			}
			cp, ok := st.Checkpoint(t.Version)
			if !ok {
				return fmt.Errorf("rebuild of %s v%d was replaced: %w", t.View, t.Version, views.ErrStale)
			}
			lanes = append(lanes, f.newLane(t, cp, read[t.View], nil))
		}
		if err == nil && len(lanes) == 0 {
			return nil
		}
		if err == nil {
			kind, err = errSubscription, f.follow(ctx, lanes, nil)
			for _, l := range lanes {
				read[l.target().View] = l.read()
			}
		}
		switch {
		case errors.Is(err, errSwitched):
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, views.ErrStale):
			return fmt.Errorf("rebuild was replaced: %w", err)
		case errors.Is(err, errResubscribe):
			continue
		}
		failures++
		var vs []views.View
		for _, t := range targets {
			vs = append(vs, t.View)
		}
		f.countError(vs, kind)
		wait := backoff(failures)
		f.log.Warn("rebuild interrupted; resubscribing from its checkpoints", "err", err, "retry_in", wait.String())
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// item is what the subscription delivered: an event, a checkpoint (every
// event up to it was seen), the end of catch-up, or the drop.
type item struct {
	event      *esdb.RecordedEvent
	checkpoint uint64
	caughtUp   bool
	err        error
}

// pending is what one batch collected.
type pending struct {
	events     []*esdb.RecordedEvent
	checkpoint uint64
	caughtUp   bool
	err        error
}

// empty reports whether b holds nothing to apply or act on.
func (b *pending) empty() bool {
	return len(b.events) == 0 && b.checkpoint == 0 && !b.caughtUp && b.err == nil
}

func (b *pending) add(it item) {
	switch {
	case it.event != nil:
		b.events = append(b.events, it.event)
	case it.err != nil:
		b.err = it.err
	case it.caughtUp:
		b.caughtUp = true
	default:
		b.checkpoint = max(b.checkpoint, it.checkpoint)
	}
}

// decodedBatch is a batch with each lane's share decoded.
type decodedBatch struct {
	pending
	lanes map[views.View]decoded
}

// follow subscribes from the lowest checkpoint of lanes and applies batches
// to every lane until the subscription fails, a lane's version goes stale
// or its lease is lost, the partitions held change (moved is closed), a
// rebuild has switched all its lanes, or ctx ends.
//
// Three stages overlap: receiving (the subscription's goroutine), batching
// and decoding (decodeLoop), and folding and writing (here). Decoding needs
// no stored state, so the next batch decodes while this one is written;
// folding reads what the previous batch wrote, so it waits for it.
func (f *follower) follow(ctx context.Context, lanes []lane, moved <-chan struct{}) error {
	from := lanes[0].checkpoint()
	for _, l := range lanes {
		from = min(from, l.checkpoint())
	}
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start, err := eventlog.ResumePoint(ctx, f.p.conn, f.p.opts.EventStoreTimeout, esdb.Position{Commit: from, Prepare: from})
	if err != nil {
		return err
	}
	opts := esdb.SubscribeToAllOptions{
		From:   start,
		Filter: &esdb.SubscriptionFilter{Type: esdb.EventFilterType, Prefixes: f.p.opts.Codec.Types()},
	}
	sub, err := eventlog.SubscribeToAll(subCtx, cancel, f.p.conn, f.p.opts.EventStoreTimeout, opts)
	if err != nil {
		return fmt.Errorf("subscribe to $all from %d: %w", from, err)
	}
	items := make(chan item, 2*f.p.opts.BatchSize)
	// Unbuffered: decodeLoop holds the next batch, still accumulating, until
	// the writer is free for it.
	batches := make(chan decodedBatch)
	var stages sync.WaitGroup
	stages.Go(func() { receive(subCtx, sub, items) })
	var held atomic.Int64 // events decodeLoop holds, not yet handed over
	stages.Go(func() { f.decodeLoop(subCtx, items, lanes, batches, &held) })
	defer func() {
		cancel()
		_ = sub.Close()
		stages.Wait()
	}()
	f.log.Debug("subscribed", "from", from, "lanes", len(lanes))
	caughtUp := false
	// A view resumed has skipped what came while it was paused: the live
	// follower starts again from the checkpoints.
	var resumed <-chan struct{}
	if !f.rebuild {
		resumed = f.p.ctl.resumes()
	}

	for {
		var b decodedBatch
		select {
		case b = <-batches:
		case <-resumed:
			return errResubscribe
		case <-moved:
			return errResubscribe
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case <-moved:
			// The partitions held changed while this batch formed: its
			// fence is stale, and a partition given up would refuse it.
			return errResubscribe
		default:
		}
		start := time.Now()
		if err := f.applyAll(ctx, lanes, b); err != nil {
			return err
		}
		f.grow(len(b.events), time.Since(start))
		caughtUp = caughtUp || b.caughtUp
		for _, l := range lanes {
			l.observe(ctx, caughtUp, len(items)+int(held.Load()))
		}
		if b.err != nil {
			return fmt.Errorf("subscription dropped: %w", b.err)
		}
		if f.rebuild && caughtUp {
			if lanes, err = f.switchCaughtUp(ctx, lanes, b.empty()); err != nil {
				return err
			}
		}
	}
}

// decodeLoop cuts the subscription's items into batches and decodes each
// lane's share, until the subscription drops or ctx ends. A lane skips the
// events up to its checkpoint when the subscription started, which it has
// applied already.
//
// Batches form by natural accumulation: a decoded batch is held until the
// writer takes it, and what arrives meanwhile starts the next batch, which
// is handed over as soon as the writer is free. Only after a full batch (a
// backlog) does the next one wait up to BatchWait to fill: fewer, larger
// writes cost less. An idle or steadily loaded system thus writes events
// as soon as the writer can take them, and one behind in full batches.
// held counts the events in its hands (as of its last batch cut or
// hand-over), for the lag metrics.
func (f *follower) decodeLoop(ctx context.Context, in <-chan item, lanes []lane, out chan<- decodedBatch, held *atomic.Int64) {
	floors := make([]uint64, len(lanes))
	for i, l := range lanes {
		floors[i] = l.checkpoint()
	}
	var carried pending
	caughtUp, backlog := false, false
	for {
		b, err := f.collect(ctx, in, carried, f.rebuild && caughtUp, backlog)
		if err != nil {
			return
		}
		held.Store(int64(len(b.events)))
		caughtUp = caughtUp || b.caughtUp
		carried, err = f.handOver(ctx, in, out, decodeBatch(b, lanes, floors))
		held.Store(int64(len(carried.events)))
		if err != nil || b.err != nil {
			return
		}
		// A backlog, which makes the next batch wait to fill: this one was
		// full, so events were left behind. Events that merely came while
		// it waited for the writer are no backlog: under a steady load they
		// always do, and waiting for more would add up to BatchWait to
		// every write's visibility while the writer's own time already
		// gathers them into batches.
		backlog = len(b.events) >= f.batchSize()
	}
}

// handOver waits for the writer to take d and returns what arrived from in
// meanwhile, at most a full batch (the subscription waits then).
func (f *follower) handOver(ctx context.Context, in <-chan item, out chan<- decodedBatch, d decodedBatch) (pending, error) {
	var next pending
	for {
		take := in
		if d.err != nil || next.err != nil || len(next.events) >= f.batchSize() {
			take = nil
		}
		select {
		case out <- d:
			return next, nil
		case it := <-take:
			next.add(it)
		case <-ctx.Done():
			return next, ctx.Err()
		}
	}
}

// decodeBatch decodes every lane's share of b in parallel; floors are the
// lanes' starting checkpoints.
func decodeBatch(b pending, lanes []lane, floors []uint64) decodedBatch {
	shares := make([]decoded, len(lanes))
	var wg sync.WaitGroup
	for i, l := range lanes {
		wg.Go(func() { shares[i] = l.decode(b.events, floors[i]) })
	}
	wg.Wait()
	db := decodedBatch{pending: b, lanes: make(map[views.View]decoded, len(lanes))}
	for i, l := range lanes {
		db.lanes[l.target().View] = shares[i]
	}
	return db
}

// applyAll applies a batch to every lane, in parallel: lanes write different
// views. It returns the first lane failure (a stale version, or ctx).
func (f *follower) applyAll(ctx context.Context, lanes []lane, b decodedBatch) error {
	if len(b.events) == 0 && b.checkpoint == 0 {
		return nil
	}
	// Stopping: begin no new batch. One begun is written by every lane,
	// each write under its own deadline however ctx ends meanwhile.
	if err := ctx.Err(); err != nil {
		return err
	}
	if g, ok := f.p.store.(views.GroupWriter); ok && len(lanes) > 1 && f.applyTogether(ctx, g, lanes, b) {
		return nil
	}
	errs := make([]error, len(lanes))
	var wg sync.WaitGroup
	for i, l := range lanes {
		wg.Go(func() { errs[i] = l.apply(ctx, b.lanes[l.target().View], b.checkpoint) })
	}
	wg.Wait()
	err := errors.Join(errs...)
	if errors.Is(err, errTooSlow) && !errors.Is(err, views.ErrStale) {
		return f.split(ctx, lanes, b.pending)
	}
	return err
}

// applyTogether writes every lane's share of b in one ApplyGroup, and
// reports whether it did. On any failure it has written nothing (ApplyGroup
// is all or none) and moved no lane, and applyAll writes the lanes one by
// one instead: that path retries, splits a batch too slow to write and
// tells a stale version or a lost lease from a failing store, per lane.
func (f *follower) applyTogether(ctx context.Context, g views.GroupWriter, lanes []lane, b decodedBatch) bool {
	start := time.Now()
	sctx, cancel := f.storeContext(ctx)
	defer cancel()
	var due []lane
	var nexts []uint64
	for _, l := range lanes {
		if next, ok := l.due(b.lanes[l.target().View], b.checkpoint); ok {
			due, nexts = append(due, l), append(nexts, next)
		}
	}
	writes := make([]views.Write, len(due))
	errs := make([]error, len(due))
	var wg sync.WaitGroup
	for i, l := range due {
		wg.Go(func() {
			batch, err := l.fold(sctx, b.lanes[l.target().View], nexts[i])
			writes[i], errs[i] = views.Write{Target: l.target(), Batch: batch}, err
		})
	}
	wg.Wait()
	err := errors.Join(errs...)
	if err == nil && len(writes) > 0 {
		err = g.ApplyGroup(sctx, writes)
	}
	if err != nil {
		f.log.Debug("writing the views together failed; writing them one by one", "err", err, "events", len(b.events))
		return false
	}
	for i, l := range due {
		l.applied(b.lanes[l.target().View], writes[i].Batch, start)
	}
	return true
}

// errTooSlow is a lane's batch of more than one event that the view store
// could not write within StoreTimeout: retried whole, it would fail the
// same way for ever.
var errTooSlow = errors.New("batch too large to write within the store timeout")

// split applies b in two halves, in order, after one of its lanes timed out
// on it, and lowers the batch size to the first half's. Each half is
// decoded afresh from each lane's checkpoint, so a lane that wrote b, or
// writes the first half, skips it; only the second half carries b's
// subscription checkpoint, so no checkpoint passes an unwritten event.
// A half that times out splits again, down to single events, which a lane
// retries like any failure.
func (f *follower) split(ctx context.Context, lanes []lane, b pending) error {
	half := len(b.events) / 2
	f.size.Store(int64(max(1, half)))
	f.log.Warn("view store too slow for the batch; splitting it", "events", len(b.events), "batch_size", max(1, half))
	rest := b
	rest.events = b.events[half:]
	floors := make([]uint64, len(lanes))
	for _, p := range []pending{{events: b.events[:half]}, rest} {
		for i, l := range lanes {
			floors[i] = l.checkpoint()
		}
		if err := f.applyAll(ctx, lanes, decodeBatch(p, lanes, floors)); err != nil {
			return err
		}
	}
	return nil
}

// grow doubles the batch size, up to BatchSize, after a full batch of n
// events was written whole in less than a quarter of StoreTimeout: twice
// as many should fit in time. An outage splits batches down to single
// events (a store that does not answer looks slow), and the size comes
// back within a few batches once the store answers quickly again, while a
// store that stays slow does not make every other batch time out.
func (f *follower) grow(n int, took time.Duration) {
	size := f.batchSize()
	if size < f.p.opts.BatchSize && n >= size && took < f.p.opts.StoreTimeout/4 {
		f.size.Store(int64(min(f.p.opts.BatchSize, 2*size)))
	}
}

// switchCaughtUp tries to switch every lane of a caught-up rebuild live and
// returns the lanes still to switch. ErrBehind means the live version has a
// later checkpoint: the shadow goes on and tries again after the next batch.
// When the subscription is idle and a shadow is still behind, the live
// checkpoint came from a server checkpoint this subscription was not sent,
// so it resubscribes: a catch-up ends with a checkpoint at the head —
// unless the live checkpoint is past the event store's head, which no
// catch-up reaches: the store was restored from an older backup, and the
// shadow, holding all the store has, replaces the live version.
//
// Switch runs without the store timeout: on SQLite it builds the shadow's
// indexes, in time that grows with the view (~9 µs an order here), and an
// attempt cut short would roll back and start over every time.
func (f *follower) switchCaughtUp(ctx context.Context, lanes []lane, idle bool) ([]lane, error) {
	var left []lane
	var behind bool
	for _, l := range lanes {
		t := l.target()
		err := f.p.store.Switch(ctx, t, false)
		if errors.Is(err, views.ErrBehind) && idle && f.liveAhead(ctx, t.View) {
			err = f.p.store.Switch(ctx, t, true)
		}
		if err != nil && !errors.Is(err, views.ErrBehind) && !errors.Is(err, views.ErrStale) && f.isLive(ctx, t) {
			// It switched, then failed to drop the old version (which the
			// next rebuild drops): the rebuild is done.
			f.log.Warn("rebuilt view is live, but the old version was not dropped", "view", string(t.View), "err", err)
			err = nil
		}
		switch {
		case err == nil:
			f.log.Info("rebuilt view is live", "view", string(t.View), "version", t.Version)
			l.report(ctx, true)
			continue
		case errors.Is(err, views.ErrStale):
			return nil, err
		case errors.Is(err, views.ErrBehind):
			behind = true
		default:
			f.log.Warn("switch failed; retrying", "view", string(t.View), "err", err)
		}
		left = append(left, l)
	}
	switch {
	case len(left) == 0:
		return nil, errSwitched
	case behind && idle:
		return left, errResubscribe
	}
	return left, nil
}

// liveAhead reports whether view v's live checkpoint is past the event
// store's head, saying so in the log. The head is read after the checkpoint:
// in a consistent store it is at least any checkpoint read before it.
func (f *follower) liveAhead(ctx context.Context, v views.View) bool {
	st, err := f.state(ctx, v)
	if err != nil {
		return false
	}
	head, err := storeHead(ctx, f.p.conn, f.p.opts.EventStoreTimeout)
	if err != nil || st.LiveCheckpoint <= head {
		return false
	}
	f.log.Warn("the live view is past the event store's head: the event store was restored from an older backup, or replaced; "+
		"switching to the rebuilt version, which holds what the event store has",
		"view", string(v), "live_checkpoint", st.LiveCheckpoint, "eventstore_head", head)
	return true
}

// isLive reports whether t is its view's live version.
func (f *follower) isLive(ctx context.Context, t views.Target) bool {
	sctx, cancel := context.WithTimeout(ctx, f.p.opts.StoreTimeout)
	defer cancel()
	st, err := f.p.store.State(sctx, t.View)
	return err == nil && st.Live == t.Version
}

// receive forwards the subscription's messages until it drops or ctx ends.
func receive(ctx context.Context, sub *esdb.Subscription, out chan<- item) {
	for {
		ev := sub.Recv()
		var it item
		switch {
		case ev.EventAppeared != nil:
			it.event = ev.EventAppeared.OriginalEvent()
		case ev.CheckPointReached != nil:
			it.checkpoint = ev.CheckPointReached.Commit
		case ev.CaughtUp != nil:
			it.caughtUp = true
		case ev.SubscriptionDropped != nil:
			it.err = ev.SubscriptionDropped.Error
		default:
			continue
		}
		select {
		case out <- it:
		case <-ctx.Done():
			return
		}
		if it.err != nil {
			return
		}
	}
}

// idleTick bounds how long a caught-up rebuild waits for events before it
// tries its switches again: nothing may arrive for a long time.
const idleTick = 250 * time.Millisecond

// collect completes one batch, started by carried: it waits for a first item
// if there is none yet, then takes what has already arrived, up to a full
// batch. It waits longer, until the batch is full or BatchWait has passed,
// only where a backlog is likely: in a rebuild, and when backlog is set.
// When idle is set it gives up waiting for a first item after idleTick, with
// an empty batch.
func (f *follower) collect(ctx context.Context, in <-chan item, carried pending, idle, backlog bool) (pending, error) {
	b := carried
	if b.empty() {
		var tick <-chan time.Time
		if idle {
			timer := time.NewTimer(idleTick)
			defer timer.Stop()
			tick = timer.C
		}
		select {
		case it := <-in:
			b.add(it)
		case <-tick:
			return b, nil
		case <-ctx.Done():
			return b, ctx.Err()
		}
	}
	var wait <-chan time.Time
	if (f.rebuild || backlog) && f.p.opts.BatchWait > 0 {
		timer := time.NewTimer(f.p.opts.BatchWait)
		defer timer.Stop()
		wait = timer.C
	}
	for size := f.batchSize(); b.err == nil && len(b.events) < size; {
		if wait == nil {
			select {
			case it := <-in:
				b.add(it)
				continue
			default:
				return b, nil
			}
		}
		select {
		case it := <-in:
			b.add(it)
		case <-wait:
			return b, nil
		case <-ctx.Done():
			return b, ctx.Err()
		}
	}
	return b, nil
}

// countError counts a failure of the shared subscription, or of reading
// the views' state before it, against every view it feeds.
func (f *follower) countError(vs []views.View, kind string) {
	for _, v := range vs {
		f.p.metrics.errors.WithLabelValues(string(v), f.run, kind).Inc()
	}
}

func (f *follower) state(ctx context.Context, v views.View) (views.State, error) {
	ctx, cancel := context.WithTimeout(ctx, f.p.opts.StoreTimeout)
	defer cancel()
	return f.p.store.State(ctx, v)
}

func backoff(failures int) time.Duration {
	d := 100 * time.Millisecond << min(failures-1, 7)
	return min(d, 10*time.Second)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
