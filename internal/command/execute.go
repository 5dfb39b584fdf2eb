package command

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/tracing"
)

// ErrConflict reports a command that met a concurrent writer on every one of
// its attempts. Nothing was written; the command may be sent again.
var ErrConflict = errors.New("the stream kept changing under concurrent writers")

// Result is where a command left its aggregate's stream.
type Result struct {
	// Position is the commit position of the command's last event, the
	// consistency token a query waits for. A command that changed nothing
	// reports the position of the stream's last event, the state it saw.
	Position uint64
	// Revision is the stream's revision after the command.
	Revision uint64
	// Appended are the command's events that the store acknowledged in this
	// call, as stored; none when it wrote nothing (a replay answered from
	// the stream, a refusal, a no-op). The saga acts on them at once rather
	// than wait to read them back from the log.
	Appended []eventlog.Recorded
}

// aggregate is a domain aggregate as the executor sees it: a state that
// folds events.
type aggregate interface {
	Apply(domain.Event)
}

// kind names an aggregate type: where its instances live and how one starts.
// Snapshotted kinds keep page logs of their state (see snapshot.go); orders
// need none, as their streams hold a handful of events.
type kind[A aggregate] struct {
	name        string
	stream      func(id string) string
	fresh       func(id string) A
	snapshotted bool
}

var (
	customers = kind[*domain.Customer]{"customer", eventlog.CustomerStream, domain.NewCustomer, true}
	orders    = kind[*domain.Order]{"order", eventlog.OrderStream, domain.NewOrder, false}
)

// decision is a command's business logic: given the aggregate's current
// state, the events to record or a *domain.Error. It must not change the
// state it is given: that is the cached aggregate, changed only by events
// the store accepted.
type decision[A aggregate] func(ctx context.Context, agg A) ([]domain.Event, error)

// execute runs one command on the aggregate k/id: decide against its cached
// state (loaded on first use, from snapshot pages and the stream's tail), and
// append the decision expecting the revision that state was folded to. The
// store checks that expectation, so the cache never has to be trusted: a
// state another writer (another replica) has moved on fails the append, and
// the command catches up from that revision, folds, and decides again.
// Every command of the service goes through here (or through create).
//
// Commands on one aggregate run one at a time in this process (the cache
// entry's lock), so they do not conflict with each other.
//
// Idempotency: a command whose events are already in the stream (same
// meta.CommandID) returns where they were recorded, without deciding again,
// even if the state has moved on since; a different command (meta.Command)
// under that ID is refused. A command that recorded nothing (it was refused,
// or changed nothing) left no trace, so its replay is decided afresh against
// the current state. Such an answer is validated by no append, so it is given
// only after a read of the stream from the cached revision found nothing new.
//
// Concurrency: if another writer appended since, the store refuses the
// append (wrong expected version); the command catches up and is decided
// again, after a jittered pause, up to MaxAttempts times, then fails with
// ErrConflict.
func execute[A aggregate](ctx context.Context, s *Service, k kind[A], id string, meta eventcodec.Metadata, decide decision[A]) (Result, error) {
	return run(ctx, s, k, id, meta, decide, false, "")
}

// executeOnLine is execute for a decision on the credit line of orderID of
// customer id: each attempt resolves that line first (see resolveCredit).
func executeOnLine(ctx context.Context, s *Service, id, orderID string, meta eventcodec.Metadata, decide decision[*domain.Customer]) (Result, error) {
	return run(ctx, s, customers, id, meta, decide, false, orderID)
}

// create is execute for a command that opens its aggregate's stream. That
// stream is new but for replays and clashes, so when the aggregate is not
// cached the first attempt skips loading it: it decides on a fresh aggregate
// and appends expecting no stream. A replay's events carry the same IDs,
// which the store recognises and acknowledges with their original position,
// writing nothing; anything else that exists makes the append fail. After
// such a failure, or a refusal, the command runs as execute would, finding a
// replay or refusing the clash.
func create[A aggregate](ctx context.Context, s *Service, k kind[A], id string, meta eventcodec.Metadata, decide decision[A]) (Result, error) {
	return run(ctx, s, k, id, meta, decide, true, "")
}

