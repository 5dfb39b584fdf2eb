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
// for a customer. The customer also picks the event's partition (package
// lease): instances of the saga share the partitions, each partition held
// by one of them, and each has its own checkpoint, saved with its lease and
// fenced by its epoch. A checkpoint is a low watermark: it never passes an
// event of its partition that has not finished. No event is skipped: a failing step is retried in
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
	"math"
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
	"github.com/orderly/orderly/internal/lease"
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
	// Leases is where the saga's partitions are leased and their
	// checkpoints kept: the view store. Required.
	Leases lease.Store
	// Lease configures the sharing; its Processor defaults to
	// DefaultProcessor. Two sagas with different processors both handle every
	// event (harmlessly).
	Lease lease.Config
	// CheckpointStream is where earlier builds recorded how far the saga
	// got, in one checkpoint: a partition with no checkpoint of its own
	// yet starts from there. Default "saga-credit-checkpoint".
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
	// so that what earlier builds wrote there is bounded. Default
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
	// PaceLag, PaceWait and PaceMax pace new orders (see Pace): a
	// PlaceOrder waits while the saga is further behind than PaceLag, for
	// at most PaceWait, unless PaceMax orders wait already. Zero PaceLag
	// turns pacing off (the binaries' flag defaults to DefaultPaceLag);
	// PaceWait and PaceMax default to DefaultPaceWait and DefaultPaceMax.
	PaceLag, PaceWait time.Duration
	PaceMax           int
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
	if o.Lease.Processor == "" {
		o.Lease.Processor = DefaultProcessor
	}
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
	if o.PaceWait <= 0 {
		o.PaceWait = DefaultPaceWait
	}
	if o.PaceMax <= 0 {
		o.PaceMax = DefaultPaceMax
	}
	o.PaceMax = min(o.PaceMax, math.MaxInt32) // counted in an atomic.Int32
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
	marks    marks
	leases   *lease.Manager
	// legacy is CheckpointStream's checkpoint, read at start.
	legacy esdb.Position
	dead   deadLetters
	ahead  ahead
	pace   pacer

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
	if opts.Workers < 0 || opts.LaneQueue < 0 || opts.MaxInFlight < 0 || opts.PaceMax < 0 {
		return nil, fmt.Errorf("saga: workers %d, lane queue %d, max in flight %d, pace max %d: none may be negative", opts.Workers, opts.LaneQueue, opts.MaxInFlight, opts.PaceMax)
	}
	if opts.PaceLag < 0 || opts.PaceWait < 0 {
		return nil, fmt.Errorf("saga: order pace lag %v, wait %v: neither may be negative (a lag of 0 turns pacing off)", opts.PaceLag, opts.PaceWait)
	}
	if opts.Leases == nil {
		return nil, errors.New("saga: no lease store")
	}
	opts.setDefaults()
	opts.Lease.Registerer = opts.Registerer
	leases, err := lease.NewManager(opts.Leases, opts.Lease, log.With("component", "leases"))
	if err != nil {
		return nil, fmt.Errorf("saga: %w", err)
	}
	s := &Saga{leases: leases, conn: conn, commands: commands, reg: opts.Registry, log: log, opts: opts,
		slots: make(chan struct{}, opts.MaxInFlight), followSlots: make(chan struct{}, opts.MaxInFlight), nudge: make(chan struct{}, 1)}
	s.pace.stalled = make([]atomic.Bool, opts.Workers)
	s.metrics = newMetrics(&s.marks, &s.pace.waiters, func() time.Duration { return s.marks.lag(s.laneStalled) })
	if opts.Registerer != nil {
		for _, c := range s.metrics.collected {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("saga metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Position is the commit position up to which this instance has finished
// the log in the partitions it holds: every event of theirs at or below it
// has been acted upon, or set aside as a dead letter. Tests and the
// all-in-one, whose saga holds every partition, use it to wait for the saga.
func (s *Saga) Position() uint64 { return s.marks.position().Commit }

// Instance names this saga among those sharing the work.
func (s *Saga) Instance() string { return s.leases.Owner() }

// job is one event on its way through a lane.
type job struct {
	raw  *esdb.RecordedEvent
	rec  eventlog.Recorded
	err  error // from decoding rec
	mark *mark
	done *list.Element
	lane int
}

// Run follows the log in the partitions this instance holds, from their
// checkpoints, until ctx is done, then saves the checkpoints, gives the
// partitions back and returns nil; it returns an error only when the lease
// store refuses the partition count. It survives the store going away: a
// dropped subscription is resubscribed from the watermarks after a capped
// exponential backoff, while the lanes go on with what they hold; a change
// of the partitions held resubscribes at once.
func (s *Saga) Run(ctx context.Context) error {
	if !s.start(ctx) {
		s.follows.Wait()
		s.log.Info("saga stopped before it started")
		return nil
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var leaseErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		if leaseErr = s.leases.Run(runCtx); leaseErr != nil {
			cancel()
		}
	})
	lanes := make([]chan job, s.opts.Workers)
	for i := range lanes {
		lanes[i] = make(chan job, s.opts.LaneQueue)
		wg.Go(func() { s.lane(runCtx, lanes[i]) })
	}
	wg.Go(func() { s.saveLoop(runCtx) })

	for failures := 0; runCtx.Err() == nil; {
		held, moved := s.leases.Held()
		if err := s.hold(runCtx, held); err != nil {
			failures++
			delay := backoff(s.opts.MinBackoff, s.opts.MaxBackoff, failures)
			s.log.Warn("saga cannot read its checkpoints; retrying", "err", err, "after", delay.String())
			sleep(runCtx, delay)
			continue
		}
		if len(held) == 0 {
			select {
			case <-moved:
			case <-runCtx.Done():
			}
			continue
		}
		before := s.marks.position()
		err := s.follow(runCtx, lanes, moved)
		if runCtx.Err() != nil || errors.Is(err, errMoved) {
			continue
		}
		if s.marks.position() != before {
			failures = 0 // it made progress: the next failure starts a fresh backoff
		}
		failures++
		delay := backoff(s.opts.MinBackoff, s.opts.MaxBackoff, failures)
		s.log.Warn("saga subscription lost; resubscribing", "err", err, "after", delay.String(), "from", s.marks.position().Commit)
		sleep(runCtx, delay)
	}
	// The lanes abandon their events on ctx: the watermark stays before
	// them, and the next run handles them again. A follow-up cut short is
	// taken by its event's delivery after the restart.
	cancel()
	wg.Wait()
	s.follows.Wait()
	s.shutdown()
	if leaseErr != nil {
		return fmt.Errorf("saga: %w", leaseErr)
	}
	return nil
}

// errMoved ends a subscription when the partitions held change.
var errMoved = errors.New("the partitions held changed")

// hold makes the marks those of held, reading the checkpoints of the
// partitions newly held (or held again at a new epoch) from the lease store.
func (s *Saga) hold(ctx context.Context, held map[int]lease.Epoch) error {
	known := s.marks.held()
	fresh := map[int]bool{}
	for p, e := range held {
		if mk, ok := known[p]; !ok || mk.epoch != e {
			fresh[p] = true
		}
	}
	from := map[int]esdb.Position{}
	if len(fresh) > 0 {
		ctx, cancel := context.WithTimeout(ctx, s.opts.StoreTimeout)
		defer cancel()
		snap, err := s.opts.Leases.ScanLeases(ctx, s.opts.Lease.Processor)
		if err != nil {
			return fmt.Errorf("read the checkpoints: %w", err)
		}
		// Partitions often share a checkpoint: one read for each.
		resume := map[esdb.Position]esdb.Position{}
		for _, l := range snap.Leases {
			if !fresh[l.Partition] {
				continue
			}
			cp := esdb.Position{Commit: l.Checkpoint.Commit, Prepare: l.Checkpoint.Prepare}
			if cp == (esdb.Position{}) {
				cp = s.legacy
			}
			// From the event before the checkpoint, so that an event at the
			// checkpoint itself is handled (see eventlog.ResumePoint).
			at, ok := resume[cp]
			if !ok {
				pos, err := eventlog.ResumePoint(ctx, s.conn, s.opts.StoreTimeout, cp)
				if err != nil {
					return fmt.Errorf("partition %d: %w", l.Partition, err)
				}
				at, _ = pos.(esdb.Position) // esdb.Start{}: the zero position
				resume[cp] = at
			}
			from[l.Partition] = at
		}
	}
	s.marks.hold(held, from)
	s.finished() // partitions given up may have been what held orders back
	return nil
}

// start loads the legacy checkpoint and replays the dead letters, retrying
// until it succeeds or ctx is done.
func (s *Saga) start(ctx context.Context) bool {
	bounded := false
	for failures := 1; ; failures++ {
		if !bounded {
			// Not a reason to stay down: the saga works without it (a
			// store whose ACLs refuse metadata writes, say), and the next
			// start tries again.
			err := s.boundCheckpoints(ctx)
			if bounded = err == nil; !bounded {
				s.log.Warn("saga cannot bound its legacy checkpoint stream", "err", err)
			}
		}
		legacy, err := s.loadCheckpoint(ctx)
		if err == nil {
			err = s.restorePause(ctx)
		}
		if err == nil {
			s.legacy = legacy
			s.log.Info("saga starting", "instance", s.leases.Owner(), "partitions", s.leases.Partitions())
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

// follow subscribes from the lowest watermark held and dispatches the
// events of the partitions held to the lanes until the subscription drops,
// the partitions held change (errMoved), or ctx is done. It blocks while
// the lanes are full: the subscription is then the buffer.
func (s *Saga) follow(run context.Context, lanes []chan job, moved <-chan struct{}) error {
	ctx, cancel := context.WithCancelCause(run)
	defer cancel(nil)
	go func() {
		select {
		case <-moved:
			cancel(errMoved)
		case <-ctx.Done():
		}
	}()
	// The marks start at the event before each checkpoint (see hold):
	// subscribing from the lowest, exclusive, delivers from there on.
	var from esdb.AllPosition = s.marks.position()
	if from == (esdb.Position{}) {
		from = esdb.Start{}
	}
	opts := esdb.SubscribeToAllOptions{
		From:   from,
		Filter: &esdb.SubscriptionFilter{Type: esdb.EventFilterType, Prefixes: reactsTo},
	}
	sub, err := eventlog.SubscribeToAll(ctx, func() { cancel(nil) }, s.conn, s.opts.StoreTimeout, opts)
	if err != nil {
		return ended(ctx, fmt.Errorf("subscribe: %w", err))
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
			return ended(ctx, fmt.Errorf("subscription dropped: %w", ev.SubscriptionDropped.Error))
		case ev.EventAppeared != nil:
			if !s.dispatch(ctx, run, lanes, ev.EventAppeared.Event) {
				return ended(ctx, ctx.Err())
			}
		case ev.CheckPointReached != nil:
			// The server scanned this far without finding more of our
			// events.
			s.marks.pass(*ev.CheckPointReached)
		case ev.CaughtUp != nil:
			if !s.caughtUp {
				s.caughtUp = true
				s.liveOnce.Store(true)
				s.log.Info("saga caught up", "position", s.marks.position().Commit)
			}
		}
	}
}

// ended is err, or errMoved if that is why the subscription ended.
func ended(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), errMoved) {
		return errMoved
	}
	return err
}

// dispatch hands one event of a partition held to its lane once a slot is
// free and the saga is not paused, and passes over the others; false when
// ctx ended first. Once the event is in its watermark, only the end of the
// run (ctx's parent, run) stops its hand-over: a subscription ended for a
// change of partitions must not leave an event unfinished in a watermark,
// which would hold its checkpoint back for good.
func (s *Saga) dispatch(ctx, run context.Context, lanes []chan job, raw *esdb.RecordedEvent) bool {
	j := job{raw: raw}
	j.rec, j.err = eventlog.Decode(s.reg, raw)
	key := laneKey(j.rec, j.err)
	j.mark = s.marks.of(s.leases.Partition(key))
	if j.mark == nil {
		s.marks.pass(raw.Position)
		return true
	}
	if !after(raw.Position, j.mark.wm.dispatched()) {
		return true // already in a lane: resubscribed from the lowest watermark
	}
	// Paused: the events dispatched finish, no other starts.
	if s.gate.Wait(ctx) != nil {
		return false
	}
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	j.lane = laneOf(key, len(lanes))
	j.done = s.marks.dispatch(j.mark, raw.Position, raw.CreatedDate, j.lane)
	select {
	case lanes[j.lane] <- j:
		return true
	case <-run.Done():
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

// saveLoop saves the checkpoints every CheckpointInterval, or sooner when
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
		// Not fatal: a later save covers it, and at worst a restart (or
		// the next owner of a partition) redoes some idempotent work. A
		// save cut short by the end of the run is not worth a warning:
		// shutdown saves again.
		if err := s.save(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("saga checkpoint not saved", "err", err)
		}
	}
}

// shutdown saves the checkpoints on the way out, once the lanes have
// stopped, and gives the partitions back, on a context of its own: the
// run's is already done.
func (s *Saga) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.StoreTimeout)
	defer cancel()
	if err := s.save(ctx); err != nil {
		s.log.Warn("saga checkpoint not saved on shutdown", "err", err)
	}
	pos := s.marks.position()
	if err := s.leases.Release(ctx); err != nil {
		s.log.Warn("saga partitions not released; the others take them when the leases expire", "err", err)
	}
	s.log.Info("saga stopped", "position", pos.Commit)
}

