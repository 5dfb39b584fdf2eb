// Package admin serves orderly.v1.AdminService: what an operator sees of
// and does to the processors of this process — the view projections and
// the credit saga — and their dead letters and rebuilds.
//
// A process serves the processors it runs and nothing else: a call about
// one that runs elsewhere (a split deployment) is refused
// FAILED_PRECONDITION, saying where it runs, rather than answered with
// what this process cannot know.
package admin

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/projection"
	"github.com/orderly/orderly/internal/saga"
	"github.com/orderly/orderly/internal/views"
)

// SagaName is the credit saga's processor name; the projections are named
// by their views.
const SagaName = saga.Name

// Names are every processor's name, in the order they are listed.
func Names() []string {
	var out []string
	for _, v := range views.All() {
		out = append(out, string(v))
	}
	return append(out, SagaName)
}

// Options say what this process runs.
type Options struct {
	// Projector projects the views in this process; nil when another
	// process does. Views, its view store, goes with it (dead letters).
	Projector *projection.Projector
	Views     views.Store
	// Saga is the credit saga of this process; nil when another process
	// runs it.
	Saga *saga.Saga
	// Conn reads the event store's head.
	Conn *eventlog.Conn
	// StoreTimeout bounds each store call of a request (default 5s).
	StoreTimeout time.Duration
	// Process names this process in refusals ("command-svc").
	Process string
	Log     *slog.Logger
}

// Service is the AdminService of one process. Run it (as background
// work) so that rebuilds it started stop with the process.
type Service struct {
	orderlyv1.UnimplementedAdminServiceServer
	opts Options

	// base is the context of rebuilds; Run cancels it on the way out.
	base   context.Context
	cancel context.CancelFunc
	jobs   sync.WaitGroup

	mu       sync.Mutex
	rebuilds map[views.View]*rebuild
}

// New returns the AdminService of a process running what opts name.
func New(opts Options) *Service {
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = 5 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	base, cancel := context.WithCancel(context.Background())
	return &Service{opts: opts, base: base, cancel: cancel, rebuilds: map[views.View]*rebuild{}}
}

// Register serves orderly.v1.AdminService on srv.
func (s *Service) Register(srv grpc.ServiceRegistrar) {
	orderlyv1.RegisterAdminServiceServer(srv, s)
}

// Run waits for ctx, then stops the rebuilds this service started (an
// interrupted rebuild leaves the live views as they were) and waits for
// them.
func (s *Service) Run(ctx context.Context) error {
	<-ctx.Done()
	s.cancel()
	s.jobs.Wait()
	return nil
}

// hosted names the processors this process runs, for refusals.
func (s *Service) hosted() string {
	var names []string
	if s.opts.Projector != nil {
		for _, v := range views.All() {
			names = append(names, string(v))
		}
	}
	if s.opts.Saga != nil {
		names = append(names, SagaName)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// head reads the last commit position of $all.
func (s *Service) head(ctx context.Context) (uint64, error) {
	return eventlog.CallWithin(ctx, s.opts.Conn, s.opts.StoreTimeout, eventlog.Op{Method: "ReadAll", Stream: eventlog.AllStream}, func(ctx context.Context, c *esdb.Client) (uint64, error) {
		p, _, err := eventlog.AllHead(ctx, c)
		if err != nil {
			return 0, fmt.Errorf("read the event store's head: %w", err)
		}
		return p.Commit, nil
	})
}
