package saga

import (
	"time"
)

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

// Status returns the saga's state now.
func (s *Saga) Status() Status {
	msg, at := s.lastErr.Get()
	return Status{
		Started:         s.started.Load(),
		CaughtUp:        s.liveOnce.Load() && s.marks.unfinished() == 0,
		Paused:          s.gate.Paused(),
		Position:        s.marks.position().Commit,
		LagSeconds:      s.marks.lag().Seconds(),
		EventsPerSecond: s.meter.Rate(),
		DeadLetters:     s.dead.count(),
		LastError:       msg,
		LastErrorAt:     at,
	}
}

// Pause stops the saga from starting events: those in its lanes finish,
// and the checkpoint stays before the first one not started. It reports
// whether the saga was running.
func (s *Saga) Pause() bool {
	changed := s.gate.Pause()
	if changed {
		s.log.Info("saga paused", "position", s.Position())
	}
	return changed
}

// Resume lets a paused saga go on; it reports whether it was paused.
func (s *Saga) Resume() bool {
	changed := s.gate.Resume()
	if changed {
		s.log.Info("saga resumed", "position", s.Position())
	}
	return changed
}
