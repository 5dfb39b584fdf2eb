// Package projectorcmd is the projector's command line, shared by the
// standalone binary (go run ./projector) and the all-in-one command
// (orderly projector, orderly rebuild), so both take the same flags and
// environment variables (ORDERLY_*).
package projectorcmd

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/admin"
	"github.com/orderly/orderly/internal/config"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/projection"
	"github.com/orderly/orderly/internal/serve"
	"github.com/orderly/orderly/internal/tracing"
	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/viewstore"
)

// common are the flags both modes take.
type common struct {
	eventstore string
	store      viewstore.Config
	opts       projection.Options
	logLevel   string
}

// Batch sizes by default: a live projector applies what arrived while it
// wrote the previous batch, rarely a full batch; a rebuild always fills its
// batches, and larger ones write each SQLite page fewer times.
const (
	LiveBatchSize    = 1000
	RebuildBatchSize = 4000
)

func (c *common) register(fs *flag.FlagSet, batchSize int) {
	fs.StringVar(&c.eventstore, "eventstore", "esdb://127.0.0.1:2113?tls=false", "event store connection string")
	c.store.RegisterFlags(fs)
	fs.IntVar(&c.opts.BatchSize, "batch-size", batchSize, "most events applied in one batch")
	fs.DurationVar(&c.opts.BatchWait, "batch-wait", 20*time.Millisecond, "longest a batch waits to fill when events queue up, and in a rebuild (0: never); an idle projector writes each event at once")
	fs.DurationVar(&c.opts.StoreTimeout, "store-timeout", 30*time.Second, "deadline of each view store call (retried on failure)")
	fs.IntVar(&c.opts.DocCacheBytes, "doc-cache-bytes", 16<<20, "per view, estimated memory of the documents kept as written, so a stream's next event folds without a view store read (0: none)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// projectionOptions are the flags' options; -batch-wait 0 means no wait and
// -doc-cache-bytes 0 no cache, which projection.Options spells negative
// (its zero is the default).
func (c *common) projectionOptions() projection.Options {
	opts := c.opts
	if opts.BatchWait == 0 {
		opts.BatchWait = -1
	}
	if opts.DocCacheBytes == 0 {
		opts.DocCacheBytes = -1
	}
	return opts
}

// start makes the logger, connects to the event store and
// opens the view store: what both modes do before their work.
func (c *common) start(ctx context.Context, service string) (*slog.Logger, *eventlog.Conn, views.Store, error) {
	log, err := serve.NewLogger(os.Stderr, c.logLevel)
	if err != nil {
		return nil, nil, nil, err
	}
	log = log.With("service", service)
	conn, err := eventlog.Connect(c.eventstore, log)
	if err != nil {
		return nil, nil, nil, err
	}
	store, err := viewstore.Open(ctx, c.store)
	if err != nil {
		_ = conn.Close()
		return nil, nil, nil, fmt.Errorf("open views: %w", err)
	}
	return log, conn, store, nil
}

// Main runs the standalone projector: `rebuild [flags]` rebuilds, anything
// else is Run's flags.
func Main(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "rebuild" {
		return Rebuild(ctx, args[1:])
	}
	return Run(ctx, args)
}

// Run keeps the views up to date until ctx is done, serving /metrics and
// /healthz on -metrics-listen.
func Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("projector", flag.ContinueOnError)
	var c common
	c.register(fs, LiveBatchSize)
	c.opts.Lease.RegisterFlags(fs)
	metricsListen := fs.String("metrics-listen", "127.0.0.1:9102", `address serving /metrics, /healthz and the AdminService's REST routes ("" disables it)`)
	adminListen := fs.String("admin-listen", "", `gRPC address of orderly.v1.AdminService for the views projected here ("" serves it over REST only, on -metrics-listen)`)
	grace := serve.GraceFlag(fs)
	var secFlags serve.SecurityFlags
	secFlags.Register(fs)
	if err := config.Parse(fs, "ORDERLY", args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("projector: unexpected arguments %q (the only subcommand is rebuild, first)", fs.Args())
	}
	log, conn, store, err := c.start(ctx, "projector")
	if err != nil {
		return err
	}
	var closers serve.Closers // closed by serve.Run, or here after a failed start
	defer closers.Close()
	flushTraces, err := tracing.Start(ctx, "projector", log)
	if err != nil {
		return err
	}
	closers.Add("tracing", flushTraces) // first added, last closed
	closers.Add("event store connection", conn.Close)
	closers.Add("views", store.Close)

	metrics := serve.NewMetrics()
	c.opts.Registerer = metrics.Registry
	p, err := projection.New(conn, store, log, c.projectionOptions())
	if err != nil {
		return err
	}
	sec, err := secFlags.Build(ctx, log, *metricsListen, *adminListen)
	if err != nil {
		return err
	}
	// The AdminService answers for the views; the saga is command-svc's.
	ops := admin.New(admin.Options{Projector: p, Views: store, Conn: conn, Process: "projector", Log: log.With("component", "admin")})
	plan := serve.Plan{Background: []serve.Task{{Name: "projector", Run: p.Run}, {Name: "admin", Run: ops.Run}}, Closers: &closers}
	gs, hs := serve.NewGRPCServer(log, metrics, sec)
	ops.Register(gs)
	closers.Add("admin server", func() error { gs.Stop(); return nil }) // served in memory by the REST routes too
	hs.SetServingStatus(orderlyv1.AdminService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	if *adminListen != "" {
		lis, err := net.Listen("tcp", *adminListen)
		if err != nil {
			return fmt.Errorf("admin listener: %w", err)
		}
		plan.Servers = append(plan.Servers, serve.GRPC("admin", gs, lis))
		log.Info("serving the AdminService", "addr", lis.Addr().String())
	}
	if *metricsListen != "" {
		handler, closeConns, err := serve.NewGateway(ctx, metrics, sec, serve.Upstream{Server: gs, Register: admin.RegisterGateway})
		if err != nil {
			return err
		}
		closers.Add("gateway connections", closeConns)
		lis, err := net.Listen("tcp", *metricsListen)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		plan.Servers = append(plan.Servers, serve.HTTP("metrics", serve.NewHTTPServer(handler, sec), lis))
		log.Info("serving metrics and the AdminService's REST routes", "addr", lis.Addr().String())
	}
	return serve.Run(ctx, log, *grace, plan)
}

// Rebuild rebuilds views (-view, all by default) beside the live ones and
// switches them over, showing progress on a terminal and logging it
// otherwise. It works while a projector and the query side are running.
func Rebuild(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("rebuild", flag.ContinueOnError)
	var c common
	c.register(fs, RebuildBatchSize)
	view := fs.String("view", "", fmt.Sprintf("views to rebuild, comma-separated: %v (default all)", views.All()))
	create := fs.Bool("create", false, "build views where none exist yet (a new -data directory, or a MongoDB database without them); without it a rebuild refuses such a place, which is most often a wrong -data or -mongo-db")
	if err := config.Parse(fs, "ORDERLY", args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("rebuild: unexpected arguments %q", fs.Args())
	}
	var vs []views.View
	for name := range strings.SplitSeq(*view, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		v := views.View(name)
		if !v.Valid() {
			return fmt.Errorf("rebuild: -view %q: want one of %v", name, views.All())
		}
		vs = append(vs, v)
	}
	where := viewstore.Where(c.store)
	exists, err := viewstore.Exists(ctx, c.store)
	if err != nil {
		return fmt.Errorf("rebuild: look for the views in %s: %w", where, err)
	}
	if !exists && !*create {
		return fmt.Errorf("rebuild: no views in %s: check -data (or -views, -mongo-uri, -mongo-db); pass -create to build new views there", where)
	}
	log, conn, store, err := c.start(ctx, "rebuild")
	if err != nil {
		return err
	}
	defer conn.Close()
	defer store.Close()
	log.Info("rebuilding views", "in", where, "created", !exists)

	c.opts.Progress = projection.ProgressPrinter(os.Stderr, isTerminal(os.Stderr), log)
	p, err := projection.New(conn, store, log, c.projectionOptions())
	if err != nil {
		return err
	}
	if len(vs) == 0 {
		vs = views.All()
	}
	start := time.Now()
	if err := p.Rebuild(ctx, vs...); err != nil {
		return err
	}
	log.Info("rebuild done", "views", vs, "in", where, "took", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// isTerminal reports whether f is a character device: a terminal, where a
// progress bar can redraw in place.
func isTerminal(f interface{ Stat() (os.FileInfo, error) }) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
