// Package projection is the read model's engine: it follows the event
// store's $all stream and keeps the views of package views up to date, and it
// rebuilds them from scratch beside the live ones.
//
// Every view is its own projection, with its own checkpoint and versions;
// the projections share one subscription to $all (delivery is the costliest
// part of projecting), from the lowest of their checkpoints, with a
// server-side filter on Orderly's event types. Events are applied in batches
// (see pipeline): decoded and folded in partitions by stream, coalesced per
// document, written with the view's checkpoint. Each document carries the stream revision
// it reflects and the store keeps only newer ones, so redelivery and replay
// change nothing. Failures never skip an event: a dropped subscription or a
// restarted event store means resubscribing from the checkpoint, a failing
// view store means retrying the batch, both with backoff; an event that
// cannot be decoded is parked in the view's dead letters and counted.
//
// A rebuild fills a new shadow version from the start of the log while the
// live version keeps serving and its projection keeps running; once caught
// up and at least as far as the live one, it switches the view over in one
// step and the old version is dropped. The live projection (in this process
// or another) notices on its next write and follows the new version.
package projection

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/lease"
	"github.com/orderly/orderly/internal/views"
)

// Options tune a Projector; zero values take the defaults.
type Options struct {
	// BatchSize is the most events applied in one batch (default 1000).
	BatchSize int
	// BatchWait is the longest a batch waits to fill where a backlog is
	// likely — after a full batch, and in a rebuild (default 20ms;
	// negative: never). Otherwise a batch takes what has arrived, without
	// waiting, so an idle or steadily loaded projector writes events as
	// soon as its writer is free.
	BatchWait time.Duration
	// Partitions is how many partitions decode and fold a batch in
	// parallel (default GOMAXPROCS).
	Partitions int
	// StoreTimeout bounds each call to the view store (default 30s); a
	// call that times out is retried like any other failure.
	StoreTimeout time.Duration
	// EventStoreTimeout bounds subscribing and other calls to the event
	// store (default 5s), not the subscription it opens.
	EventStoreTimeout time.Duration
	// Codec decodes events (default eventcodec.Default()); its types are
	// the subscription's filter.
	Codec *eventcodec.Registry
	// Registerer receives the projector's metrics; nil leaves them
	// unregistered.
	Registerer prometheus.Registerer
	// DocCacheBytes bounds, per view, the documents kept after they are
	// written so that the next event of the same stream folds onto them
	// without a view store read (default 16 MiB; negative: none).
	DocCacheBytes int
	// Notifier, when set, is told each live view's checkpoint after every
	// batch, for read-your-writes waits in this process.
	Notifier *views.Notifier
	// Progress, when set, receives a rebuild's progress after every batch.
	Progress func(Progress)
	// Lease shares the live projection with the other projectors of the
	// same view store (see package lease); its Processor is
	// views.LeaseProcessor. A rebuild takes no leases.
	Lease lease.Config
}

const (
	defaultBatchSize    = 1000
	defaultBatchWait    = 20 * time.Millisecond
	defaultDocCache     = 16 << 20
	defaultStoreTimeout = 30 * time.Second
	defaultESTimeout    = 5 * time.Second
)

// Projector runs the projections of every view against one event store and
// one view store.
type Projector struct {
	conn    *eventlog.Conn
	store   views.Store
	log     *slog.Logger
	opts    Options
	metrics *metrics
	ctl     *controls
	leases  *lease.Manager
}

