package eventstore

import (
	"context"
	"runtime/debug"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A handler that panics fails its own call with INTERNAL and leaves the
// store serving: a bug in one request path must not take down every
// client's store. The sequencer runs outside handlers, so its state is not
// left half-changed by a handler's panic.

func (s *Server) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = s.panicked(info.FullMethod, p)
		}
	}()
	s.beforeHandler(info.FullMethod)
	return handler(ctx, req)
}

func (s *Server) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = s.panicked(info.FullMethod, p)
			if info.IsClientStream {
				// Its client reads the answer only after sending everything; see Append.
				drain(ss, s.cfg.MaxAppendSize+s.cfg.MaxEventSize)
			}
		}
	}()
	s.beforeHandler(info.FullMethod)
	return handler(srv, ss)
}

// panicked logs a recovered panic with its stack and returns the call's status.
func (s *Server) panicked(method string, p any) error {
	s.log.Error("event store handler panicked; the call fails, the store keeps serving",
		"method", method, "panic", p, "stack", string(debug.Stack()))
	s.metrics.panics.Inc()
	return status.Errorf(codes.Internal, "event store: internal error in %s (logged on the server)", method)
}

// beforeHandler runs the test hook, if one is set (see export_test.go).
func (s *Server) beforeHandler(method string) {
	if hook := s.testHook.Load(); hook != nil {
		(*hook)(method)
	}
}