// checkpoint is a checkpoint as earlier builds wrote it.
type checkpoint struct {
	Commit  uint64 `json:"commit"`
	Prepare uint64 `json:"prepare"`
}

// loadCheckpoint reads the one checkpoint earlier builds kept in
// CheckpointStream.
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

// checkpointRefresh is after how many checkpoint intervals an unchanged
// checkpoint is written again (see save).
const checkpointRefresh = 10

// save writes each held partition's watermark as its checkpoint, if it
// moved, fenced by the partition's lease. A partition whose lease is lost
// is left to its new owner.
func (s *Saga) save(ctx context.Context) error {
	var errs []error
	lost := false
	for p, mk := range s.marks.held() {
		pos := mk.wm.position()
		// Unchanged positions are written again now and then: a store
		// whose conditional updates are not atomic (FerretDB) can lose a
		// checkpoint to a racing write, and an idle partition would
		// otherwise never put it back. $max makes the repeat a no-op
		// elsewhere.
		if pos == mk.saved && time.Since(mk.savedAt) < checkpointRefresh*s.opts.CheckpointInterval {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, s.opts.StoreTimeout)
		err := s.opts.Leases.SaveCheckpoint(sctx, s.opts.Lease.Processor, s.leases.Owner(), p, mk.epoch,
			lease.Position{Commit: pos.Commit, Prepare: pos.Prepare})
		cancel()
		switch {
		case errors.Is(err, lease.ErrLost):
			lost = true
		case err != nil:
			errs = append(errs, fmt.Errorf("partition %d: %w", p, err))
		default:
			mk.saved, mk.savedAt = pos, time.Now()
		}
	}
	s.unsaved.Store(0)
	if lost {
		s.log.Warn("a saga checkpoint was refused: this instance lost a partition's lease")
		s.leases.Refused(ctx)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("save checkpoints: %w", err)
	}
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

// DefaultProcessor names the credit saga's leases and checkpoints.
const DefaultProcessor = "saga-credit"

// Checkpoint is how far the instances of the saga processor (""
// for DefaultProcessor) have together finished the log: the lowest
// checkpoint of its partitions in store; 0 while one has none.
func Checkpoint(ctx context.Context, store lease.Store, processor string) (uint64, error) {
	if processor == "" {
		processor = DefaultProcessor
	}
	snap, err := store.ScanLeases(ctx, processor)
	if err != nil {
		return 0, fmt.Errorf("saga checkpoints: %w", err)
	}
	if len(snap.Leases) == 0 {
		return 0, nil
	}
	low := uint64(math.MaxUint64)
	for _, l := range snap.Leases {
		low = min(low, l.Checkpoint.Commit)
	}
	return low, nil
}
