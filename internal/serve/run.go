package serve

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Grace is how long a shutdown takes at most by default: long enough for
// any unary call under its store deadline, short enough for an
// orchestrator's stop timeout (Docker's is 10 s by default, counted from
// SIGTERM).
const Grace = 8 * time.Second

// GraceFlag adds -shutdown-timeout (ORDERLY_SHUTDOWN_TIMEOUT through
// config.Parse) to fs: the bound Run's shutdown keeps.
func GraceFlag(fs *flag.FlagSet) *time.Duration {
	return fs.Duration("shutdown-timeout", Grace, "longest a graceful shutdown takes after SIGTERM or Ctrl-C, all phases together; a second signal exits at once")
}

// Plan is what a process runs, grouped by how it stops. Run stops the
// groups in the order of the fields, each phase under its own deadline
// within the grace period:
//
//  1. the servers stop accepting: health answers NOT_SERVING first, then
//     the listeners close;
//  2. their long-lived calls (streams such as WatchOrder, reads waiting for
//     min_position) end at once with UNAVAILABLE "server shutting down",
//     so that they cannot use up the time the others need;
//  3. the other calls drain: a command finishes its append and answers;
//  4. the background work stops (saga, projector, watch hub), saving its
//     checkpoints on the way out;
//  5. the closers run, last added first: the stores close once nothing
//     uses them.
type Plan struct {
	Servers    []Server
	Background []Task
	Closers    *Closers
}

// Deadlines of the phases, as fractions of the grace period counted from
// the start of the shutdown; a phase that ends early leaves its time to
// the next ones. Draining gets the most: it is where answers are owed.
const (
	streamsShare    = 0.1 // phases 1 and 2
	drainShare      = 0.6
	backgroundShare = 0.8
)

// Run serves the plan until ctx is done or a part of it stops by itself
// (it fails, or background work returns), then shuts everything down in
// phases within grace (see Plan) and logs each phase with its duration. It
// returns the first serving error.
func Run(ctx context.Context, log *slog.Logger, grace time.Duration, p Plan) error {
	errs := make(chan error, len(p.Servers)+len(p.Background))
	for _, s := range p.Servers {
		go func() { errs <- wrap(s.Name, s.serve()) }()
	}
	bg := make([]*task, len(p.Background))
	for i, t := range p.Background {
		bg[i] = t.start(errs)
	}
	var first error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "grace", grace.String())
	case first = <-errs:
		log.Warn("shutting down: a part stopped", "err", first, "grace", grace.String())
	}
	start := time.Now()
	deadline := func(share float64) (context.Context, context.CancelFunc) {
		return context.WithDeadline(context.WithoutCancel(ctx), start.Add(time.Duration(share*float64(grace))))
	}
	phase := func(name string, share float64, run func(ctx context.Context) error) {
		pctx, cancel := deadline(share)
		defer cancel()
		began := time.Now()
		err := run(pctx)
		attrs := []any{"phase", name, "ms", time.Since(began).Milliseconds()}
		if err != nil {
			log.Warn("shutdown phase cut short", append(attrs, "err", err)...)
			return
		}
		log.Info("shutdown phase done", attrs...)
	}

	phase("stop accepting, end long-lived calls", streamsShare, func(ctx context.Context) error {
		for _, s := range p.Servers {
			s.stopAccepting()
		}
		return each(ctx, p.Servers, func(s Server) func() { return s.endLongLived })
	})
	phase("drain calls", drainShare, func(ctx context.Context) error {
		err := each(ctx, p.Servers, func(s Server) func() { return s.drained })
		if err != nil {
			for _, s := range p.Servers {
				s.cut()
			}
		}
		return err
	})
	phase("stop background work", backgroundShare, func(ctx context.Context) error {
		return each(ctx, bg, func(t *task) func() { return t.stop })
	})
	phase("close stores", 1, func(ctx context.Context) error {
		return p.Closers.close(ctx, log)
	})
	log.Info("shut down", "ms", time.Since(start).Milliseconds())
	return first
}

func wrap(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", name, err)
}

// each runs do for every part at once and waits for all of them until ctx
// is done.
func each[P any](ctx context.Context, parts []P, do func(P) func()) error {
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Go(do(p))
	}
	return wait(ctx, &wg)
}

