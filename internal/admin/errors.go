package admin

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/apierr"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/saga"
	"github.com/orderly/orderly/internal/views"
)

// Reasons of AdminService refusals (google.rpc.ErrorInfo).
const (
	ReasonElsewhere      = "PROCESSOR_ELSEWHERE"
	ReasonRebuildRunning = "REBUILD_RUNNING"
	ReasonNoRebuild      = "REBUILD_NOT_FOUND"
	ReasonNoDeadLetter   = "DEAD_LETTER_NOT_FOUND"
	ReasonLetterClosed   = "DEAD_LETTER_CLOSED"
)

// refuse is FAILED_PRECONDITION (or NOT_FOUND) with reason.
func refuse(kind domain.Kind, reason, format string, args ...any) error {
	return apierr.Domain(&domain.Error{Kind: kind, Reason: reason, Message: fmt.Sprintf(format, args...)})
}

// elsewhere refuses a call about processor name, which another process runs.
func (s *Service) elsewhere(name string) error {
	return refuse(domain.KindRejected, ReasonElsewhere,
		"processor %s does not run in this process (%s, which runs: %s): call the AdminService of the process that runs it",
		name, s.opts.Process, s.hosted())
}

// failed converts a store failure of op.
func (s *Service) failed(ctx context.Context, err error, op string) error {
	return apierr.From(ctx, s.opts.Log, err, op)
}

// Field checks. Each returns the violations of one field, so that every
// bad field of a request is reported at once.

func checkProcessor(field, name string) []apierr.FieldViolation {
	switch {
	case name == "":
		return []apierr.FieldViolation{{Field: field, Description: fmt.Sprintf("required: one of %v", Names())}}
	case name == SagaName || views.View(name).Valid():
		return nil
	}
	return []apierr.FieldViolation{{Field: field, Description: fmt.Sprintf("unknown processor %.64q: want one of %v", name, Names())}}
}

func checkView(field, name string) []apierr.FieldViolation {
	switch {
	case name == "":
		return []apierr.FieldViolation{{Field: field, Description: fmt.Sprintf("required: one of %v", views.All())}}
	case views.View(name).Valid():
		return nil
	}
	return []apierr.FieldViolation{{Field: field, Description: fmt.Sprintf("unknown view %.64q: want one of %v", name, views.All())}}
}

func checkEventID(field, id string) []apierr.FieldViolation {
	if id == "" {
		return []apierr.FieldViolation{{Field: field, Description: "required: the dead letter's event_id"}}
	}
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return []apierr.FieldViolation{{Field: field, Description: "must be a UUID (the ID of the event set aside)"}}
	}
	return nil
}

// maxSkipReason bounds a skip's reason, which is stored with it.
const maxSkipReason = 500

func checkReason(field, reason string) []apierr.FieldViolation {
	if n := len([]rune(reason)); n == 0 || n > maxSkipReason {
		return []apierr.FieldViolation{{Field: field, Description: fmt.Sprintf("required: why no action is needed, 1-%d characters", maxSkipReason)}}
	}
	return nil
}

// invalid is INVALID_ARGUMENT naming bad, or nil when bad is empty.
func invalid(op string, bad ...[]apierr.FieldViolation) error {
	var all []apierr.FieldViolation
	for _, b := range bad {
		all = append(all, b...)
	}
	if len(all) == 0 {
		return nil
	}
	return apierr.Invalid("invalid "+op, all...)
}

// letterRefusal converts the saga's refusal of a dead-letter call; nil for
// any other failure.
func letterRefusal(err error) error {
	switch {
	case errors.Is(err, saga.ErrNoDeadLetter):
		return refuse(domain.KindNotFound, ReasonNoDeadLetter, "%v", err)
	case errors.Is(err, saga.ErrClosed):
		return refuse(domain.KindRejected, ReasonLetterClosed, "%v", err)
	}
	return nil
}
