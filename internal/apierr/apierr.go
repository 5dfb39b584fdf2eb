// Package apierr maps failures to gRPC statuses with machine-readable details,
// the one place where Orderly's error conventions live:
//
//	malformed input      → InvalidArgument + google.rpc.BadRequest field violations
//	business rule        → FailedPrecondition + google.rpc.ErrorInfo reason
//	unknown aggregate    → NotFound, duplicate create → AlreadyExists
//	event store down     → Unavailable, anything unexpected → Internal
//
// grpc-gateway renders the same details in REST error bodies, so an HTTP client
// sees the offending field names too.
package apierr

import (
	"cmp"
	"context"
	"errors"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventlog"
)

// ErrorDomain is the ErrorInfo domain of every reason Orderly reports.
const ErrorDomain = "orderly.v1"

// From converts a failure of operation op to a gRPC status error and logs
// what a client is not told. A *domain.Error keeps its kind, reason and field
// violations; when the caller's ctx is done, its deadline or cancellation is
// the answer; an event store that cannot be reached is Unavailable (clients
// may retry: commands are idempotent); anything else, being unexpected, is
// Internal, and its details stay in the log.
func From(ctx context.Context, log *slog.Logger, err error, op string) error {
	if err == nil {
		return nil
	}
	var de *domain.Error
	switch {
	case errors.As(err, &de):
		return Domain(de)
	case ctx.Err() != nil:
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return status.Error(codes.DeadlineExceeded, op+": deadline exceeded")
		}
		return status.Error(codes.Canceled, op+": canceled")
	case eventlog.Unavailable(err):
		log.WarnContext(ctx, "event store unavailable", "op", op, "err", err)
		return status.Error(codes.Unavailable, op+": event store unavailable; retry")
	}
	log.ErrorContext(ctx, "operation failed", "op", op, "err", err)
	return status.Error(codes.Internal, op+": internal error")
}

// Domain converts a domain refusal: its kind picks the code, its reason
// becomes an ErrorInfo and its field violations a BadRequest.
func Domain(de *domain.Error) error {
	code := codes.FailedPrecondition
	switch de.Kind {
	case domain.KindInvalid:
		fields := make([]FieldViolation, len(de.Violations))
		for i, v := range de.Violations {
			fields[i] = FieldViolation(v)
		}
		return invalid(de.Message, cmp.Or(de.Reason, domain.ReasonInvalidArgument), fields)
	case domain.KindNotFound:
		code = codes.NotFound
	case domain.KindAlreadyExists:
		code = codes.AlreadyExists
	}
	return withDetails(status.New(code, de.Message), &errdetails.ErrorInfo{Reason: de.Reason, Domain: ErrorDomain})
}

// FieldViolation names a malformed request field and says why.
type FieldViolation struct {
	Field       string
	Description string
}

// Invalid returns InvalidArgument with a BadRequest detail listing fields.
func Invalid(msg string, fields ...FieldViolation) error {
	return invalid(msg, domain.ReasonInvalidArgument, fields)
}

func invalid(msg, reason string, fields []FieldViolation) error {
	br := &errdetails.BadRequest{}
	for _, f := range fields {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field: f.Field, Description: f.Description,
		})
	}
	return withDetails(status.New(codes.InvalidArgument, msg), br, &errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain})
}

// InvalidField is Invalid for a single field.
func InvalidField(field, description string) error {
	return Invalid(field+": "+description, FieldViolation{Field: field, Description: description})
}

// withDetails attaches details; they are well-formed messages, so failing to
// attach them is impossible in practice and the bare status is still right.
func withDetails(st *status.Status, details ...protoadapt.MessageV1) error {
	if ds, err := st.WithDetails(details...); err == nil {
		return ds.Err()
	}
	return st.Err()
}