// New returns a projector; it does nothing until Run or Rebuild.
func New(conn *eventlog.Conn, store views.Store, log *slog.Logger, opts Options) (*Projector, error) {
	if opts.BatchSize == 0 {
		opts.BatchSize = defaultBatchSize
	}
	if opts.BatchWait == 0 {
		opts.BatchWait = defaultBatchWait
	}
	if opts.DocCacheBytes == 0 {
		opts.DocCacheBytes = defaultDocCache
	}
	if opts.StoreTimeout == 0 {
		opts.StoreTimeout = defaultStoreTimeout
	}
	if opts.EventStoreTimeout == 0 {
		opts.EventStoreTimeout = defaultESTimeout
	}
	if opts.Partitions == 0 {
		opts.Partitions = runtime.GOMAXPROCS(0)
	}
	if opts.Codec == nil {
		opts.Codec = eventcodec.Default()
	}
	if opts.BatchSize < 1 || opts.Partitions < 1 || opts.StoreTimeout < 0 || opts.EventStoreTimeout < 0 {
		return nil, fmt.Errorf("projection: batch size and partitions must be positive, timeouts not negative: %+v", opts)
	}
	opts.Lease.Processor, opts.Lease.Registerer = views.LeaseProcessor, opts.Registerer
	leases, err := lease.NewManager(store, opts.Lease, log.With("component", "leases"))
	if err != nil {
		return nil, fmt.Errorf("projection: %w", err)
	}
	return &Projector{conn: conn, store: store, log: log, opts: opts, metrics: newMetrics(opts.Registerer), ctl: newControls(), leases: leases}, nil
}

// Run keeps every view's live version up to date, in the partitions this
// projector holds among those sharing the view store, until ctx is done;
// then it gives its partitions back and returns nil. It retries every
// failure itself; it returns an error only when the view store refuses
// its partition count.
func (p *Projector) Run(ctx context.Context) error {
	p.log.Info("projecting", "views", views.All(), "batch_size", p.opts.BatchSize, "batch_wait", p.opts.BatchWait.String(),
		"instance", p.leases.Owner())
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var leaseErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		if leaseErr = p.leases.Run(runCtx); leaseErr != nil {
			cancel()
		}
	})
	_ = newFollower(p, false).runLive(runCtx)
	cancel()
	wg.Wait()
	if leaseErr != nil {
		return fmt.Errorf("projection: %w", leaseErr)
	}
	// The last batch is written (with its checkpoint): the partitions can
	// go to the others now rather than when their leases expire.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer rcancel()
	if err := p.leases.Release(rctx); err != nil {
		p.log.Warn("partitions not released; the others take them when the leases expire", "err", err)
	}
	return nil
}

// Rebuild rebuilds the given views (all when none is given), each into a
// fresh shadow version that is switched live once it has caught up; one
// subscription feeds them all. It returns when every one is live, or with
// the failure that stopped it: an interrupted rebuild leaves the live
// versions as they were (views already switched stay switched), and running
// it again starts over.
func (p *Projector) Rebuild(ctx context.Context, vs ...views.View) error {
	return p.RebuildReporting(ctx, p.opts.Progress, vs...)
}

// RebuildReporting is Rebuild sending its progress to progress (nil: none)
// instead of Options.Progress, for a rebuild started while the process
// runs (package admin).
func (p *Projector) RebuildReporting(ctx context.Context, progress func(Progress), vs ...views.View) error {
	if len(vs) == 0 {
		vs = views.All()
	}
	var targets []views.Target
	for _, v := range vs {
		if !v.Valid() {
			return fmt.Errorf("rebuild: unknown view %q (views: %v)", v, views.All())
		}
		bctx, cancel := context.WithTimeout(ctx, p.opts.StoreTimeout)
		t, err := p.store.BeginRebuild(bctx, v)
		cancel()
		if err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
		p.log.Info("rebuilding", "view", string(v), "version", t.Version)
		targets = append(targets, t)
	}
	f := newFollower(p, true)
	f.progress = progress
	if err := f.runRebuild(ctx, targets); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	return nil
}

func (p *Projector) publish(v views.View, pos uint64) {
	if p.opts.Notifier != nil {
		p.opts.Notifier.Publish(v, pos)
	}
}

// setSole tells the notifier whether this instance's live lane of v is now
// the only writer of v's checkpoint (it holds every partition).
func (p *Projector) setSole(v views.View, sole bool) {
	if p.opts.Notifier != nil {
		p.opts.Notifier.SetSole(v, sole)
	}
}
