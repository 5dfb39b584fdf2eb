package eventlog

import (
	"errors"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrTimeout is the cause of a store call cut short by a service's own store
// deadline (context.WithTimeoutCause), as opposed to the caller's deadline.
var ErrTimeout = errors.New("event store did not answer in time")

// Unavailable reports failures that say the store could not be reached or
// did not answer in time, as opposed to the store refusing the request. The
// official client reports them as an *esdb.Error, or on some read paths as
// the bare gRPC status.
func Unavailable(err error) bool {
	var esErr *esdb.Error
	if errors.As(err, &esErr) {
		switch esErr.Code() {
		case esdb.ErrorUnavailable, esdb.ErrorCodeConnectionClosed, esdb.ErrorCodeNotLeader, esdb.ErrorCodeDeadlineExceeded:
			return true
		}
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return errors.Is(err, ErrTimeout) || errors.Is(err, ErrClosed)
}
