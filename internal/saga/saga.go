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
// a command whose events are already recorded writes nothing. Events are
// handled one at a time, in log order.
package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
)

// Options tune a Saga. Zero values take the defaults.
type Options struct {
	// CheckpointStream is where the saga records how far it got. Two sagas
	// with different streams both handle every event (harmlessly). Default
	// "saga-credit-checkpoint".
	CheckpointStream string
	// CheckpointEvery and CheckpointInterval bound the work redone after a
	// crash: the checkpoint is saved after that many events or that much
	// time, whichever comes first, and on shutdown. Defaults 100 and 1s.
	CheckpointEvery    int
	CheckpointInterval time.Duration
	// StoreTimeout bounds the saga's own store calls (checkpoints); the
	// commands have theirs. Default 5s.
	StoreTimeout time.Duration
	// MinBackoff and MaxBackoff bound the pause before resubscribing after
	// the subscription dropped or a step failed. Defaults 100ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// Registerer receives the saga metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
}

func (o *Options) setDefaults() {
	if o.CheckpointStream == "" {
		o.CheckpointStream = "saga-credit-checkpoint"
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = 100
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = time.Second
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
}

// Saga is the credit process manager. Run it once per Saga value.
type Saga struct {
	conn     *eventlog.Conn
	commands *command.Service
	reg      *eventcodec.Registry
	log      *slog.Logger
	opts     Options
	metrics  metrics

	// position is the commit position up to which every event has been
	// handled; it only grows.
	position atomic.Uint64

	// Owned by Run's goroutine.
	last       esdb.Position // resume point: exclusive
	saved      esdb.Position // last checkpoint written
	unsaved    int           // events handled since
	savedAt    time.Time
	caughtUp   bool
	subscribed bool
}

type metrics struct {
	handled   *prometheus.CounterVec
	failures  *prometheus.CounterVec
	lag       prometheus.Gauge
	position  prometheus.Gauge
	resubs    prometheus.Counter
	collected []prometheus.Collector
}

func newMetrics() metrics {
	m := metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderly_saga_events_handled_total",
			Help: "Events the credit saga handled, by event type.",
		}, []string{"type"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderly_saga_errors_total",
			Help: "Credit saga failures: transient (retried after resubscribing), refused (an unexpected domain refusal, skipped) or undecodable (skipped).",
		}, []string{"kind"}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderly_saga_lag_seconds",
			Help: "Age of the event the credit saga last handled when it handled it; 0 once caught up.",
		}),
		position: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderly_saga_position",
			Help: "Commit position up to which the credit saga has handled the log.",
		}),
		resubs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderly_saga_resubscriptions_total",
			Help: "Times the credit saga subscribed again after a drop or a failed step.",
		}),
	}
	m.collected = []prometheus.Collector{m.handled, m.failures, m.lag, m.position, m.resubs}
	return m
}

// New returns a saga that follows the store through conn and issues its
// commands to commands.
func New(conn *eventlog.Conn, commands *command.Service, log *slog.Logger, opts Options) (*Saga, error) {
	opts.setDefaults()
	m := newMetrics()
	if opts.Registerer != nil {
		for _, c := range m.collected {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("saga metrics: %w", err)
			}
		}
	}
	return &Saga{conn: conn, commands: commands, reg: eventcodec.Default(), log: log, opts: opts, metrics: m}, nil
}

// Position is the commit position up to which the saga has handled the log:
// every event of its interest at or below it has been acted upon, or logged
// and skipped (undecodable, or its step refused). Tests and the all-in-one
// use it to wait for the saga.
func (s *Saga) Position() uint64 { return s.position.Load() }

// Run follows the log from the saga's checkpoint until ctx is done, then
// saves the checkpoint and returns nil. It survives the store going away: a
// dropped subscription or a failed step is retried from the last handled
// event after a capped exponential backoff.
func (s *Saga) Run(ctx context.Context) error {
	loaded := false
	failures := 0
	for {
		var err error
		if !loaded {
			if s.last, err = s.loadCheckpoint(ctx); err == nil {
				loaded, s.saved, s.savedAt = true, s.last, time.Now()
				s.advance(s.last)
				s.log.Info("saga starting", "from", s.last.Commit)
			}
		}
		if loaded {
			before := s.last
			err = s.follow(ctx)
			if s.last != before {
				failures = 0 // it made progress: the next failure starts a fresh backoff
			}
		}
		if ctx.Err() != nil {
			s.shutdown()
			return nil
		}
		failures++
		delay := backoff(s.opts.MinBackoff, s.opts.MaxBackoff, failures)
		s.log.Warn("saga interrupted; retrying", "err", err, "after", delay.String(), "from", s.last.Commit)
		if !sleep(ctx, delay) {
			s.shutdown()
			return nil
		}
	}
}

