package serve

import (
	"context"
	"errors"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// errShuttingDown is the cause of a long-lived call's end at shutdown.
var errShuttingDown = errors.New("server shutting down")

// shuttingDown is what a client of a call ended at shutdown gets: retry
// elsewhere or after the restart.
var shuttingDown = status.Error(codes.Unavailable, "server shutting down; call again (another replica, or after the restart)")

// longCalls tracks a server's calls that last as long as the client wants
// (streams) or wait for something that may take a while (min_position),
// so that shutdown ends them at once rather than wait for them.
type longCalls struct {
	mu      sync.Mutex
	ended   bool
	cancels map[*context.CancelCauseFunc]struct{}
	running sync.WaitGroup
}

func newLongCalls() *longCalls {
	return &longCalls{cancels: map[*context.CancelCauseFunc]struct{}{}}
}

// begin returns the context a long-lived call runs under, and done, to
// call once it has returned. After end, the context is ended already.
func (l *longCalls) begin(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		cancel(errShuttingDown)
		return ctx, func() {}
	}
	key := &cancel
	l.cancels[key] = struct{}{}
	l.running.Add(1)
	return ctx, func() {
		l.mu.Lock()
		delete(l.cancels, key)
		l.mu.Unlock()
		cancel(nil)
		l.running.Done()
	}
}

// end ends every long-lived call, and those begun later, and returns once
// the handlers of the running ones have returned.
func (l *longCalls) end() {
	l.mu.Lock()
	l.ended = true
	for cancel := range l.cancels {
		(*cancel)(errShuttingDown)
	}
	l.mu.Unlock()
	l.running.Wait()
}

// outcome is a long-lived call's status: one ended by the shutdown says
// so, whatever its handler made of the cancellation (a watch returns nil),
// unless it had succeeded anyway.
func outcome(ctx context.Context, err error, stream bool) error {
	if context.Cause(ctx) == errShuttingDown && (err != nil || stream) {
		return shuttingDown
	}
	return err
}

// waits reports whether a request asks the server to wait for the views
// (a nonzero min_position), which may take a while.
func waits(req any) bool {
	m, ok := req.(proto.Message)
	if !ok {
		return false
	}
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName("min_position")
	return fd != nil && r.Has(fd)
}
