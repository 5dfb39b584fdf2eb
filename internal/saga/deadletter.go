package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/eventlog"
)

// Dead letters live in their own stream (Options.DeadLetterStream), as
// events outside the "orderly." namespace: a deadLetter for each event set
// aside, and a resolution once a replay acted on it.
const (
	DeadLetterType = "saga-dead-letter"
	ResolvedType   = "saga-dead-letter-resolved"
)

// DeadLetter is the payload of a DeadLetterType event: where the original
// event is, and why the saga set it aside.
type DeadLetter struct {
	EventID  string    `json:"event_id"`
	Type     string    `json:"type"`
	Stream   string    `json:"stream"`
	Revision uint64    `json:"revision"`
	Commit   uint64    `json:"commit"`
	Prepare  uint64    `json:"prepare"`
	Reason   string    `json:"reason"` // malformed or refused
	Error    string    `json:"error"`
	At       time.Time `json:"at"`
}

// Resolution is the payload of a ResolvedType event: the dead letter of the
// original event EventID needs nothing more.
type Resolution struct {
	EventID string    `json:"event_id"`
	At      time.Time `json:"at"`
}

// deadLetters is the set of unresolved dead letters, by original event ID.
type deadLetters struct {
	mu         sync.Mutex
	unresolved map[string]bool
}

// mark records id as unresolved or not and returns how many are.
func (d *deadLetters) mark(id string, unresolved bool) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.unresolved == nil {
		d.unresolved = map[string]bool{}
	}
	if unresolved {
		d.unresolved[id] = true
	} else {
		delete(d.unresolved, id)
	}
	return len(d.unresolved)
}

// deadLetterNS derives a dead letter's event ID from the original's, so a
// redelivered poison event is set aside under the same ID.
var deadLetterNS = uuid.MustParse("0b5e8f0c-51d6-4c55-9a43-8f6d3c1f2a7e")

// setAside appends a dead letter for raw; the event then counts as done.
func (s *Saga) setAside(ctx context.Context, raw *esdb.RecordedEvent, p *poison) error {
	dl := DeadLetter{
		EventID: raw.EventID.String(), Type: raw.EventType, Stream: raw.StreamID, Revision: raw.EventNumber,
		Commit: raw.Position.Commit, Prepare: raw.Position.Prepare, Reason: p.reason, Error: p.err.Error(), At: time.Now().UTC(),
	}
	if err := s.appendDeadLetters(ctx, uuid.NewSHA1(deadLetterNS, raw.EventID[:]), DeadLetterType, dl); err != nil {
		return err
	}
	s.metrics.deadLetters.WithLabelValues(p.reason).Inc()
	s.metrics.unresolved.Set(float64(s.dead.mark(dl.EventID, true)))
	s.log.Error("saga set an event aside as a dead letter", "reason", p.reason, "type", dl.Type, "stream", dl.Stream,
		"revision", dl.Revision, "position", dl.Commit, "event_id", dl.EventID, "err", p.err, "dead_letters", s.opts.DeadLetterStream)
	return nil
}

func (s *Saga) appendDeadLetters(ctx context.Context, id uuid.UUID, typ string, payload any) error {
	data, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("encode %s: %w", typ, err)
	}
	ev := esdb.EventData{EventID: id, EventType: typ, ContentType: esdb.ContentTypeJson, Data: data}
	if _, err := eventlog.CallWithin(ctx, s.conn, s.opts.StoreTimeout, func(ctx context.Context, c *esdb.Client) (*esdb.WriteResult, error) {
		return c.AppendToStream(ctx, s.opts.DeadLetterStream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, ev)
	}); err != nil {
		return fmt.Errorf("append %s to %s: %w", typ, s.opts.DeadLetterStream, err)
	}
	return nil
}

