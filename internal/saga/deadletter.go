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

	"github.com/orderly/orderly/internal/eventcodec"
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

// count returns how many dead letters are unresolved.
func (d *deadLetters) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
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
	if _, err := eventlog.CallWithin(ctx, s.conn, s.opts.StoreTimeout, eventlog.Op{Method: "AppendToStream", Stream: s.opts.DeadLetterStream}, func(ctx context.Context, c *esdb.Client) (*esdb.WriteResult, error) {
		return c.AppendToStream(ctx, s.opts.DeadLetterStream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, ev)
	}); err != nil {
		return fmt.Errorf("append %s to %s: %w", typ, s.opts.DeadLetterStream, err)
	}
	return nil
}

// Records of an operator's or a replay's work on a dead letter, in the
// dead-letter stream beside the letters.
const (
	// AttemptType records a retry that failed again (Attempt).
	AttemptType = "saga-dead-letter-attempt"
	// SkippedType records a letter closed by an operator without acting
	// on it (Skip).
	SkippedType = "saga-dead-letter-skipped"
)

// Attempt is the payload of an AttemptType event.
type Attempt struct {
	EventID string    `json:"event_id"`
	Error   string    `json:"error"`
	At      time.Time `json:"at"`
}

// Skip is the payload of a SkippedType event.
type Skip struct {
	EventID string    `json:"event_id"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

// Letter statuses.
const (
	StatusUnresolved = "unresolved"
	StatusResolved   = "resolved"
	StatusSkipped    = "skipped"
)

// Letter is a dead letter with what happened to it since: the fold of its
// records in the dead-letter stream.
type Letter struct {
	DeadLetter
	// Attempts counts the first attempt and every failed retry since.
	Attempts int
	// LastAttemptAt and LastError are the latest attempt's.
	LastAttemptAt time.Time
	LastError     string
	Status        string
	SkipReason    string
}

// ErrNoDeadLetter is the answer for an event ID with no dead letter.
var ErrNoDeadLetter = errors.New("no dead letter for that event")

// ErrStillFails is the answer for a retry whose step failed again the way
// that set it aside; the attempt is recorded.
var ErrStillFails = errors.New("dead letter still fails")

// ErrClosed is the answer for a retry or skip of a letter already resolved
// or skipped.
var ErrClosed = errors.New("dead letter already resolved or skipped")

// letters reads the dead-letter stream and folds it into its letters, in
// the order they were set aside. A record it cannot read (written by hand,
// most likely) is logged and passed over: not worth keeping every other
// customer's credit waiting.
func (s *Saga) letters(ctx context.Context) ([]*Letter, error) {
	raw, err := s.read(ctx, s.opts.DeadLetterStream, 0, 0)
	if errors.Is(err, eventlog.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Letter
	byID := map[string]*Letter{}
	for _, r := range raw {
		var p struct {
			EventID string    `json:"event_id"`
			Error   string    `json:"error"`
			Reason  string    `json:"reason"`
			At      time.Time `json:"at"`
		}
		err := json.Unmarshal(r.Data, &p)
		l := byID[p.EventID]
		switch {
		case err != nil:
		case r.EventType == DeadLetterType:
			var dl DeadLetter
			if err = json.Unmarshal(r.Data, &dl); err == nil && l == nil {
				// A poison event redelivered has two letters; the first counts.
				l = &Letter{DeadLetter: dl, Attempts: 1, LastAttemptAt: dl.At, LastError: dl.Error, Status: StatusUnresolved}
				byID[dl.EventID] = l
				out = append(out, l)
			}
		case l == nil:
			if r.EventType == ResolvedType || r.EventType == AttemptType || r.EventType == SkippedType {
				err = fmt.Errorf("names event %s, which has no dead letter before it", p.EventID)
			}
		case r.EventType == ResolvedType && l.Status == StatusUnresolved:
			l.Status = StatusResolved
		case r.EventType == SkippedType && l.Status == StatusUnresolved:
			l.Status, l.SkipReason = StatusSkipped, p.Reason
		case r.EventType == AttemptType:
			l.Attempts++
			l.LastAttemptAt, l.LastError = p.At, p.Error
		}
		if err != nil {
			s.log.Error("saga skips an unreadable record of its dead-letter stream", "stream", s.opts.DeadLetterStream,
				"revision", r.EventNumber, "type", r.EventType, "err", err)
		}
	}
	return out, nil
}

// replayDeadLetters acts again on every unresolved dead letter, before the
// lanes start: a build that can now decode the event, or a state in which
// its step is no longer refused, handles it, and a resolution records that.
// Those that still fail, for whatever reason, stay unresolved for the next
// start. It fails only when the dead-letter stream cannot be read.
func (s *Saga) replayDeadLetters(ctx context.Context) error {
	letters, err := s.letters(ctx)
	if err != nil {
		return err
	}
	for _, l := range letters {
		if l.Status != StatusUnresolved {
			continue
		}
		if err := s.retry(ctx, l); err != nil {
			// One letter's trouble (the store, a customer this build cannot
			// fold) must not keep the saga from starting for everyone else.
			s.log.Warn("saga dead letter not replayed; left for the next start", "event_id", l.EventID,
				"stream", l.Stream, "revision", l.Revision, "err", err)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	return nil
}

// retry acts on one dead letter's event again. On success it records the
// resolution; when the step still fails the same way (the event still
// cannot be read, the domain still refuses, or the event is gone) it
// records the attempt. l is updated either way. It returns nil only once
// resolved.
func (s *Saga) retry(ctx context.Context, l *Letter) error {
	err := s.act(ctx, l.DeadLetter)
	var p *poison
	if errors.As(err, &p) {
		now := time.Now().UTC()
		s.metrics.unresolved.Set(float64(s.dead.mark(l.EventID, true)))
		if rerr := s.appendDeadLetters(ctx, uuid.New(), AttemptType, Attempt{EventID: l.EventID, Error: p.Error(), At: now}); rerr != nil {
			return fmt.Errorf("dead letter %s still fails (%v), and the attempt is not recorded: %w", l.EventID, p, rerr)
		}
		l.Attempts++
		l.LastAttemptAt, l.LastError = now, p.Error()
		return fmt.Errorf("%w: %w", ErrStillFails, err)
	}
	if err != nil {
		s.metrics.unresolved.Set(float64(s.dead.mark(l.EventID, true)))
		return fmt.Errorf("replay dead letter %s: %w", l.EventID, err)
	}
	// A fresh ID: a resolution recorded twice (its answer lost) is harmless.
	if err := s.appendDeadLetters(ctx, uuid.New(), ResolvedType, Resolution{EventID: l.EventID, At: time.Now().UTC()}); err != nil {
		return err
	}
	l.Status = StatusResolved
	s.metrics.unresolved.Set(float64(s.dead.mark(l.EventID, false)))
	s.log.Info("saga replayed a dead letter", "event_id", l.EventID, "type", l.Type, "stream", l.Stream, "revision", l.Revision)
	return nil
}

// act runs a dead letter's step on its event as read from its stream now.
// A step that still cannot succeed is a *poison; anything else failed is
// worth another try.
func (s *Saga) act(ctx context.Context, dl DeadLetter) error {
	orig, err := s.read(ctx, dl.Stream, dl.Revision, 1)
	if err != nil && !errors.Is(err, eventlog.ErrStreamNotFound) {
		return err
	}
	if len(orig) == 0 || orig[0].EventID.String() != dl.EventID {
		return &poison{reason: "gone", err: fmt.Errorf("event %s is no longer at %s@%d", dl.EventID, dl.Stream, dl.Revision)}
	}
	rec, decodeErr := eventlog.Decode(s.reg, orig[0])
	err = s.react(ctx, rec, decodeErr)
	if errors.Is(decodeErr, eventcodec.ErrNewerSchema) {
		return &poison{reason: reasonMalformed, err: decodeErr} // this build cannot read it: no retry here helps
	}
	return err
}

// DeadLetters returns the saga's dead letters, oldest first: the unresolved
// ones, or all with all set.
func (s *Saga) DeadLetters(ctx context.Context, all bool) ([]Letter, error) {
	letters, err := s.letters(ctx)
	if err != nil {
		return nil, fmt.Errorf("read dead letters from %s: %w", s.opts.DeadLetterStream, err)
	}
	var out []Letter
	for _, l := range letters {
		if all || l.Status == StatusUnresolved {
			out = append(out, *l)
		}
	}
	return out, nil
}

// letter finds the dead letter of eventID, refusing one no longer open.
func (s *Saga) letter(ctx context.Context, eventID string) (*Letter, error) {
	letters, err := s.letters(ctx)
	if err != nil {
		return nil, fmt.Errorf("read dead letters from %s: %w", s.opts.DeadLetterStream, err)
	}
	for _, l := range letters {
		if l.EventID == eventID {
			if l.Status != StatusUnresolved {
				return l, fmt.Errorf("%s: %w (%s)", eventID, ErrClosed, l.Status)
			}
			return l, nil
		}
	}
	return nil, fmt.Errorf("%s: %w", eventID, ErrNoDeadLetter)
}

// RetryDeadLetter acts again on the dead letter of event eventID now,
// without a restart, and returns it as it is after the attempt; the error
// says why it is still unresolved.
func (s *Saga) RetryDeadLetter(ctx context.Context, eventID string) (Letter, error) {
	l, err := s.letter(ctx, eventID)
	if err != nil {
		if l != nil {
			return *l, err
		}
		return Letter{}, err
	}
	err = s.retry(ctx, l)
	return *l, err
}

// RetryAllDeadLetters retries every unresolved dead letter, one after the
// other, and returns each as it is after its attempt. Only a failure to
// read the stream is an error: a letter that still fails says so itself.
func (s *Saga) RetryAllDeadLetters(ctx context.Context) ([]Letter, error) {
	letters, err := s.DeadLetters(ctx, false)
	if err != nil {
		return nil, err
	}
	for i := range letters {
		if err := s.retry(ctx, &letters[i]); err != nil && ctx.Err() != nil {
			return letters[:i+1], ctx.Err()
		}
	}
	return letters, nil
}

// SkipDeadLetter closes the dead letter of event eventID without acting on
// it, recording reason in the dead-letter stream: a skip is never silent.
func (s *Saga) SkipDeadLetter(ctx context.Context, eventID, reason string) (Letter, error) {
	l, err := s.letter(ctx, eventID)
	if err != nil {
		if l != nil {
			return *l, err
		}
		return Letter{}, err
	}
	if err := s.appendDeadLetters(ctx, uuid.New(), SkippedType, Skip{EventID: eventID, Reason: reason, At: time.Now().UTC()}); err != nil {
		return *l, err
	}
	l.Status, l.SkipReason = StatusSkipped, reason
	s.metrics.unresolved.Set(float64(s.dead.mark(eventID, false)))
	s.log.Warn("saga dead letter skipped by an operator", "event_id", eventID, "type", l.Type, "stream", l.Stream,
		"revision", l.Revision, "reason", reason)
	return *l, nil
}

func (s *Saga) read(ctx context.Context, stream string, from, n uint64) ([]*esdb.RecordedEvent, error) {
	return eventlog.CallWithin(ctx, s.conn, s.opts.StoreTimeout, eventlog.Op{Method: "ReadStream", Stream: stream}, func(ctx context.Context, c *esdb.Client) ([]*esdb.RecordedEvent, error) {
		return eventlog.ReadRaw(ctx, c, stream, from, n)
	})
}
