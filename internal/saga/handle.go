package saga

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
)

// Step names; with the triggering event's ID they make the command ID
// (command.StepCommandID).
const (
	stepReserve = "reserve-credit"
	stepApprove = "approve-order"
	stepReject  = "reject-order"
	stepRelease = "release-credit"
)

// Reasons an event is set aside as a dead letter.
const (
	reasonMalformed = "malformed"
	reasonRefused   = "refused"
	reasonPanicked  = "panicked"
)

// poison is an event no retry can act on: it is set aside as a dead letter.
type poison struct {
	reason string
	err    error
}

func (p *poison) Error() string { return p.reason + ": " + p.err.Error() }
func (p *poison) Unwrap() error { return p.err }

// react acts on one decoded event (decodeErr from decoding it). Its error is
// a *poison to set aside, one carrying eventcodec.ErrNewerSchema to wait on,
// or anything else (the store, a conflict) to retry.
//
// A panic while acting is a bug that would recur on every retry: it is set
// aside too, rather than take every other customer's credit down with it.
func (s *Saga) react(ctx context.Context, rec eventlog.Recorded, decodeErr error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("saga step panicked", "type", rec.Type, "stream", rec.Stream,
				"revision", rec.Revision, "panic", r, "stack", string(debug.Stack()))
			err = &poison{reason: reasonPanicked, err: fmt.Errorf("panic: %v", r)}
		}
	}()
	switch {
	case errors.Is(decodeErr, eventcodec.ErrNewerSchema):
		return decodeErr
	case decodeErr != nil:
		return &poison{reason: reasonMalformed, err: decodeErr}
	}
	return s.handle(ctx, rec)
}

// handle acts on one event. A domain refusal the flow expects is an answer;
// any other would be refused again on every retry while money or an order
// stays stuck, so it is returned as a *poison.
func (s *Saga) handle(ctx context.Context, rec eventlog.Recorded) error {
	switch e := rec.Event.(type) {
	case domain.OrderPlaced:
		res, err := s.commands.ReserveCredit(ctx, domain.ReserveCredit{CustomerID: e.CustomerID, OrderID: e.OrderID, Amount: e.Total}, meta(rec, stepReserve))
		if domain.ReasonOf(err) == domain.ReasonCreditAlreadyDecided {
			return nil // decided by another command, whose event drives the flow on
		}
		if err != nil {
			return unexpected(stepReserve, err)
		}
		s.followUp(ctx, res.Appended)
		return nil

	case domain.CreditReserved:
		_, err := s.commands.ApproveOrder(ctx, e.OrderID, meta(rec, stepApprove))
		if domain.KindOf(err) == domain.KindRejected {
			// The order stopped being PENDING while its credit was being
			// reserved: it was cancelled. Give the credit back.
			_, err = s.commands.ReleaseCredit(ctx, domain.ReleaseCredit{CustomerID: e.CustomerID, OrderID: e.OrderID}, meta(rec, stepRelease))
			return unexpected(stepRelease, err)
		}
		return unexpected(stepApprove, err)

	case domain.CreditLimitExceeded:
		reason := fmt.Sprintf("credit limit exceeded: order total %s, available %s", e.Amount, e.Available)
		_, err := s.commands.RejectOrder(ctx, e.OrderID, reason, meta(rec, stepReject))
		if domain.KindOf(err) == domain.KindRejected {
			return nil // cancelled meanwhile; no credit was held
		}
		return unexpected(stepReject, err)

	case domain.OrderCancelled:
		_, err := s.commands.ReleaseCredit(ctx, domain.ReleaseCredit{CustomerID: e.CustomerID, OrderID: e.OrderID}, meta(rec, stepRelease))
		return unexpected(stepRelease, err)
	}
	return nil
}

// followUp takes at once the next step of the events a step just recorded
// (approve or reject after a credit decision), rather than after the
// subscription brings them back from the end of the log: under a backlog
// that would double the time to a decision. It runs beside the lane, which
// goes on with the customer's next event meanwhile (the order's stream is
// not the customer's; a compensation on the customer waits for the
// customer's lock like any command). It is only a head start: each event is
// still delivered; a step taken here is then counted done (see ahead), and
// one that failed or is still running is taken by the delivery in earnest,
// with retries and dead letters (the same command ID makes the two one). So a
// failure here is counted and left at that. With no slot free it runs in
// the lane, which holds the lane back instead of piling up goroutines.
func (s *Saga) followUp(ctx context.Context, appended []eventlog.Recorded) {
	run := func() {
		for _, rec := range appended {
			// react, not handle: a panic there is the followed event's, and
			// recovered as such, never blamed on the step that recorded it.
			if err := s.react(ctx, rec, nil); err != nil {
				s.metrics.failures.WithLabelValues("follow_up").Inc()
				s.log.Debug("saga follow-up step failed; the event's delivery takes it again",
					"type", rec.Type, "stream", rec.Stream, "revision", rec.Revision, "err", err)
				return
			}
			s.ahead.add(rec.EventID)
			s.metrics.followUps.Inc()
		}
	}
	select {
	case s.followSlots <- struct{}{}:
		s.follows.Go(func() {
			defer func() { <-s.followSlots }()
			run()
		})
	default:
		run()
	}
}

// Actor is the actor recorded on the events of the saga's own commands.
const Actor = "saga:credit"

// meta is the metadata of the command a step issues: deterministic command
// ID, the triggering event as its cause, the flow's correlation, and the
// saga as its actor.
func meta(rec eventlog.Recorded, step string) eventcodec.Metadata {
	return eventcodec.Metadata{
		CommandID:     command.StepCommandID(step, rec.EventID),
		CausationID:   rec.EventID.String(),
		CorrelationID: rec.Meta.CorrelationID,
		Actor:         Actor,
	}
}

// unexpected turns a domain refusal the caller did not expect into a
// *poison, and passes other errors (to be retried) through.
func unexpected(step string, err error) error {
	if err == nil || domain.KindOf(err) == 0 {
		return err
	}
	return &poison{reason: reasonRefused, err: fmt.Errorf("%s refused (%s): %w", step, domain.ReasonOf(err), err)}
}
