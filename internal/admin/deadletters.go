package admin

import (
	"context"
	"errors"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/apierr"
	"github.com/orderly/orderly/internal/saga"
	"github.com/orderly/orderly/internal/views"
)

// ListDeadLetters lists the dead letters of the credit saga (read from its
// dead-letter stream) or of a view's projection (parked in the view store;
// a rebuild by a build that decodes them applies them).
func (s *Service) ListDeadLetters(ctx context.Context, req *orderlyv1.ListDeadLettersRequest) (*orderlyv1.ListDeadLettersResponse, error) {
	name := req.GetProcessor()
	if name == "" {
		name = SagaName
	}
	if err := invalid("ListDeadLetters", checkProcessor("processor", name)); err != nil {
		return nil, err
	}
	if name != SagaName {
		return s.projectionDeadLetters(ctx, views.View(name))
	}
	if s.opts.Saga == nil {
		return nil, s.elsewhere(name)
	}
	letters, err := s.opts.Saga.DeadLetters(ctx, req.GetIncludeResolved())
	if err != nil {
		return nil, s.failed(ctx, err, "list dead letters")
	}
	resp := &orderlyv1.ListDeadLettersResponse{}
	for _, l := range letters {
		resp.DeadLetters = append(resp.DeadLetters, letterProto(l))
	}
	return resp, nil
}

func (s *Service) projectionDeadLetters(ctx context.Context, v views.View) (*orderlyv1.ListDeadLettersResponse, error) {
	if s.opts.Projector == nil || s.opts.Views == nil {
		return nil, s.elsewhere(string(v))
	}
	sctx, cancel := context.WithTimeout(ctx, s.opts.StoreTimeout)
	defer cancel()
	letters, err := s.opts.Views.DeadLetters(sctx, v)
	if err != nil {
		return nil, s.failed(ctx, err, "list dead letters")
	}
	resp := &orderlyv1.ListDeadLettersResponse{}
	for _, dl := range letters {
		resp.DeadLetters = append(resp.DeadLetters, &orderlyv1.DeadLetter{
			EventId: dl.EventID, Stream: dl.Stream, Revision: dl.Revision, Position: dl.Position, Type: dl.Type,
			Reason: "decode", Error: dl.Error, FirstAttemptAt: stamp(dl.RecordedAt), LastAttemptAt: stamp(dl.RecordedAt),
			Attempts: 1, Status: orderlyv1.DeadLetterStatus_DEAD_LETTER_STATUS_UNRESOLVED,
		})
	}
	return resp, nil
}

func letterProto(l saga.Letter) *orderlyv1.DeadLetter {
	st := orderlyv1.DeadLetterStatus_DEAD_LETTER_STATUS_UNRESOLVED
	switch l.Status {
	case saga.StatusResolved:
		st = orderlyv1.DeadLetterStatus_DEAD_LETTER_STATUS_RESOLVED
	case saga.StatusSkipped:
		st = orderlyv1.DeadLetterStatus_DEAD_LETTER_STATUS_SKIPPED
	}
	return &orderlyv1.DeadLetter{
		EventId: l.EventID, Stream: l.Stream, Revision: l.Revision, Position: l.Commit, Type: l.Type,
		Reason: l.Reason, Error: l.LastError, FirstAttemptAt: stamp(l.At), LastAttemptAt: stamp(l.LastAttemptAt),
		Attempts: uint32(min(l.Attempts, 1<<31)), Status: st, SkipReason: l.SkipReason,
	}
}

// RetryDeadLetter retries one of the credit saga's dead letters, or all.
func (s *Service) RetryDeadLetter(ctx context.Context, req *orderlyv1.RetryDeadLetterRequest) (*orderlyv1.RetryDeadLetterResponse, error) {
	id, all := req.GetEventId(), req.GetAll()
	var bad error
	switch {
	case all && id != "":
		bad = invalid("RetryDeadLetter", []apierr.FieldViolation{{Field: "event_id", Description: "set event_id or all, not both"}})
	case !all:
		bad = invalid("RetryDeadLetter", checkEventID("event_id", id))
	}
	if bad != nil {
		return nil, bad
	}
	if s.opts.Saga == nil {
		return nil, s.elsewhere(SagaName)
	}
	if all {
		letters, err := s.opts.Saga.RetryAllDeadLetters(ctx)
		if err != nil {
			return nil, s.failed(ctx, err, "retry dead letters")
		}
		resp := &orderlyv1.RetryDeadLetterResponse{}
		for _, l := range letters {
			resp.DeadLetters = append(resp.DeadLetters, letterProto(l))
		}
		return resp, nil
	}
	l, err := s.opts.Saga.RetryDeadLetter(ctx, id)
	if refusal := letterRefusal(err); refusal != nil {
		return nil, refusal
	}
	// A retry that failed again is an answer, not an error: the letter
	// says so, with the attempt's error. Only a store that failed the
	// attempt itself is.
	if err != nil && !isPoison(err) {
		return nil, s.failed(ctx, err, "retry dead letter")
	}
	return &orderlyv1.RetryDeadLetterResponse{DeadLetters: []*orderlyv1.DeadLetter{letterProto(l)}}, nil
}

// isPoison reports a retry whose step failed the same way again.
func isPoison(err error) bool { return errors.Is(err, saga.ErrStillFails) }

// SkipDeadLetter closes one of the credit saga's dead letters, recording why.
func (s *Service) SkipDeadLetter(ctx context.Context, req *orderlyv1.SkipDeadLetterRequest) (*orderlyv1.SkipDeadLetterResponse, error) {
	if err := invalid("SkipDeadLetter", checkEventID("event_id", req.GetEventId()), checkReason("reason", req.GetReason())); err != nil {
		return nil, err
	}
	if s.opts.Saga == nil {
		return nil, s.elsewhere(SagaName)
	}
	l, err := s.opts.Saga.SkipDeadLetter(ctx, req.GetEventId(), req.GetReason())
	if refusal := letterRefusal(err); refusal != nil {
		return nil, refusal
	}
	if err != nil {
		return nil, s.failed(ctx, err, "skip dead letter")
	}
	return &orderlyv1.SkipDeadLetterResponse{DeadLetter: letterProto(l)}, nil
}
