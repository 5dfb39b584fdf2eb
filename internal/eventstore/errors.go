package eventstore

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

var errStreamDeleted = errors.New("stream is deleted")

// statusFor turns an error from the write or read path into the gRPC status
// the official client decodes. A deleted stream must carry the
// "exception"/"stream-name" trailers: the client keys on them, not on the code.
func statusFor(ctx context.Context, log *slog.Logger, stream string, err error) error {
	switch {
	case errors.Is(err, errStreamDeleted):
		_ = grpc.SetTrailer(ctx, metadata.Pairs("exception", "stream-deleted", "stream-name", trailerValue(stream)))
		return status.Errorf(codes.FailedPrecondition, "stream %q is deleted", stream)
	case errors.Is(err, errClosed):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	log.Error("event store operation failed", "stream", stream, "err", err)
	return status.Errorf(codes.Internal, "stream %q: %v", stream, err)
}

// wrongVersionStatus is a failed Delete/Tombstone expectation. Appends answer
// a conflict in the response body instead, which is what the client decodes.
func wrongVersionStatus(ctx context.Context, stream string, e expectation, r result) error {
	current := "no stream"
	if !r.noStream {
		current = strconv.FormatUint(r.current, 10)
	}
	_ = grpc.SetTrailer(ctx, metadata.Pairs("exception", "wrong-expected-version",
		"stream-name", trailerValue(stream), "expected-version", e.String(), "actual-version", current))
	return status.Errorf(codes.FailedPrecondition, "stream %q: wrong expected version: expected %s, current %s", stream, e, current)
}

// trailerValue makes a stream name sendable in a trailer. HTTP/2 refuses
// control characters in header values, so the client would get Internal
// instead of the status (and the official client needs "stream-name" beside
// "stream-deleted"): such a name goes quoted, in Go syntax. Found by
// FuzzStreamsRequest.
func trailerValue(stream string) string {
	if strings.ContainsFunc(stream, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return strconv.Quote(stream)
	}
	return stream
}
