// Package apierr maps failures to gRPC statuses with machine-readable details,
// the one place where Orderly's error conventions live:
//
//	malformed input      → InvalidArgument + google.rpc.BadRequest field violations
//	business rule        → FailedPrecondition + google.rpc.ErrorInfo reason
//	unknown aggregate    → NotFound, duplicate create → AlreadyExists
//	conflict after retry → Aborted, dependency down → Unavailable
//
// grpc-gateway renders the same details in REST error bodies, so an HTTP client
// sees the offending field names too.
package apierr

import (
	"context"
	"errors"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/orderly/orderly/internal/domain"
)

// Domain is the ErrorInfo domain of every reason Orderly reports.
const Domain = "orderly.v1"

// FromDomain converts err to a gRPC status error. A *domain.Error keeps its
// kind, reason and field violations; an event store that cannot be reached is
// Unavailable (clients may retry: commands are idempotent); context errors
// become DeadlineExceeded or Canceled; anything else, being unexpected,
// becomes Internal with msg (log err first: it is not sent).
func FromDomain(err error, msg string) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var de *domain.Error
	var se *esdb.Error
	switch {
	case errors.As(err, &de):
		return fromDomainError(de)
	case errors.As(err, &se) && storeDown(se.Code()):
		return status.Error(codes.Unavailable, msg+": event store unavailable")
	case errors.As(err, &se) && se.Code() == esdb.ErrorCodeDeadlineExceeded:
		return status.Error(codes.DeadlineExceeded, msg+": event store deadline exceeded")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, msg+": deadline exceeded")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, msg+": canceled")
	}
	return status.Error(codes.Internal, msg)
}

func storeDown(c esdb.ErrorCode) bool {
	return c == esdb.ErrorUnavailable || c == esdb.ErrorCodeConnectionClosed || c == esdb.ErrorCodeNotLeader
}

func fromDomainError(de *domain.Error) error {
	code := codes.FailedPrecondition
	switch de.Kind {
	case domain.KindInvalid:
		fields := make([]FieldViolation, len(de.Violations))
		for i, v := range de.Violations {
			fields[i] = FieldViolation(v)
		}
		return Invalid(de.Message, fields...)
	case domain.KindNotFound:
		code = codes.NotFound
	case domain.KindAlreadyExists:
		code = codes.AlreadyExists
	}
	return withDetails(status.New(code, de.Message), &errdetails.ErrorInfo{Reason: de.Reason, Domain: Domain})
}

// FieldViolation names a malformed request field and says why.
type FieldViolation struct {
	Field       string
	Description string
}

// Invalid returns InvalidArgument with a BadRequest detail listing fields.
func Invalid(msg string, fields ...FieldViolation) error {
	br := &errdetails.BadRequest{}
	for _, f := range fields {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field: f.Field, Description: f.Description,
		})
	}
	return withDetails(status.New(codes.InvalidArgument, msg), br, &errdetails.ErrorInfo{Reason: domain.ReasonInvalidArgument, Domain: Domain})
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