// wait waits for wg until ctx is done.
func wait(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Server is a server taking calls on its own listener; GRPC and HTTP make
// one.
type Server struct {
	Name  string
	serve func() error
	// stopAccepting closes the listener and starts draining.
	stopAccepting func()
	// endLongLived ends the long-lived calls and returns once they have.
	endLongLived func()
	// drained returns once every call has ended.
	drained func()
	// cut ends the calls still running.
	cut func()
}

// GRPC serves s on lis. On shutdown its health service turns NOT_SERVING
// before the listener closes, and its streams and min_position waits end
// at once (see GRPCServer).
func GRPC(name string, s *GRPCServer, lis net.Listener) Server {
	done := make(chan struct{})
	return Server{
		Name:  name,
		serve: func() error { return s.Serve(lis) },
		stopAccepting: func() {
			s.health.Shutdown()
			go func() { s.GracefulStop(); close(done) }()
		},
		endLongLived: s.obs.long.end,
		drained:      func() { <-done },
		cut:          s.Stop,
	}
}

// HTTP serves s on lis, over TLS when s has a TLSConfig. Its calls that
// reach a gRPC server of the process (the REST gateway) are that server's
// calls: they end or drain with it.
func HTTP(name string, s *http.Server, lis net.Listener) Server {
	done := make(chan struct{})
	return Server{
		Name: name,
		serve: func() error {
			serve := s.Serve
			if s.TLSConfig != nil {
				serve = func(lis net.Listener) error { return s.ServeTLS(lis, "", "") }
			}
			if err := serve(lis); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
		stopAccepting: func() {
			// Shutdown closes the listener at once and returns once every
			// connection is idle; cut closes them if that takes too long.
			go func() { _ = s.Shutdown(context.Background()); close(done) }()
		},
		endLongLived: func() {},
		drained:      func() { <-done },
		cut:          func() { _ = s.Close() },
	}
}

// Task is work that runs until its context ends (a subscription, a saga, a
// projection) and then returns, having saved what it must.
type Task struct {
	Name string
	Run  func(ctx context.Context) error
}

type task struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs t; its return, whatever the error, is sent to errs, since
// background work is meant to stop only when told.
func (t Task) start(errs chan<- error) *task {
	ctx, cancel := context.WithCancel(context.Background())
	r := &task{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		err := t.Run(ctx)
		if ctx.Err() == nil {
			if err == nil {
				err = errors.New("stopped")
			}
			errs <- wrap(t.Name, err)
		}
	}()
	return r
}

func (t *task) stop() {
	t.cancel()
	<-t.done
}

// Closers close what a process opened, last added first, like defer. Run
// closes them after everything else has stopped; a command also defers
// Close, which closes what Run did not: everything, after a failed start.
type Closers struct {
	mu   sync.Mutex
	list []closer
}

type closer struct {
	name  string
	close func() error
}

// Add registers close, to run before everything added earlier.
func (c *Closers) Add(name string, close func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.list = append(c.list, closer{name, close})
}

// Close runs the closers not yet run, last added first, and returns their
// errors.
func (c *Closers) Close() error {
	var errs []error
	for cl, ok := c.next(); ok; cl, ok = c.next() {
		errs = append(errs, wrap(cl.name, cl.close()))
	}
	return errors.Join(errs...)
}

// next takes the last closer added.
func (c *Closers) next() (closer, bool) {
	if c == nil {
		return closer{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.list) == 0 {
		return closer{}, false
	}
	cl := c.list[len(c.list)-1]
	c.list = c.list[:len(c.list)-1]
	return cl, true
}

// close runs the closers in order, each one waited for until ctx is done;
// then it gives up on the rest, which a later Close no longer runs.
func (c *Closers) close(ctx context.Context, log *slog.Logger) error {
	for cl, ok := c.next(); ok; cl, ok = c.next() {
		done := make(chan error, 1)
		began := time.Now()
		go func() { done <- cl.close() }()
		select {
		case err := <-done:
			if err != nil {
				log.Warn("close failed", "part", cl.name, "err", err)
			}
			log.Debug("closed", "part", cl.name, "ms", time.Since(began).Milliseconds())
		case <-ctx.Done():
			// Past the grace period the process exits without the rest:
			// what the stores acknowledged is on disk already.
			left := []string{cl.name}
			for cl, ok := c.next(); ok; cl, ok = c.next() {
				left = append(left, cl.name)
			}
			return fmt.Errorf("not closed: %v: %w", left, ctx.Err())
		}
	}
	return nil
}
