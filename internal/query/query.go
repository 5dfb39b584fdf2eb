// Package query is the read side: orderly.v1.QueryService over the views the
// projector keeps, plus audit history, temporal reads and watches served
// straight from the event store.
package query

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/apierr"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/pagetoken"
	"github.com/orderly/orderly/internal/views"
)

// Options tunes a Service; the zero value works.
type Options struct {
	// PageTokenKey seals page tokens; replicas that share it accept each
	// other's tokens. Empty: a random key, so tokens die with the process.
	PageTokenKey []byte
	// Notifier wakes read-your-writes waits at once when the projector runs
	// in this process; nil makes them poll the view store with backoff.
	Notifier *views.Notifier
	// MaxWait bounds a min_position wait, and a watch's wait for its first
	// answer, when the call has no deadline.
	MaxWait time.Duration
	// StoreTimeout bounds each call to the event store and to the view
	// store (default 5s), whatever the caller's deadline, if any: a store
	// that does not answer makes calls fail (Unavailable), not pile up.
	StoreTimeout time.Duration
	Log          *slog.Logger
}

const defaultStoreTimeout = 5 * time.Second

// Service implements orderlyv1.QueryServiceServer.
type Service struct {
	orderlyv1.UnimplementedQueryServiceServer
	store    *eventlog.Conn
	reg      *eventcodec.Registry
	views    views.Reader
	tokens   *pagetoken.Codec
	notifier *views.Notifier
	maxWait  time.Duration
	timeout  time.Duration // of each store call
	log      *slog.Logger
	hub      *hub
}

// New returns a query service reading views from r and history from store.
// Call Run to feed WatchOrder.
func New(store *eventlog.Conn, r views.Reader, opts Options) *Service {
	if opts.MaxWait <= 0 {
		opts.MaxWait = 10 * time.Second
	}
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = defaultStoreTimeout
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Service{
		store:    store,
		reg:      eventcodec.Default(),
		views:    timedReader{r: r, timeout: opts.StoreTimeout},
		tokens:   pagetoken.New(opts.PageTokenKey),
		notifier: opts.Notifier,
		maxWait:  opts.MaxWait,
		timeout:  opts.StoreTimeout,
		log:      opts.Log,
		hub:      newHub(store, opts.Log, opts.StoreTimeout),
	}
}

// storeCall runs one event store call under the store timeout; a call it
// cuts short fails with eventlog.ErrTimeout, which apierr.From answers as
// Unavailable (the caller's own deadline stays DeadlineExceeded).
func storeCall[T any](ctx context.Context, s *Service, op eventlog.Op, fn func(context.Context, *esdb.Client) (T, error)) (T, error) {
	return eventlog.CallWithin(ctx, s.store, s.timeout, op, fn)
}

// Register adds the service to a gRPC server.
func (s *Service) Register(g grpc.ServiceRegistrar) { orderlyv1.RegisterQueryServiceServer(g, s) }

// Run follows the order streams for WatchOrder until ctx ends; watches end
// with it.
func (s *Service) Run(ctx context.Context) error { return s.hub.run(ctx) }

// await holds a read until the views reflect position pos (read-your-writes),
// bounded by the call's deadline or MaxWait.
func (s *Service) await(ctx context.Context, pos uint64) error {
	if pos == 0 {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.maxWait)
		defer cancel()
	}
	seen, err := views.WaitCheckpoint(ctx, s.views, s.notifier, pos)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded,
			"views have not reached min_position %d yet (they are at %d); retry later", pos, seen)
	}
	return s.viewErr(ctx, err, "wait for min_position")
}

// viewErr maps a view store failure (ErrNotFound is the caller's to handle):
// the caller's own deadline, or a view store that is down.
func (s *Service) viewErr(ctx context.Context, err error, op string) error {
	if ctx.Err() != nil {
		return apierr.From(ctx, s.log, err, op)
	}
	s.log.ErrorContext(ctx, op, "err", err)
	return status.Error(codes.Unavailable, op+": view store unavailable; retry")
}

// RegisterGateway routes the query REST endpoints of mux to the gRPC service
// behind conn; it is a serve.GatewayRegistrar.
func RegisterGateway(ctx context.Context, mux *runtime.ServeMux, conn grpc.ClientConnInterface) error {
	if err := orderlyv1.RegisterQueryServiceHandlerClient(ctx, mux, orderlyv1.NewQueryServiceClient(conn)); err != nil {
		return fmt.Errorf("query gateway: %w", err)
	}
	return nil
}
