// Package saga is the credit process manager: it follows the event store and
// turns each step of an order's credit flow into the next command.
//
//	OrderPlaced         → reserve the order's total on its customer
//	CreditReserved      → approve the order; if it was cancelled meanwhile,
//	                      release the credit (compensation)
//	CreditLimitExceeded → reject the order
//	OrderCancelled      → release the order's credit, if any is held
//
// Once it has caught up, no credit stays reserved for an order that is not
// APPROVED: a reservation is followed in the log by its CreditReserved, whose
// handling approves the order or releases the credit, and a cancellation is
// followed by a release.
//
// Every reaction is idempotent, so events may be delivered again (after a
// restart from an older checkpoint, or a resubscription): command IDs are
// derived from the triggering event's ID, event IDs from the command ID, and
// a command whose events are already recorded writes nothing.
//
// Events run in parallel lanes. All four events carry the customer ID, and
// an event's lane is chosen by it, so every step of one customer (and so of
// each of its orders) runs in log order in one lane, and lanes never contend
// for a customer. The checkpoint is a low watermark: it never passes an event
// that has not finished. No event is skipped: a failing step is retried in
// its lane, an event of a newer schema waits for an upgraded build, and a
// malformed event or an unexpected refusal is set aside as a dead letter that
// the saga replays on every start until it succeeds.
package saga

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/opstate"
)

// Commands are the commands the saga issues; *command.Service has them.
type Commands interface {
	ReserveCredit(ctx context.Context, cmd domain.ReserveCredit, meta eventcodec.Metadata) (command.Result, error)
	ReleaseCredit(ctx context.Context, cmd domain.ReleaseCredit, meta eventcodec.Metadata) (command.Result, error)
	ApproveOrder(ctx context.Context, orderID string, meta eventcodec.Metadata) (command.Result, error)
	RejectOrder(ctx context.Context, orderID, reason string, meta eventcodec.Metadata) (command.Result, error)
}

// Options tune a Saga. Zero values take the defaults.
type Options struct {
	// CheckpointStream is where the saga records how far it got. Two sagas
	// with different streams both handle every event (harmlessly). Default
	// "saga-credit-checkpoint".
	CheckpointStream string
	// DeadLetterStream is where the saga sets aside the events it cannot
	// act on, and records their resolution. Default
	// "saga-credit-dead-letters".
	DeadLetterStream string
	// PauseStream is where the saga records an operator's pauses and
	// resumes, so that a pause outlives the process; its last event says
	// whether the saga is paused. Default "saga-credit-pause".
	PauseStream string
	// CheckpointMaxCount is the $maxCount set on CheckpointStream at start,
	// so it keeps only the latest checkpoints. Default
	// DefaultCheckpointMaxCount.
	CheckpointMaxCount uint64
	// CheckpointEvery and CheckpointInterval bound the work redone after a
	// crash: the checkpoint is saved after that many events finish or that
	// much time, whichever comes first, and on shutdown. Defaults 100 and 1s.
	CheckpointEvery    int
	CheckpointInterval time.Duration
	// Workers is the number of lanes running steps concurrently. Default 256:
	// a lane waits on its commands' appends, not on CPU, so lanes are cheap.
	Workers int
	// LaneQueue bounds the events waiting in one lane, and MaxInFlight those
	// dispatched and not finished in all; past either the saga stops reading
	// the subscription. Defaults 32 and 1024.
	LaneQueue   int
	MaxInFlight int
	// StoreTimeout bounds the saga's own store calls (checkpoints, dead
	// letters); the commands have theirs. Default 5s.
	StoreTimeout time.Duration
	// MinBackoff and MaxBackoff bound the pause before resubscribing after
	// the subscription dropped, or before retrying a failed step. Defaults
	// 100ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// Registry decodes events; default eventcodec.Default().
	Registry *eventcodec.Registry
	// Registerer receives the saga metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
}

// Defaults; see Options.
const (
	DefaultWorkers     = 256
	DefaultLaneQueue   = 32
	DefaultMaxInFlight = 1024
)

