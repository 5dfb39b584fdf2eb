// Package command is Orderly's write side: it runs commands against the
// event store, for gRPC and REST clients (Register, RegisterGateway) and for
// the credit saga (the in-process methods of Service).
//
// Every command goes through one executor (see execute): take the aggregate
// folded with the pure domain from the cache (loading it from snapshot pages
// and its stream's tail on a miss), decide, and append the new events at the
// revision the state was folded to, catching up and deciding again on
// concurrent writes. Event IDs are derived from the command ID, so a command
// sent twice is applied once and answers the same result both times.
package command

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
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
	// CacheBytes bounds the estimated memory of the aggregates kept folded
	// between commands (least recently used out first, decided orders within
	// a share of it before the rest: see aggCache). Default 256 MiB.
	CacheBytes int64
	// SnapshotEvents is how many events of a customer one snapshot page
	// covers; a page is written each time a customer's stream grows by that
	// many. Negative disables snapshots. Default 1000, at most 4096.
	SnapshotEvents int
	// SnapshotQueueBytes bounds the pages waiting to be written; a page that
	// does not fit is dropped (and counted). Default 64 MiB.
	SnapshotQueueBytes int
	// Identify names the authenticated caller of a gRPC request, recorded as
	// the events' actor ("" for none: an unauthenticated call records no
	// actor). The binaries use auth.Subject.
	Identify func(context.Context) string
	// Registerer receives the command metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer

	// foldKey replaces the build's fold key, for tests.
	foldKey uint64
}

const (
	defaultStoreTimeout       = 5 * time.Second
	defaultMaxAttempts        = 20
	defaultCacheBytes         = 256 << 20
	defaultSnapshotEvents     = 1000
	defaultSnapshotQueueBytes = 64 << 20
)

// Service runs commands. It is safe for concurrent use.
type Service struct {
	conn    *eventlog.Conn
	reg     *eventcodec.Registry
	log     *slog.Logger
	opts    Options
	metrics *metrics
	cache   *aggCache
	pages   *pageWriter
	foldKey uint64
	pacer   atomic.Pointer[Pacer]
}

// Pacer holds new orders back while what decides them is behind: the
// credit saga (saga.Saga.Pace). Pace returns ctx's error if ctx ends while
// it waits, and nil when the order is to go ahead.
type Pacer interface {
	Pace(ctx context.Context) error
}

// PaceOrders makes every PlaceOrder from now on wait on p before it runs.
func (s *Service) PaceOrders(p Pacer) { s.pacer.Store(&p) }

// metrics are recorded on the single path every command takes.
type metrics struct {
	conflicts                                 *prometheus.CounterVec
	replays                                   *prometheus.CounterVec
	cacheHits, cacheMisses, cacheEvictions    prometheus.Counter
	cacheBytes                                prometheus.Gauge
	pagesWritten, pagesLoaded, pagesDiscarded prometheus.Counter
	pagesDropped, pagesDeferred, pagesFetched prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &metrics{
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderly_command_conflicts_total",
			Help: "Appends refused because another writer changed the stream first; each is followed by a new attempt or, after MaxAttempts, ABORTED.",
		}, []string{"aggregate"}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderly_command_replays_total",
			Help: "Commands answered with the result of the request first sent under their command ID (writing nothing), confirmed by the cached aggregate (cache: its last event is that command's) or by reading the command's event from the store (store).",
		}, []string{"confirmed"}),
		cacheHits:      counter("orderly_command_cache_hits_total", "Commands that found their aggregate cached."),
		cacheMisses:    counter("orderly_command_cache_misses_total", "Commands that had to load their aggregate."),
		cacheEvictions: counter("orderly_command_cache_evictions_total", "Aggregates evicted from the cache to keep it within its bytes."),
		cacheBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orderly_command_cache_bytes", Help: "Estimated bytes of the cached aggregates.",
		}),
		pagesWritten:   counter("orderly_command_snapshot_pages_written_total", "Snapshot pages appended."),
		pagesLoaded:    counter("orderly_command_snapshot_pages_loaded_total", "Snapshot pages applied while loading aggregates."),
		pagesDiscarded: counter("orderly_command_snapshot_pages_discarded_total", "Snapshot pages, or their keys, not used: another fold version, a stream that was recreated, or keys naming a page that is not where they say."),
		pagesDropped:   counter("orderly_command_snapshot_pages_dropped_total", "Snapshot pages, or their keys, not written: queue full, too large, or the append failed."),
		pagesDeferred:  counter("orderly_command_snapshot_pages_deferred_total", "Snapshot pages a load left in the store, reading only their keys."),
		pagesFetched:   counter("orderly_command_snapshot_pages_fetched_total", "Snapshot pages read one at a time, to look up an order or a command ID of a customer loaded from page keys."),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.conflicts, m.replays, m.cacheHits, m.cacheMisses, m.cacheEvictions, m.cacheBytes,
			m.pagesWritten, m.pagesLoaded, m.pagesDiscarded, m.pagesDropped, m.pagesDeferred, m.pagesFetched} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("command metrics: %w", err)
			}
		}
	}
	return m, nil
}