func run[A aggregate](ctx context.Context, s *Service, k kind[A], id string, meta eventcodec.Metadata, decide decision[A], assumeNew bool, line string) (Result, error) {
	if meta.CommandID == "" {
		return Result{}, errors.New("command without a command ID")
	}
	e := acquire(s, k, id)
	defer s.cache.release(e)
	if !e.loaded && assumeNew {
		if res, done, err := createNew(ctx, s, k, id, e, meta, decide); done {
			return res, err
		}
	}
	if !e.loaded {
		if err := s.load(ctx, e); err != nil {
			return Result{}, err
		}
	}
	for attempt := 1; ; attempt++ {
		res, err := attemptOnce(ctx, s, k, e, meta, decide, line)
		if !errors.Is(err, errMoved) {
			return res, err
		}
		if isConflict(err) {
			s.metrics.conflicts.WithLabelValues(k.name).Inc()
		}
		if attempt >= s.opts.MaxAttempts {
			return Result{}, fmt.Errorf("%s %s after %d attempts: %w", k.name, id, attempt, ErrConflict)
		}
		if isConflict(err) {
			if err := pause(ctx, attempt); err != nil {
				return Result{}, err
			}
		}
	}
}

// acquire returns the cache entry of k/id, locked for the caller, who hands
// it back with s.cache.release.
func acquire[A aggregate](s *Service, k kind[A], id string) *entry {
	e := s.cache.acquire(k.stream(id))
	if !e.loaded {
		e.fresh = func() aggregate { return k.fresh(id) }
		e.snapshotted = k.snapshotted
	}
	return e
}

// errMoved reports an attempt that found the stream ahead of the cached
// state; the state has caught up, and the command is to be decided again.
var errMoved = errors.New("the stream moved on")

func isConflict(err error) bool {
	var esErr *esdb.Error
	return errors.As(err, &esErr) && esErr.Code() == esdb.ErrorCodeWrongExpectedVersion
}

// createNew is create's first attempt, on a fresh aggregate. done is false
// when the command must run as execute would: the decision was refused or
// empty, or the stream exists.
func createNew[A aggregate](ctx context.Context, s *Service, k kind[A], id string, e *entry, meta eventcodec.Metadata, decide decision[A]) (Result, bool, error) {
	agg := k.fresh(id)
	events, err := decide(ctx, agg)
	if err != nil || len(events) == 0 {
		return Result{}, false, nil
	}
	wr, ids, err := s.appendEvents(ctx, e.stream, esdb.NoStream{}, events, meta)
	if isConflict(err) {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, true, err
	}
	// Cache the new stream only if the store says it holds exactly these
	// events: an acknowledged replay (the same IDs, so the same type and
	// payload, see eventID) of a stream that has grown since is left to load
	// on its next use.
	appended := recordedAppend(e.stream, events, ids, meta, wr)
	if wr.NextExpectedVersion == uint64(len(events)-1) {
		s.reset(e, agg)
		s.foldAppended(e, appended)
		e.loaded = true
	}
	return Result{Position: wr.CommitPosition, Revision: wr.NextExpectedVersion, Appended: appended}, true, nil
}

// attemptOnce decides once against e and appends. It returns errMoved (with
// the cause) when e turned out stale and has caught up. line, unless empty,
// is the order whose credit line the decision reads.
func attemptOnce[A aggregate](ctx context.Context, s *Service, k kind[A], e *entry, meta eventcodec.Metadata, decide decision[A], line string) (Result, error) {
	if res, ok, err := s.recordedIn(ctx, e, meta); ok || err != nil {
		return res, err
	}
	if line != "" {
		if err := s.resolveCredit(ctx, e, line); err != nil {
			return Result{}, err
		}
	}
	events, err := decide(ctx, e.agg.(A))
	if err != nil || len(events) == 0 {
		// No append validates this answer: confirm it against the tip.
		moved, cerr := s.refresh(ctx, e)
		switch {
		case cerr != nil:
			return Result{}, cerr
		case moved:
			return Result{}, errMoved
		case err != nil:
			return Result{}, err
		}
		return e.tip(), nil
	}
	expected := esdb.ExpectedRevision(esdb.NoStream{})
	if e.rev >= 0 {
		expected = esdb.Revision(uint64(e.rev))
	}
	wr, ids, err := s.appendEvents(ctx, e.stream, expected, events, meta)
	if isConflict(err) {
		if _, cerr := s.refresh(ctx, e); cerr != nil {
			return Result{}, cerr
		}
		return Result{}, fmt.Errorf("%w: %w", errMoved, err)
	}
	if err != nil {
		return Result{}, err
	}
	appended := recordedAppend(e.stream, events, ids, meta, wr)
	s.foldAppended(e, appended)
	return Result{Position: wr.CommitPosition, Revision: wr.NextExpectedVersion, Appended: appended}, nil
}