func (o *Options) setDefaults() {
	if o.CheckpointStream == "" {
		o.CheckpointStream = "saga-credit-checkpoint"
	}
	if o.DeadLetterStream == "" {
		o.DeadLetterStream = "saga-credit-dead-letters"
	}
	if o.PauseStream == "" {
		o.PauseStream = "saga-credit-pause"
	}
	if o.CheckpointMaxCount == 0 {
		o.CheckpointMaxCount = DefaultCheckpointMaxCount
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = 100
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = time.Second
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.LaneQueue <= 0 {
		o.LaneQueue = DefaultLaneQueue
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.StoreTimeout <= 0 {
		o.StoreTimeout = 5 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(10*time.Second, o.MinBackoff)
	}
	if o.Registry == nil {
		o.Registry = eventcodec.Default()
	}
}

// Saga is the credit process manager. Run it once per Saga value.
type Saga struct {
	conn     *eventlog.Conn
	commands Commands
	reg      *eventcodec.Registry
	log      *slog.Logger
	opts     Options
	metrics  metrics
	wm       watermark
	dead     deadLetters
	ahead    ahead

	// followSlots bounds the follow-up steps running beside the lanes;
	// follows waits for them on the way out.
	followSlots chan struct{}
	follows     sync.WaitGroup

	// slots bounds the events in flight: the dispatcher takes one per event,
	// its lane gives it back when the event finishes.
	slots chan struct{}
	// unsaved counts events finished since the last checkpoint; at
	// CheckpointEvery a nudge asks the saver to save early.
	unsaved atomic.Int64
	nudge   chan struct{}
	saved   esdb.Position // owned by the saver, then by shutdown
	// Owned by Run's goroutine: whether a subscription ever succeeded (the
	// next ones count as resubscriptions), and whether it caught up once.
	subscribed, caughtUp bool

	// What an operator sees and does (see control.go).
	gate     opstate.Gate
	meter    opstate.Meter
	lastErr  opstate.LastError
	started  atomic.Bool // the checkpoint is loaded and the dead letters replayed
	liveOnce atomic.Bool // the subscription caught up once
}

// New returns a saga that follows the store through conn and issues its
// commands to commands.
func New(conn *eventlog.Conn, commands Commands, log *slog.Logger, opts Options) (*Saga, error) {
	if opts.Workers < 0 || opts.LaneQueue < 0 || opts.MaxInFlight < 0 {
		return nil, fmt.Errorf("saga: workers %d, lane queue %d, max in flight %d: none may be negative", opts.Workers, opts.LaneQueue, opts.MaxInFlight)
	}
	opts.setDefaults()
	s := &Saga{conn: conn, commands: commands, reg: opts.Registry, log: log, opts: opts,
		slots: make(chan struct{}, opts.MaxInFlight), followSlots: make(chan struct{}, opts.MaxInFlight), nudge: make(chan struct{}, 1)}
	s.metrics = newMetrics(&s.wm)
	if opts.Registerer != nil {
		for _, c := range s.metrics.collected {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("saga metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Position is the commit position up to which the saga has finished the
// log: every event of its interest at or below it has been acted upon, or
// set aside as a dead letter. Tests and the all-in-one use it to wait for
// the saga.
func (s *Saga) Position() uint64 { return s.wm.position().Commit }

// job is one event on its way through a lane.
type job struct {
	raw  *esdb.RecordedEvent
	rec  eventlog.Recorded
	err  error // from decoding rec
	done *list.Element
}

// Run follows the log from the saga's checkpoint until ctx is done, then
// saves the checkpoint and returns nil. It survives the store going away: a
// dropped subscription is resubscribed from the watermark after a capped
// exponential backoff, while the lanes go on with what they hold.
func (s *Saga) Run(ctx context.Context) error {
	if !s.start(ctx) {
		s.follows.Wait()
		s.log.Info("saga stopped before it started")
		return nil
	}
	var wg sync.WaitGroup
	lanes := make([]chan job, s.opts.Workers)
	for i := range lanes {
		lanes[i] = make(chan job, s.opts.LaneQueue)
		wg.Go(func() { s.lane(ctx, lanes[i]) })
	}
	wg.Go(func() { s.saveLoop(ctx) })

	for failures := 0; ; {
		before := s.wm.dispatched()
		err := s.follow(ctx, lanes)
		if ctx.Err() != nil {
			break
		}
		if s.wm.dispatched() != before {
			failures = 0 // it made progress: the next failure starts a fresh backoff
		}
		failures++
		delay := backoff(s.opts.MinBackoff, s.opts.MaxBackoff, failures)
		s.log.Warn("saga subscription lost; resubscribing", "err", err, "after", delay.String(), "from", s.wm.position().Commit)
		if !sleep(ctx, delay) {
			break
		}
	}
	// The lanes abandon their events on ctx: the watermark stays before
	// them, and the next run handles them again. A follow-up cut short is
	// taken by its event's delivery after the restart.
	wg.Wait()
	s.follows.Wait()
	s.shutdown()
	return nil
}

// start loads the checkpoint and replays the dead letters, retrying until
// it succeeds or ctx is done.
func (s *Saga) start(ctx context.Context) bool {
	bounded := false
	for failures := 1; ; failures++ {
		if !bounded {
			// Not a reason to stay down: the saga works without it (a
			// store whose ACLs refuse metadata writes, say), and the next
			// start tries again.
			err := s.boundCheckpoints(ctx)
			if bounded = err == nil; !bounded {
				s.log.Warn("saga keeps every checkpoint", "err", err)
			}
		}
		from, err := s.loadCheckpoint(ctx)
		if err == nil {
			err = s.restorePause(ctx)
		}
		if err == nil {
			s.wm.from(from)
			s.saved = from
			s.log.Info("saga starting", "from", from.Commit)
			if err = s.replayDeadLetters(ctx); err == nil {
				s.started.Store(true)
				return true
			}
		}
		if ctx.Err() != nil {
			return false
		}
		delay := backoff(s.opts.MinBackoff, s.opts.MaxBackoff, failures)
		s.log.Warn("saga cannot start; retrying", "err", err, "after", delay.String())
		if !sleep(ctx, delay) {
			return false
		}
	}
}

// follow subscribes from the watermark and dispatches events to the lanes
// until the subscription drops or ctx is done. It blocks while the lanes
// are full: the subscription is then the buffer.
func (s *Saga) follow(ctx context.Context, lanes []chan job) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var from esdb.AllPosition = s.wm.position()
	if from == (esdb.Position{}) {
		from = esdb.Start{}
	}
	opts := esdb.SubscribeToAllOptions{
		From:   from,
		Filter: &esdb.SubscriptionFilter{Type: esdb.EventFilterType, Prefixes: reactsTo},
	}
	sub, err := eventlog.SubscribeToAll(ctx, cancel, s.conn, s.opts.StoreTimeout, opts)
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	defer sub.Close()
	if s.subscribed {
		s.metrics.resubs.Inc()
	}
	s.subscribed = true
	for {
		ev := sub.Recv()
		switch {
		case ev.SubscriptionDropped != nil:
			return fmt.Errorf("subscription dropped: %w", ev.SubscriptionDropped.Error)
		case ev.EventAppeared != nil:
			raw := ev.EventAppeared.Event
			if !after(raw.Position, s.wm.dispatched()) {
				continue // already in a lane: resubscribed from the watermark
			}
			if !s.dispatch(ctx, lanes, raw) {
				return ctx.Err()
			}
		case ev.CheckPointReached != nil:
			// The server scanned this far without finding more of our
			// events.
			s.wm.pass(*ev.CheckPointReached)
		case ev.CaughtUp != nil:
			if !s.caughtUp {
				s.caughtUp = true
				s.liveOnce.Store(true)
				s.log.Info("saga caught up", "dispatched", s.wm.dispatched().Commit)
			}
		}
	}
}

// dispatch hands one event to its lane once a slot is free and the saga is
// not paused; false when ctx ended first.
func (s *Saga) dispatch(ctx context.Context, lanes []chan job, raw *esdb.RecordedEvent) bool {
	// Paused: the events dispatched finish, no other starts.
	if s.gate.Wait(ctx) != nil {
		return false
	}
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	j := job{raw: raw}
	j.rec, j.err = eventlog.Decode(s.reg, raw)
	j.done = s.wm.dispatch(raw.Position, raw.CreatedDate)
	select {
	case lanes[laneOf(laneKey(j.rec, j.err), len(lanes))] <- j:
		return true
	case <-ctx.Done():
		return false
	}
}

// laneOf picks the lane of a key among n.
func laneOf(key string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

// laneKey is the customer an event belongs to. An event this build cannot
// decode is keyed by the customer_id its payload still carries, if any, so
// that it waits in its customer's lane; failing that by its stream.
func laneKey(rec eventlog.Recorded, decodeErr error) string {
	if decodeErr == nil {
		switch e := rec.Event.(type) {
		case domain.OrderPlaced:
			return e.CustomerID
		case domain.CreditReserved:
			return e.CustomerID
		case domain.CreditLimitExceeded:
			return e.CustomerID
		case domain.OrderCancelled:
			return e.CustomerID
		}
	}
	var p struct {
		CustomerID string `json:"customer_id"`
	}
	if json.Unmarshal(rec.Stored, &p) == nil && p.CustomerID != "" {
		return p.CustomerID
	}
	return rec.Stream
}

// saveLoop saves the checkpoint every CheckpointInterval, or sooner when
// CheckpointEvery events have finished, until ctx is done.
func (s *Saga) saveLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.nudge:
		}
		if err := s.save(ctx); err != nil {
			// Not fatal: a later save covers it, and at worst a restart
			// redoes some idempotent work.
			s.log.Warn("saga checkpoint not saved", "err", err)
		}
	}
}

// shutdown saves the checkpoint on the way out, once the lanes have
// stopped, on a context of its own: the run's is already done.
func (s *Saga) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.StoreTimeout)
	defer cancel()
	if err := s.save(ctx); err != nil {
		s.log.Warn("saga checkpoint not saved on shutdown", "err", err)
	}
	s.log.Info("saga stopped", "position", s.saved.Commit)
}

// checkpointType is the event type of checkpoints. It is outside the
// "orderly." namespace so that no domain-event filter ever matches it.
const checkpointType = "saga-checkpoint"

type checkpoint struct {
	Commit  uint64 `json:"commit"`
	Prepare uint64 `json:"prepare"`
}

func (s *Saga) loadCheckpoint(ctx context.Context) (esdb.Position, error) {
	pos, err := eventlog.CallWithin(ctx, s.conn, s.opts.StoreTimeout, eventlog.Op{Method: "ReadStream", Stream: s.opts.CheckpointStream}, func(ctx context.Context, c *esdb.Client) (esdb.Position, error) {
		rs, err := c.ReadStream(ctx, s.opts.CheckpointStream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
		if err != nil {
			return esdb.Position{}, err
		}
		defer rs.Close()
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			// The stream exists but its metadata retires every event
			// ($tb past the end, as new metadata on a soft-deleted
			// stream sets): no checkpoint either.
			return esdb.Position{}, nil
		}
		if err != nil {
			return esdb.Position{}, err
		}
		var cp checkpoint
		if err := json.Unmarshal(ev.Event.Data, &cp); err != nil {
			return esdb.Position{}, fmt.Errorf("decode checkpoint: %w", err)
		}
		return esdb.Position{Commit: cp.Commit, Prepare: cp.Prepare}, nil
	})
	var esErr *esdb.Error
	if errors.As(err, &esErr) && esErr.Code() == esdb.ErrorCodeResourceNotFound {
		return esdb.Position{}, nil // never saved: start from the beginning
	}
	if err != nil {
		return esdb.Position{}, fmt.Errorf("load checkpoint from %s: %w", s.opts.CheckpointStream, err)
	}
	return pos, nil
}

// save writes the watermark as the checkpoint, if it moved.
func (s *Saga) save(ctx context.Context) error {
	p := s.wm.position()
	if p == s.saved {
		return nil
	}
	data, err := json.Marshal(checkpoint{Commit: p.Commit, Prepare: p.Prepare})
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	ev := esdb.EventData{EventType: checkpointType, ContentType: esdb.ContentTypeJson, Data: data}
	if _, err := eventlog.CallWithin(ctx, s.conn, s.opts.StoreTimeout, eventlog.Op{Method: "AppendToStream", Stream: s.opts.CheckpointStream}, func(ctx context.Context, c *esdb.Client) (*esdb.WriteResult, error) {
		return c.AppendToStream(ctx, s.opts.CheckpointStream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, ev)
	}); err != nil {
		return fmt.Errorf("save checkpoint to %s: %w", s.opts.CheckpointStream, err)
	}
	s.saved = p
	s.unsaved.Store(0)
	return nil
}

// backoff is a capped exponential delay with jitter (half fixed, half
// random), so many sagas dropped together do not come back together.
func backoff(lo, hi time.Duration, failures int) time.Duration {
	d := hi
	if shift := min(failures-1, 30); lo <= hi>>shift { // lo<<shift neither overflows nor passes hi
		d = lo << shift
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// reactsTo is the server-side filter: the event types the saga acts on.
var reactsTo = []string{domain.TypeOrderPlaced, domain.TypeCreditReserved, domain.TypeCreditLimitExceeded, domain.TypeOrderCancelled}