// New returns a service that reaches the event store through conn.
func New(conn *eventlog.Conn, log *slog.Logger, opts Options) (*Service, error) {
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = defaultStoreTimeout
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = defaultMaxAttempts
	}
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = defaultCacheBytes
	}
	if opts.SnapshotEvents == 0 {
		opts.SnapshotEvents = defaultSnapshotEvents
	}
	if opts.SnapshotEvents > maxPageEvents {
		return nil, fmt.Errorf("snapshot pages of %d events: at most %d fit the store's event size", opts.SnapshotEvents, maxPageEvents)
	}
	if opts.SnapshotQueueBytes <= 0 {
		opts.SnapshotQueueBytes = defaultSnapshotQueueBytes
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Service{
		conn: conn, reg: eventcodec.Default(), log: log, opts: opts, metrics: m,
		cache: newAggCache(opts.CacheBytes, m, log),
	}
	s.pages = &pageWriter{s: s, maxBytes: opts.SnapshotQueueBytes}
	s.foldKey = foldKey(s.reg)
	if opts.foldKey != 0 {
		s.foldKey = opts.foldKey
	}
	return s, nil
}

// WaitSnapshots returns once the snapshot pages queued so far are written
// (or failed), for a graceful shutdown or a test.
func (s *Service) WaitSnapshots(ctx context.Context) error { return s.pages.wait(ctx) }

// snapshotFlushTimeout bounds how long Close waits for queued pages.
const snapshotFlushTimeout = 5 * time.Second

// Close lets the snapshot pages queued so far be written, for a while, before
// the caller closes the store connection: a page lost costs the next start a
// longer fold, never a wrong answer. Call it once no command runs.
func (s *Service) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), snapshotFlushTimeout)
	defer cancel()
	if err := s.WaitSnapshots(ctx); err != nil {
		s.log.Warn("snapshot pages still queued at shutdown", "err", err)
	}
}

// The methods below are the commands the credit saga issues. They are not in
// the public contract: only the saga decides on credit and order outcomes.
// meta carries the command ID (required: the saga derives it from the
// triggering event) and the correlation and causation IDs. Refusals are
// *domain.Error values; other errors are the store's.

// ReserveCredit holds an order's amount on its customer, or records that it
// does not fit (CreditLimitExceeded).
func (s *Service) ReserveCredit(ctx context.Context, cmd domain.ReserveCredit, meta eventcodec.Metadata) (Result, error) {
	return executeOnLine(ctx, s, cmd.CustomerID, cmd.OrderID, as(meta, "ReserveCredit", cmd), func(_ context.Context, c *domain.Customer) ([]domain.Event, error) {
		return c.ReserveCredit(cmd)
	})
}

// ReleaseCredit gives an order's reservation back; without one it does
// nothing.
func (s *Service) ReleaseCredit(ctx context.Context, cmd domain.ReleaseCredit, meta eventcodec.Metadata) (Result, error) {
	return executeOnLine(ctx, s, cmd.CustomerID, cmd.OrderID, as(meta, "ReleaseCredit", cmd), func(_ context.Context, c *domain.Customer) ([]domain.Event, error) {
		return c.ReleaseCredit(cmd)
	})
}

