package saga

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/lease"
)

// Name is the saga's processor name, as an operator calls it.
const Name = "credit-saga"

// Status is what the saga reports to an operator (package admin).
type Status struct {
	// Started is set once the checkpoint is loaded and the dead letters
	// replayed.
	Started bool
	// CaughtUp is set when the subscription caught up once and no event
	// is unfinished.
	CaughtUp bool
	Paused   bool
	// Position is the watermark (see Position).
	Position uint64
	// LagSeconds is the age of the oldest unfinished event.
	LagSeconds float64
	// EventsPerSecond counts the events finished over the last
	// opstate.Window.
	EventsPerSecond float64
	// DeadLetters counts the unresolved dead letters known to this process.
	DeadLetters int
	// LastError is the last failed step since the last success.
	LastError   string
	LastErrorAt time.Time
}

// Share is this saga's share of the work among the instances on its lease
// store.
func (s *Saga) Share() lease.Share { return s.leases.Share() }

// Status returns the saga's state now.
func (s *Saga) Status() Status {
	msg, at := s.lastErr.Get()
	return Status{
		Started:         s.started.Load(),
		CaughtUp:        s.liveOnce.Load() && s.marks.unfinished() == 0,
		Paused:          s.gate.Paused(),
		Position:        s.marks.position().Commit,
		LagSeconds:      s.marks.lag(nil).Seconds(),
		EventsPerSecond: s.meter.Rate(),
		DeadLetters:     s.dead.count(),
		LastError:       msg,
		LastErrorAt:     at,
	}
}

// Pause stops the saga from starting events: those in its lanes finish,
// and the checkpoint stays before the first one not started. The pause is
// kept in Options.PauseStream, so the saga stays paused across restarts
// until resumed. It reports whether the saga was running.
func (s *Saga) Pause(ctx context.Context) (bool, error) {
	changed, err := s.gate.Set(true, s.keepPause(ctx))
	if changed {
		s.log.Info("saga paused", "position", s.Position())
		s.finished() // paused, it paces no order: let the held ones go
	}
	return changed, err
}

// Resume lets a paused saga go on; it reports whether it was paused.
func (s *Saga) Resume(ctx context.Context) (bool, error) {
	changed, err := s.gate.Set(false, s.keepPause(ctx))
	if changed {
		s.log.Info("saga resumed", "position", s.Position())
	}
	return changed, err
}

// Event types of Options.PauseStream, outside the "orderly." namespace
// like the checkpoints.
const (
	pausedType  = "saga-paused"
	resumedType = "saga-resumed"
)

func (s *Saga) keepPause(ctx context.Context) func(paused bool) error {
	return func(paused bool) error {
		ev := esdb.EventData{EventType: resumedType, ContentType: esdb.ContentTypeJson, Data: []byte("{}")}
		if paused {
			ev.EventType = pausedType
		}
		if _, err := eventlog.CallWithin(ctx, s.conn, s.opts.StoreTimeout, eventlog.Op{Method: "AppendToStream", Stream: s.opts.PauseStream}, func(ctx context.Context, c *esdb.Client) (*esdb.WriteResult, error) {
			return c.AppendToStream(ctx, s.opts.PauseStream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, ev)
		}); err != nil {
			return fmt.Errorf("record %s in %s: %w", ev.EventType, s.opts.PauseStream, err)
		}
		return nil
	}
}

// restorePause closes the gate if the last event of the pause stream is a
// pause.
func (s *Saga) restorePause(ctx context.Context) error {
	return s.gate.Restore(func() (bool, error) {
		last, err := eventlog.CallWithin(ctx, s.conn, s.opts.StoreTimeout, eventlog.Op{Method: "ReadStream", Stream: s.opts.PauseStream}, func(ctx context.Context, c *esdb.Client) ([]*esdb.RecordedEvent, error) {
			return eventlog.ReadRawBackwards(ctx, c, s.opts.PauseStream, 0, 1)
		})
		if err != nil && !errors.Is(err, eventlog.ErrStreamNotFound) {
			return false, fmt.Errorf("read %s: %w", s.opts.PauseStream, err)
		}
		return len(last) == 1 && last[0].EventType == pausedType, nil
	}, s.log, Name)
}
