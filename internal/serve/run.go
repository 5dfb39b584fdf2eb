package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server is something that serves on its own listener until shut down.
type Server interface {
	Serve() error
	Shutdown(ctx context.Context) error
}

// GRPC wraps a gRPC server and its listener.
func GRPC(s *GRPCServer, lis net.Listener) Server { return grpcServer{s, lis} }

type grpcServer struct {
	s   *GRPCServer
	lis net.Listener
}

func (g grpcServer) Serve() error { return g.s.Serve(g.lis) }

// Shutdown drains in-flight calls; past ctx's deadline it cuts them, because
// server streams (subscriptions, watches) would otherwise never end.
func (g grpcServer) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() { g.s.GracefulStop(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		g.s.Stop()
		<-done
		return ctx.Err()
	}
}

// HTTP wraps an HTTP server and its listener.
func HTTP(s *http.Server, lis net.Listener) Server { return httpServer{s, lis} }

type httpServer struct {
	s   *http.Server
	lis net.Listener
}

func (h httpServer) Serve() error {
	if err := h.s.Serve(h.lis); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (h httpServer) Shutdown(ctx context.Context) error {
	err := h.s.Shutdown(ctx)
	if err != nil {
		_ = h.s.Close()
	}
	return err
}

// Grace is how long in-flight calls get to finish on shutdown: long enough
// for any unary call under its deadline, short enough for an orchestrator's
// stop timeout (Docker's is 10 s by default, counted from SIGTERM).
const Grace = 8 * time.Second

// Run serves every named server until ctx is done or one of them fails, then
// shuts all of them down within grace. It returns the first serving error.
func Run(ctx context.Context, log *slog.Logger, grace time.Duration, servers map[string]Server) error {
	errs := make(chan error, len(servers))
	for name, s := range servers {
		go func() {
			if err := s.Serve(); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				return
			}
			errs <- nil
		}()
	}
	var first error
	select {
	case <-ctx.Done():
	case first = <-errs:
	}
	log.Info("shutting down", "grace", grace.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	for name, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			log.Warn("shutdown cut short", "server", name, "err", err)
		}
	}
	return first
}

// Background wraps work that runs until its context ends (a subscription, a
// saga, a projection) as a Server, so Run starts and stops it together with
// the listeners.
func Background(work func(ctx context.Context) error) Server {
	ctx, cancel := context.WithCancel(context.Background())
	return &background{work: work, ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

type background struct {
	work   func(ctx context.Context) error
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

func (b *background) Serve() error {
	defer close(b.done)
	return b.work(b.ctx)
}

func (b *background) Shutdown(ctx context.Context) error {
	b.cancel()
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