// follow subscribes from s.last and handles events until the subscription
// drops, a step fails, or ctx is done.
func (s *Saga) follow(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var from esdb.AllPosition = s.last
	if s.last == (esdb.Position{}) {
		from = esdb.Start{}
	}
	opts := esdb.SubscribeToAllOptions{
		From:   from,
		Filter: &esdb.SubscriptionFilter{Type: esdb.EventFilterType, Prefixes: reactsTo},
	}
	sub, err := eventlog.Call(ctx, s.conn, func(ctx context.Context, c *esdb.Client) (*esdb.Subscription, error) {
		return c.SubscribeToAll(ctx, opts)
	})
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
			if err := s.handleRecorded(ctx, ev.EventAppeared.Event); err != nil {
				return err
			}
			s.unsaved++
			s.advance(ev.EventAppeared.Event.Position)
			s.maybeSave(ctx, false)
		case ev.CheckPointReached != nil:
			// The server scanned this far without finding more of our
			// events, and every earlier one has been handled.
			s.advance(*ev.CheckPointReached)
			s.maybeSave(ctx, false)
		case ev.CaughtUp != nil:
			s.metrics.lag.Set(0)
			if !s.caughtUp {
				s.caughtUp = true
				s.log.Info("saga caught up", "position", s.last.Commit)
			}
			s.maybeSave(ctx, true)
		}
	}
}

// advance moves the resume point to p, which has been handled.
func (s *Saga) advance(p esdb.Position) {
	if p.Commit < s.last.Commit || (p.Commit == s.last.Commit && p.Prepare < s.last.Prepare) {
		return
	}
	s.last = p
	s.position.Store(p.Commit)
	s.metrics.position.Set(float64(p.Commit))
}

// handleRecorded decodes and handles one event. An event that cannot be
// decoded would fail every time, so it is logged and skipped, as is a step
// the domain refuses (refusalIsFinal). Other failures are returned and the
// step retried: the store's, a conflict that outlived its retries, or an
// aggregate this build cannot fold (a newer schema: the saga waits for the
// upgrade rather than skip a credit step).
func (s *Saga) handleRecorded(ctx context.Context, raw *esdb.RecordedEvent) error {
	rec, err := eventlog.Decode(s.reg, raw)
	if err != nil {
		s.metrics.failures.WithLabelValues("undecodable").Inc()
		s.log.Error("saga skips an event it cannot decode", "err", err)
		return nil
	}
	if err := s.handle(ctx, rec); err != nil {
		if ctx.Err() == nil {
			s.metrics.failures.WithLabelValues("transient").Inc()
		}
		return fmt.Errorf("%s %s@%d: %w", rec.Type, rec.Stream, rec.Revision, err)
	}
	s.metrics.handled.WithLabelValues(rec.Type).Inc()
	s.metrics.lag.Set(time.Since(rec.RecordedAt).Seconds())
	return nil
}

func (s *Saga) maybeSave(ctx context.Context, now bool) {
	if s.last == s.saved {
		return
	}
	if !now && s.unsaved < s.opts.CheckpointEvery && time.Since(s.savedAt) < s.opts.CheckpointInterval {
		return
	}
	if err := s.saveCheckpoint(ctx); err != nil {
		// Not fatal: a later save covers it, and at worst a restart redoes
		// some idempotent work.
		s.log.Warn("saga checkpoint not saved", "err", err)
	}
}

// shutdown saves the checkpoint on the way out, on a context of its own:
// the run's is already done.
func (s *Saga) shutdown() {
	if s.last != s.saved {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.StoreTimeout)
		defer cancel()
		if err := s.saveCheckpoint(ctx); err != nil {
			s.log.Warn("saga checkpoint not saved on shutdown", "err", err)
		}
	}
	s.log.Info("saga stopped", "position", s.last.Commit)
}

// checkpointType is the event type of checkpoints. It is outside the
// "orderly." namespace so that no domain-event filter ever matches it.
const checkpointType = "saga-checkpoint"

type checkpoint struct {
	Commit  uint64 `json:"commit"`
	Prepare uint64 `json:"prepare"`
}

func (s *Saga) loadCheckpoint(ctx context.Context) (esdb.Position, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.StoreTimeout)
	defer cancel()
	pos, err := eventlog.Call(ctx, s.conn, func(ctx context.Context, c *esdb.Client) (esdb.Position, error) {
		rs, err := c.ReadStream(ctx, s.opts.CheckpointStream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
		if err != nil {
			return esdb.Position{}, err
		}
		defer rs.Close()
		ev, err := rs.Recv()
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

func (s *Saga) saveCheckpoint(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.StoreTimeout)
	defer cancel()
	data, err := json.Marshal(checkpoint{Commit: s.last.Commit, Prepare: s.last.Prepare})
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	ev := esdb.EventData{EventType: checkpointType, ContentType: esdb.ContentTypeJson, Data: data}
	if _, err := eventlog.Call(ctx, s.conn, func(ctx context.Context, c *esdb.Client) (*esdb.WriteResult, error) {
		return c.AppendToStream(ctx, s.opts.CheckpointStream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, ev)
	}); err != nil {
		return fmt.Errorf("save checkpoint to %s: %w", s.opts.CheckpointStream, err)
	}
	s.saved, s.unsaved, s.savedAt = s.last, 0, time.Now()
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