// ApproveOrder approves a pending order whose credit is reserved.
func (s *Service) ApproveOrder(ctx context.Context, orderID string, meta eventcodec.Metadata) (Result, error) {
	return execute(ctx, s, orders, orderID, as(meta, "ApproveOrder", orderID), func(_ context.Context, o *domain.Order) ([]domain.Event, error) {
		return o.Approve()
	})
}

// RejectOrder rejects a pending order whose credit could not be reserved.
func (s *Service) RejectOrder(ctx context.Context, orderID, reason string, meta eventcodec.Metadata) (Result, error) {
	return execute(ctx, s, orders, orderID, as(meta, "RejectOrder", [2]string{orderID, reason}), func(_ context.Context, o *domain.Order) ([]domain.Event, error) {
		return o.Reject(reason)
	})
}

// The public commands, called by the gRPC adapter once the request is
// mapped and validated.

func (s *Service) registerCustomer(ctx context.Context, cmd domain.RegisterCustomer, meta eventcodec.Metadata) (Result, error) {
	return create(ctx, s, customers, cmd.CustomerID, as(meta, "RegisterCustomer", cmd), func(_ context.Context, c *domain.Customer) ([]domain.Event, error) {
		return c.Register(cmd)
	})
}

func (s *Service) changeCreditLimit(ctx context.Context, cmd domain.ChangeCreditLimit, meta eventcodec.Metadata) (Result, error) {
	return execute(ctx, s, customers, cmd.CustomerID, as(meta, "ChangeCreditLimit", cmd), func(_ context.Context, c *domain.Customer) ([]domain.Event, error) {
		return c.ChangeCreditLimit(cmd)
	})
}

// placeOrder waits on the pacer first, if any (see PaceOrders); an order
// held back there has read and written nothing. It also consults the
// customer, which must exist and fixes the order's currency. It does not
// lock the customer: an order placed while the customer changes is still
// judged by the saga against the credit at reservation time. What it reads
// of the customer (registered, its ID and currency) never changes once
// registered, so a cached profile is as good as a fresh read; only a
// customer not (yet) seen registered is read again.
func (s *Service) placeOrder(ctx context.Context, cmd domain.PlaceOrder, meta eventcodec.Metadata) (Result, error) {
	if p := s.pacer.Load(); p != nil {
		if err := (*p).Pace(ctx); err != nil {
			return Result{}, err
		}
	}
	return create(ctx, s, orders, cmd.OrderID, as(meta, "PlaceOrder", cmd), func(ctx context.Context, o *domain.Order) ([]domain.Event, error) {
		customer, err := s.customerProfile(ctx, cmd.CustomerID)
		if err != nil {
			return nil, err
		}
		return o.Place(cmd, customer)
	})
}

// customerProfile returns the customer's profile (see Customer.Profile), or
// an unregistered customer.
func (s *Service) customerProfile(ctx context.Context, id string) (*domain.Customer, error) {
	stream := customers.stream(id)
	if e := s.cache.peek(stream); e != nil {
		if p := e.profile.Load(); p != nil {
			return p, nil
		}
	}
	e := acquire(s, customers, id)
	defer s.cache.release(e)
	if !e.loaded {
		if err := s.load(ctx, e); err != nil {
			return nil, err
		}
	} else if _, err := s.refresh(ctx, e); err != nil {
		return nil, err
	}
	if p := e.profile.Load(); p != nil {
		return p, nil
	}
	return customers.fresh(id), nil
}

func (s *Service) cancelOrder(ctx context.Context, cmd domain.CancelOrder, meta eventcodec.Metadata) (Result, error) {
	return execute(ctx, s, orders, cmd.OrderID, as(meta, "CancelOrder", cmd), func(_ context.Context, o *domain.Order) ([]domain.Event, error) {
		return o.Cancel(cmd)
	})
}