// replayDeadLetters acts again on every unresolved dead letter, before the
// lanes start: a build that can now decode the event, or a state in which
// its step is no longer refused, handles it, and a resolution records that.
// Those that still fail, for whatever reason, stay unresolved for the next
// start. It fails only when the dead-letter stream cannot be read.
func (s *Saga) replayDeadLetters(ctx context.Context) error {
	raw, err := s.read(ctx, s.opts.DeadLetterStream, 0, 0)
	if errors.Is(err, eventlog.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var letters []DeadLetter
	resolved := map[string]bool{}
	for _, r := range raw {
		var err error
		switch r.EventType {
		case DeadLetterType:
			var dl DeadLetter
			if err = json.Unmarshal(r.Data, &dl); err == nil {
				letters = append(letters, dl)
			}
		case ResolvedType:
			var res Resolution
			if err = json.Unmarshal(r.Data, &res); err == nil {
				resolved[res.EventID] = true
			}
		}
		if err != nil {
			// Written by hand, most likely: not worth keeping every other
			// customer's credit waiting.
			s.log.Error("saga skips an unreadable record of its dead-letter stream", "stream", s.opts.DeadLetterStream,
				"revision", r.EventNumber, "type", r.EventType, "err", err)
		}
	}
	for _, dl := range letters {
		if resolved[dl.EventID] {
			continue
		}
		resolved[dl.EventID] = true // a poison event redelivered has two letters
		if err := s.replay(ctx, dl); err != nil {
			// One letter's trouble (the store, a customer this build cannot
			// fold) must not keep the saga from starting for everyone else.
			s.metrics.unresolved.Set(float64(s.dead.mark(dl.EventID, true)))
			s.log.Warn("saga dead letter not replayed; left for the next start", "event_id", dl.EventID,
				"stream", dl.Stream, "revision", dl.Revision, "err", err)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	return nil
}

// replay acts on one dead letter's event; see replayDeadLetters.
func (s *Saga) replay(ctx context.Context, dl DeadLetter) error {
	orig, err := s.read(ctx, dl.Stream, dl.Revision, 1)
	if err != nil && !errors.Is(err, eventlog.ErrStreamNotFound) {
		return err
	}
	if len(orig) == 0 || orig[0].EventID.String() != dl.EventID {
		s.metrics.unresolved.Set(float64(s.dead.mark(dl.EventID, true)))
		s.log.Error("saga dead letter's event is gone", "event_id", dl.EventID, "stream", dl.Stream, "revision", dl.Revision)
		return nil
	}
	rec, decodeErr := eventlog.Decode(s.reg, orig[0])
	err = s.react(ctx, rec, decodeErr)
	var p *poison
	if err != nil && (decodeErr != nil || errors.As(err, &p)) {
		s.metrics.unresolved.Set(float64(s.dead.mark(dl.EventID, true)))
		s.log.Warn("saga dead letter still fails; left for the next start", "event_id", dl.EventID, "stream", dl.Stream,
			"revision", dl.Revision, "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("replay dead letter %s: %w", dl.EventID, err)
	}
	// A fresh ID: a resolution recorded twice (its answer lost) is harmless.
	if err := s.appendDeadLetters(ctx, uuid.New(), ResolvedType, Resolution{EventID: dl.EventID, At: time.Now().UTC()}); err != nil {
		return err
	}
	s.metrics.unresolved.Set(float64(s.dead.mark(dl.EventID, false)))
	s.log.Info("saga replayed a dead letter", "event_id", dl.EventID, "type", dl.Type, "stream", dl.Stream, "revision", dl.Revision)
	return nil
}

func (s *Saga) read(ctx context.Context, stream string, from, n uint64) ([]*esdb.RecordedEvent, error) {
	return eventlog.CallWithin(ctx, s.conn, s.opts.StoreTimeout, func(ctx context.Context, c *esdb.Client) ([]*esdb.RecordedEvent, error) {
		return eventlog.ReadRaw(ctx, c, stream, from, n)
	})
}