// appendEvents encodes a command's events, with IDs derived from its command
// ID and their contents (eventID), and appends them to stream at the expected
// revision. It returns the IDs it wrote them under.
func (s *Service) appendEvents(ctx context.Context, stream string, expected esdb.ExpectedRevision, events []domain.Event, meta eventcodec.Metadata) (_ *esdb.WriteResult, _ []uuid.UUID, err error) {
	// This span is the sending of the events: its IDs go into their
	// metadata for their readers to continue the trace. The store call
	// itself is eventlog's span under it.
	ctx, span := tracing.Tracer().Start(ctx, "eventstore.append", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("orderly.stream", stream), attribute.String("orderly.command", meta.Command), attribute.Int("orderly.events", len(events))))
	defer func() { tracing.Fail(span, err); span.End() }()
	meta.TraceID, meta.SpanID = tracing.IDs(ctx)
	data := make([]esdb.EventData, len(events))
	ids := make([]uuid.UUID, len(events))
	for i, ev := range events {
		var err error
		if data[i], err = eventlog.Encode(s.reg, uuid.Nil, ev, meta); err != nil {
			return nil, nil, err
		}
		ids[i] = eventID(meta.CommandID, stream, i, meta.Fingerprint, data[i].EventType, data[i].Data)
		data[i].EventID = ids[i]
	}
	wr, err := storeCall(ctx, s, eventlog.Op{Method: "AppendToStream", Stream: stream}, func(ctx context.Context, c *esdb.Client) (*esdb.WriteResult, error) {
		return c.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: expected}, data...)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("append to %s: %w", stream, err)
	}
	return wr, ids, nil
}

// as names the command meta is for, and fingerprints its request (the
// domain command, or what stands for it).
func as(meta eventcodec.Metadata, command string, request any) eventcodec.Metadata {
	meta.Command = command
	meta.Fingerprint = fingerprint(command, request)
	return meta
}

// recorded finds the events meta's command ID already wrote among history.
// If another command, or the same command with another request, wrote them,
// the ID was reused: answering with that result would report a command done
// that never ran. Events from before commands (or requests) were recorded
// carry none, and are taken for this command's: their IDs could not tell
// either, so this refuses nothing it used to answer.
func recorded(history []eventlog.Recorded, meta eventcodec.Metadata) (Result, bool, error) {
	for i := len(history) - 1; i >= 0; i-- {
		m := history[i].Meta
		if m.CommandID != meta.CommandID {
			continue
		}
		switch {
		case m.Command != "" && m.Command != meta.Command:
			return Result{}, true, reused(fmt.Sprintf("was already used by %s; a new command needs a new command_id", m.Command))
		case m.Fingerprint != "" && m.Fingerprint != meta.Fingerprint:
			return Result{}, true, reused(fmt.Sprintf("was already used by a %s with other parameters; a new request needs a new command_id", m.Command))
		}
		return Result{Position: history[i].Position, Revision: history[i].Revision}, true, nil
	}
	return Result{}, false, nil
}

func reused(description string) error {
	return &domain.Error{
		Kind: domain.KindInvalid, Reason: domain.ReasonCommandIDReused, Message: "command_id reused",
		Violations: []domain.FieldViolation{{Field: "command_id", Description: description}},
	}
}

// storeCall runs one event store call under the store timeout.
func storeCall[T any](ctx context.Context, s *Service, op eventlog.Op, fn func(context.Context, *esdb.Client) (T, error)) (T, error) {
	return eventlog.CallWithin(ctx, s.conn, s.opts.StoreTimeout, op, fn)
}

// Conflict backoff: full jitter over an exponentially growing window, so
// writers that collided spread out instead of colliding again in lockstep.
const (
	conflictBackoffBase = 5 * time.Millisecond
	conflictBackoffMax  = 250 * time.Millisecond
)

func pause(ctx context.Context, attempt int) error {
	window := min(conflictBackoffBase<<min(attempt, 16), conflictBackoffMax)
	t := time.NewTimer(rand.N(window) + 1)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
