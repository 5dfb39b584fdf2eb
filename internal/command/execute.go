package command

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
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
}

// aggregate is a domain aggregate as the executor sees it: a state that
// folds events.
type aggregate interface {
	Apply(domain.Event)
}

// kind names an aggregate type: where its instances live and how one starts.
type kind[A aggregate] struct {
	name   string
	stream func(id string) string
	fresh  func(id string) A
}

var (
	customers = kind[*domain.Customer]{"customer", eventlog.CustomerStream, domain.NewCustomer}
	orders    = kind[*domain.Order]{"order", eventlog.OrderStream, domain.NewOrder}
)

// decision is a command's business logic: given the aggregate's current
// state, the events to record or a *domain.Error.
type decision[A aggregate] func(ctx context.Context, agg A) ([]domain.Event, error)

// execute runs one command on the aggregate k/id: read its stream, fold it,
// decide, and append the decision at the revision it read. Every command of
// the service goes through here (or through create).
//
// Idempotency: a command whose events are already in the stream (same
// meta.CommandID) returns where they were recorded, without deciding again,
// even if the state has moved on since; a different command (meta.Command)
// under that ID is refused. A command that recorded nothing (it was refused,
// or changed nothing) left no trace, so its replay is decided afresh against
// the current state.
//
// Concurrency: if another writer appended since the read, the store refuses
// the append (wrong expected version); the command is read and decided again,
// after a jittered pause, up to MaxAttempts times, then fails with
// ErrConflict.
func execute[A aggregate](ctx context.Context, s *Service, k kind[A], id string, meta eventcodec.Metadata, decide decision[A]) (Result, error) {
	return run(ctx, s, k, id, meta, decide, false)
}

// create is execute for a command that opens its aggregate's stream. That
// stream is new but for replays and clashes, so the first attempt skips
// reading it: it decides on a fresh aggregate and appends expecting no
// stream. A replay's events carry the same IDs, which the store recognises
// and acknowledges with their original position, writing nothing; anything
// else that exists makes the append fail. After such a failure, or a
// refusal, the command runs as execute would, finding a replay or refusing
// the clash.
func create[A aggregate](ctx context.Context, s *Service, k kind[A], id string, meta eventcodec.Metadata, decide decision[A]) (Result, error) {
	return run(ctx, s, k, id, meta, decide, true)
}

func run[A aggregate](ctx context.Context, s *Service, k kind[A], id string, meta eventcodec.Metadata, decide decision[A], assumeNew bool) (Result, error) {
	if meta.CommandID == "" {
		return Result{}, errors.New("command without a command ID")
	}
	for attempt := 1; ; attempt++ {
		res, err := attemptOnce(ctx, s, k, id, meta, decide, assumeNew)
		var esErr *esdb.Error
		conflict := errors.As(err, &esErr) && esErr.Code() == esdb.ErrorCodeWrongExpectedVersion
		if assumeNew && (conflict || domain.KindOf(err) != 0) {
			// The stream exists, or the decision was refused: either way the
			// stream must be read, as it may show this very command applied.
			assumeNew = false
			continue
		}
		if !conflict {
			return res, err
		}
		s.conflicts.WithLabelValues(k.name).Inc()
		if attempt >= s.opts.MaxAttempts {
			return Result{}, fmt.Errorf("%s %s after %d attempts: %w", k.name, id, attempt, ErrConflict)
		}
		if err := pause(ctx, attempt); err != nil {
			return Result{}, err
		}
	}
}

// attemptOnce reads (unless assumeNew), decides and appends once.
func attemptOnce[A aggregate](ctx context.Context, s *Service, k kind[A], id string, meta eventcodec.Metadata, decide decision[A], assumeNew bool) (Result, error) {
	stream := k.stream(id)
	agg, history := k.fresh(id), []eventlog.Recorded(nil)
	if !assumeNew {
		var err error
		if agg, history, err = load(ctx, s, k, id); err != nil {
			return Result{}, err
		}
		if res, ok, err := recorded(history, meta); ok {
			return res, err
		}
	}
	events, err := decide(ctx, agg)
	if err != nil {
		return Result{}, err
	}
	if len(events) == 0 {
		return tip(history), nil
	}

	data := make([]esdb.EventData, len(events))
	for i, ev := range events {
		if data[i], err = eventlog.Encode(s.reg, eventID(meta.CommandID, stream, i), ev, meta); err != nil {
			return Result{}, err
		}
	}
	expected := esdb.ExpectedRevision(esdb.NoStream{})
	if len(history) > 0 {
		expected = esdb.Revision(history[len(history)-1].Revision)
	}
	wr, err := storeCall(ctx, s, func(ctx context.Context, c *esdb.Client) (*esdb.WriteResult, error) {
		return c.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: expected}, data...)
	})
	if err != nil {
		return Result{}, fmt.Errorf("append to %s: %w", stream, err)
	}
	return Result{Position: wr.CommitPosition, Revision: wr.NextExpectedVersion}, nil
}

// load reads the aggregate k/id and folds it; a stream that does not exist
// yet is an aggregate with no history.
func load[A aggregate](ctx context.Context, s *Service, k kind[A], id string) (A, []eventlog.Recorded, error) {
	agg := k.fresh(id)
	history, err := storeCall(ctx, s, func(ctx context.Context, c *esdb.Client) ([]eventlog.Recorded, error) {
		return eventlog.Read(ctx, c, s.reg, k.stream(id), 0, 0)
	})
	if err != nil && !errors.Is(err, eventlog.ErrStreamNotFound) {
		return agg, nil, err
	}
	for _, r := range history {
		agg.Apply(r.Event)
	}
	return agg, history, nil
}

// as names the command meta is for.
func as(meta eventcodec.Metadata, command string) eventcodec.Metadata {
	meta.Command = command
	return meta
}

// recorded finds the events meta's command ID already wrote to a stream. If
// another command wrote them, the ID was reused: answering with that
// command's result would report a command done that never ran.
func recorded(history []eventlog.Recorded, meta eventcodec.Metadata) (Result, bool, error) {
	for i := len(history) - 1; i >= 0; i-- {
		m := history[i].Meta
		if m.CommandID != meta.CommandID {
			continue
		}
		if m.Command != "" && m.Command != meta.Command {
			return Result{}, true, &domain.Error{
				Kind: domain.KindInvalid, Reason: domain.ReasonCommandIDReused, Message: "command_id reused",
				Violations: []domain.FieldViolation{{Field: "command_id", Description: fmt.Sprintf(
					"was already used by %s; a new command needs a new command_id", m.Command)}},
			}
		}
		return Result{Position: history[i].Position, Revision: history[i].Revision}, true, nil
	}
	return Result{}, false, nil
}

// tip is where a stream stands.
func tip(history []eventlog.Recorded) Result {
	if len(history) == 0 {
		return Result{}
	}
	last := history[len(history)-1]
	return Result{Position: last.Position, Revision: last.Revision}
}

// storeCall runs one event store call under the store timeout.
func storeCall[T any](ctx context.Context, s *Service, op func(context.Context, *esdb.Client) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, s.opts.StoreTimeout, eventlog.ErrTimeout)
	defer cancel()
	return eventlog.Call(ctx, s.conn, op)
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
