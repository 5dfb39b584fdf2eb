// Package command is Orderly's write side: it runs commands against the
// event store, for gRPC and REST clients (Register, RegisterGateway) and for
// the credit saga (the in-process methods of Service).
//
// Every command goes through one executor (see execute): read the
// aggregate's stream with the official client, fold it with the pure domain,
// decide, and append the new events at the revision read, retrying on
// concurrent writes. Event IDs are derived from the command ID, so a command
// sent twice is applied once and answers the same result both times.
package command

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
)

// Options tune a Service. Zero values take the defaults.
type Options struct {
	// StoreTimeout bounds each call to the event store; a command whose
	// store call runs past it fails Unavailable. Default 5s.
	StoreTimeout time.Duration
	// MaxAttempts is how many times a command is decided against a freshly
	// read stream while concurrent writers keep changing it, before it fails
	// with ErrConflict (Aborted). Default 20.
	MaxAttempts int
	// Identify names the authenticated caller of a gRPC request, recorded as
	// the events' actor. Nil while the service runs without authentication.
	Identify func(context.Context) string
	// Registerer receives the command metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
}

const (
	defaultStoreTimeout = 5 * time.Second
	defaultMaxAttempts  = 20

	// How old, and how many, the customers PlaceOrder remembers may be.
	recentCustomerAge   = time.Second
	recentCustomerCount = 10_000
)

// Service runs commands. It is safe for concurrent use.
type Service struct {
	conn      *eventlog.Conn
	reg       *eventcodec.Registry
	log       *slog.Logger
	opts      Options
	conflicts *prometheus.CounterVec
	recent    *recentCustomers
}

// New returns a service that reaches the event store through conn.
func New(conn *eventlog.Conn, log *slog.Logger, opts Options) (*Service, error) {
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = defaultStoreTimeout
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = defaultMaxAttempts
	}
	conflicts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orderly_command_conflicts_total",
		Help: "Appends refused because another writer changed the stream first; each is followed by a new attempt or, after MaxAttempts, ABORTED.",
	}, []string{"aggregate"})
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(conflicts); err != nil {
			return nil, fmt.Errorf("command metrics: %w", err)
		}
	}
	return &Service{
		conn: conn, reg: eventcodec.Default(), log: log, opts: opts, conflicts: conflicts,
		recent: newRecentCustomers(recentCustomerAge, recentCustomerCount),
	}, nil
}

// The methods below are the commands the credit saga issues. They are not in
// the public contract: only the saga decides on credit and order outcomes.
// meta carries the command ID (required: the saga derives it from the
// triggering event) and the correlation and causation IDs. Refusals are
// *domain.Error values; other errors are the store's.

// ReserveCredit holds an order's amount on its customer, or records that it
// does not fit (CreditLimitExceeded).
func (s *Service) ReserveCredit(ctx context.Context, cmd domain.ReserveCredit, meta eventcodec.Metadata) (Result, error) {
	return execute(ctx, s, customers, cmd.CustomerID, as(meta, "ReserveCredit"), func(_ context.Context, c *domain.Customer) ([]domain.Event, error) {
		return c.ReserveCredit(cmd)
	})
}

// ReleaseCredit gives an order's reservation back; without one it does
// nothing.
func (s *Service) ReleaseCredit(ctx context.Context, cmd domain.ReleaseCredit, meta eventcodec.Metadata) (Result, error) {
	return execute(ctx, s, customers, cmd.CustomerID, as(meta, "ReleaseCredit"), func(_ context.Context, c *domain.Customer) ([]domain.Event, error) {
		return c.ReleaseCredit(cmd)
	})
}

// ApproveOrder approves a pending order whose credit is reserved.
func (s *Service) ApproveOrder(ctx context.Context, orderID string, meta eventcodec.Metadata) (Result, error) {
	return execute(ctx, s, orders, orderID, as(meta, "ApproveOrder"), func(_ context.Context, o *domain.Order) ([]domain.Event, error) {
		return o.Approve()
	})
}

// RejectOrder rejects a pending order whose credit could not be reserved.
func (s *Service) RejectOrder(ctx context.Context, orderID, reason string, meta eventcodec.Metadata) (Result, error) {
	return execute(ctx, s, orders, orderID, as(meta, "RejectOrder"), func(_ context.Context, o *domain.Order) ([]domain.Event, error) {
		return o.Reject(reason)
	})
}

// The public commands, called by the gRPC adapter once the request is
// mapped and validated.

func (s *Service) registerCustomer(ctx context.Context, cmd domain.RegisterCustomer, meta eventcodec.Metadata) (Result, error) {
	return create(ctx, s, customers, cmd.CustomerID, as(meta, "RegisterCustomer"), func(_ context.Context, c *domain.Customer) ([]domain.Event, error) {
		return c.Register(cmd)
	})
}

func (s *Service) changeCreditLimit(ctx context.Context, cmd domain.ChangeCreditLimit, meta eventcodec.Metadata) (Result, error) {
	return execute(ctx, s, customers, cmd.CustomerID, as(meta, "ChangeCreditLimit"), func(_ context.Context, c *domain.Customer) ([]domain.Event, error) {
		return c.ChangeCreditLimit(cmd)
	})
}

// placeOrder also consults the customer, which must exist and fixes the
// order's currency. It does not lock the customer: an order placed while the
// customer changes is still judged by the saga against the credit at
// reservation time. That is also why a recent read of the customer will do
// (see recentCustomers).
func (s *Service) placeOrder(ctx context.Context, cmd domain.PlaceOrder, meta eventcodec.Metadata) (Result, error) {
	return create(ctx, s, orders, cmd.OrderID, as(meta, "PlaceOrder"), func(ctx context.Context, o *domain.Order) ([]domain.Event, error) {
		customer, ok := s.recent.get(cmd.CustomerID, time.Now())
		if !ok {
			readAt := time.Now()
			var err error
			if customer, _, err = load(ctx, s, customers, cmd.CustomerID); err != nil {
				return nil, err
			}
			s.recent.put(customer, readAt)
		}
		return o.Place(cmd, customer)
	})
}

func (s *Service) cancelOrder(ctx context.Context, cmd domain.CancelOrder, meta eventcodec.Metadata) (Result, error) {
	return execute(ctx, s, orders, cmd.OrderID, as(meta, "CancelOrder"), func(_ context.Context, o *domain.Order) ([]domain.Event, error) {
		return o.Cancel(cmd)
	})
}
