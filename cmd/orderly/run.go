package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/admin"
	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/config"
	"github.com/orderly/orderly/internal/console"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/projection"
	"github.com/orderly/orderly/internal/query"
	"github.com/orderly/orderly/internal/saga"
	"github.com/orderly/orderly/internal/serve"
	"github.com/orderly/orderly/internal/tracing"
	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/viewstore"
)

// allConfig is the all-in-one's configuration.
type allConfig struct {
	esListen, commandsListen, queriesListen, httpListen string
	views                                               viewstore.Config
	commands                                            command.Options
	// ferretListen is where embedded FerretDB serves the views when they
	// are in MongoDB and no -mongo-uri names a server.
	ferretListen string
	mongoGiven   bool
	logLevel     string
	sagaWorkers  int
	// storeTimeout bounds each store call of the commands and the queries.
	storeTimeout time.Duration
	grace        *time.Duration
}

func parseAll(args []string) (allConfig, error) {
	var c allConfig
	fs := flag.NewFlagSet("orderly", flag.ContinueOnError)
	fs.StringVar(&c.esListen, "eventstore-listen", "127.0.0.1:2113", "embedded event store address (esdb://ADDR?tls=false)")
	fs.StringVar(&c.commandsListen, "commands-listen", "127.0.0.1:50051", "gRPC address of orderly.v1.CommandService and orderly.v1.AdminService")
	fs.StringVar(&c.queriesListen, "queries-listen", "127.0.0.1:50052", "gRPC address of orderly.v1.QueryService")
	fs.StringVar(&c.httpListen, "http-listen", "127.0.0.1:8080", "REST address of both services, with /openapi.json and /metrics")
	fs.StringVar(&c.ferretListen, "ferretdb-listen", "127.0.0.1:27017", "with -views mongo and no -mongo-uri: address of the embedded FerretDB serving the views")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.IntVar(&c.sagaWorkers, "saga-workers", saga.DefaultWorkers, "credit saga lanes: customers decided concurrently")
	fs.DurationVar(&c.storeTimeout, "store-timeout", 5*time.Second, "deadline of each event store call of the commands, and of each event store and view store call of the queries, whatever the caller's")
	c.grace = serve.GraceFlag(fs)
	c.views.RegisterFlags(fs)
	c.commands.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: orderly [flags]          run the whole system on embedded defaults\n"+
			"       orderly eventstore [flags]  run only the embedded event store\n"+
			"       orderly rebuild [flags]     rebuild the views of a running system\n"+
			"       orderly status [flags]      the processors of a running system (-watch to follow)\n"+
			"       orderly bench [flags]       load a running system, or an embedded one, and measure it\n"+
			"       orderly version\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := config.Parse(fs, "ORDERLY", args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unknown subcommand %q (see orderly -h)", fs.Arg(0))
	}
	_, c.mongoGiven = os.LookupEnv(config.EnvName("ORDERLY", "mongo-uri"))
	fs.Visit(func(f *flag.Flag) { c.mongoGiven = c.mongoGiven || f.Name == "mongo-uri" })
	return c, nil
}

// runAll runs the embedded event store, command-svc with its saga, the
// projector and query-svc in one process, every part talking to the others
// through the same protocols it would use across machines.
func runAll(ctx context.Context, args []string) error { return startAll(ctx, args, nil, os.Stderr) }

// allAddrs is where the all-in-one serves.
type allAddrs struct{ eventStore, commands, queries, http string }

// startAll is runAll, calling listening (when not nil, instead of printing
// the banner) once every listener is open, for a caller that starts the
// system on ports the OS picks, and logging to logs.
func startAll(ctx context.Context, args []string, listening func(allAddrs), logs io.Writer) error {
	cfg, err := parseAll(args)
	if err != nil {
		return err
	}
	log, err := serve.NewLogger(logs, cfg.logLevel)
	if err != nil {
		return err
	}
	dataDir := cfg.views.DataDir
	// Everything opened closes in reverse, once the services and the
	// background work have stopped (serve.Run), or here after a failed
	// start.
	var closers serve.Closers
	defer func() {
		if err := closers.Close(); err != nil {
			log.Error("close", "err", err)
		}
	}()
	flushTraces, err := tracing.Start(ctx, "orderly", log)
	if err != nil {
		return err
	}
	closers.Add("tracing", flushTraces)

	// The event store starts first and stops last: everything else is its
	// client. Its metrics are served with the services'.
	metrics := serve.NewMetrics()
	store, esAddr, err := startEventStore(cfg.esListen, filepath.Join(dataDir, "eventstore"), metrics.Registry, log)
	if err != nil {
		return err
	}
	closers.Add("embedded event store", store.Close)
	conn, err := eventlog.Connect("esdb://"+esAddr+"?tls=false", log)
	if err != nil {
		return err
	}
	closers.Add("event store connection", conn.Close)

	if cfg.views.Kind == viewstore.Mongo && !cfg.mongoGiven {
		uri, stop, err := startFerretDB(ctx, cfg.ferretListen, filepath.Join(dataDir, "ferretdb"), log)
		if err != nil {
			return err
		}
		closers.Add("embedded FerretDB", func() error { stop(); return nil })
		cfg.views.MongoURI = uri
		cfg.views.MongoBulkSize = min(cfg.views.MongoBulkSize, 64) // FerretDB hangs on larger bulk updates
	}
	vs, err := viewstore.Open(ctx, cfg.views)
	if err != nil {
		return err
	}
	closers.Add("views", vs.Close)

	notifier := views.NewNotifier()
	cfg.commands.Registerer, cfg.commands.StoreTimeout = metrics.Registry, cfg.storeTimeout
	commands, err := command.New(conn, log.With("service", "command"), cfg.commands)
	if err != nil {
		return err
	}
	closers.Add("command snapshots", func() error { commands.Close(); return nil }) // before the store closes
	credit, err := saga.New(conn, commands, log.With("service", "saga"), saga.Options{Registerer: metrics.Registry, Workers: cfg.sagaWorkers})
	if err != nil {
		return err
	}
	projector, err := projection.New(conn, vs, log.With("service", "projector"), projection.Options{Registerer: metrics.Registry, Notifier: notifier})
	if err != nil {
		return err
	}
	queries := query.New(conn, vs, query.Options{Notifier: notifier, StoreTimeout: cfg.storeTimeout, Log: log.With("service", "query")})
	// The AdminService runs every processor here; it is served beside the
	// commands, over gRPC and REST.
	ops := admin.New(admin.Options{Projector: projector, Views: vs, Saga: credit, Conn: conn, StoreTimeout: cfg.storeTimeout,
		Process: "orderly", Log: log.With("service", "admin")})

	cmdSrv, cmdLis, err := serve.ListenGRPC(cfg.commandsListen, log, metrics, orderlyv1.CommandService_ServiceDesc.ServiceName, func(r grpc.ServiceRegistrar) {
		commands.Register(r)
		ops.Register(r)
	})
	if err != nil {
		return err
	}
	qrySrv, qryLis, err := serve.ListenGRPC(cfg.queriesListen, log, metrics, orderlyv1.QueryService_ServiceDesc.ServiceName, queries.Register)
	if err != nil {
		return err
	}
	handler, closeConns, err := serve.NewGateway(ctx, metrics,
		serve.Upstream{Server: cmdSrv, Register: command.RegisterGateway},
		serve.Upstream{Server: cmdSrv, Register: admin.RegisterGateway},
		serve.Upstream{Server: qrySrv, Register: query.RegisterGateway})
	if err != nil {
		return err
	}
	closers.Add("gateway connections", closeConns)
	httpLis, err := net.Listen("tcp", cfg.httpListen)
	if err != nil {
		return fmt.Errorf("REST listen: %w", err)
	}

	addrs := allAddrs{esAddr, cmdLis.Addr().String(), qryLis.Addr().String(), httpLis.Addr().String()}
	if listening != nil {
		listening(addrs)
	} else {
		printBanner(os.Stdout, addrs.eventStore, addrs.commands, addrs.queries, addrs.http, cfg.views)
	}
	log.Info("orderly running", "eventstore", esAddr, "commands", cmdLis.Addr().String(),
		"queries", qryLis.Addr().String(), "http", httpLis.Addr().String(), "views", cfg.views.Kind, "data", dataDir)
	return serve.Run(ctx, log, *cfg.grace, serve.Plan{
		Servers: []serve.Server{
			serve.GRPC("commands", cmdSrv, cmdLis),
			serve.GRPC("queries", qrySrv, qryLis),
			serve.HTTP("rest", &http.Server{Handler: console.Wrap(handler), ReadHeaderTimeout: 10 * time.Second}, httpLis),
		},
		Background: []serve.Task{{Name: "saga", Run: credit.Run}, {Name: "projector", Run: projector.Run}, {Name: "watch", Run: queries.Run}, {Name: "admin", Run: ops.Run}},
		Closers:    &closers,
	})
}

// startEventStore opens the event store in dir and serves it on addr until
// Close; it returns the address it listens on.
func startEventStore(addr, dir string, reg prometheus.Registerer, log *slog.Logger) (*eventstore.Server, string, error) {
	srv, err := eventstore.Open(eventstore.Config{Dir: dir, Registerer: reg, Logger: log.With("service", "eventstore")})
	if err != nil {
		return nil, "", err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", errors.Join(fmt.Errorf("event store listen: %w", err), srv.Close())
	}
	go func() {
		if err := srv.Serve(lis); err != nil {
			log.Error("event store stopped serving", "err", err)
		}
	}()
	return srv, lis.Addr().String(), nil
}

// startFerretDB serves an embedded FerretDB (MongoDB wire protocol over
// SQLite files in dir) on addr, so the MongoDB view store can be tried
// without a MongoDB server, and returns its connection string. It suits
// small data only: FerretDB scans a collection on every lookup.
func startFerretDB(ctx context.Context, addr, dir string, log *slog.Logger) (uri string, stop func(), err error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", nil, fmt.Errorf("FerretDB data directory: %w", err)
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: addr},
		Handler:   "sqlite",
		SQLiteURL: "file:" + dir + "/",
		// FerretDB logs every failed command whole at WARN; keep errors only.
		Logger: slog.New(log.Handler()).With("service", "ferretdb"),
	})
	if err != nil {
		return "", nil, fmt.Errorf("start embedded FerretDB on %s: %w", addr, err)
	}
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(fctx)
	}()
	log.Info("embedded FerretDB serving the views", "uri", f.MongoDBURI(), "data", dir)
	return f.MongoDBURI(), func() { cancel(); <-done }, nil
}

// printBanner tells a newcomer where everything is and what to try first.
func printBanner(w io.Writer, es, commands, queries, httpAddr string, vc viewstore.Config) {
	fmt.Fprintf(w, `
Orderly is running (Ctrl-C to stop).
  commands  gRPC  %[2]s   (orderly.v1.CommandService)
  queries   gRPC  %[3]s   (orderly.v1.QueryService)
  REST            http://%[4]s   (OpenAPI: http://%[4]s/openapi.json, metrics: /metrics)
  console         http://%[4]s/console
  events          esdb://%[1]s?tls=false
  views           %[5]s

Try:
  curl -s -X POST http://%[4]s/v1/customers -d '{"name":"Ada","email":"ada@example.com","creditLimit":{"currencyCode":"USD","minorUnits":"10000"}}'
  grpcurl -plaintext -d '{}' %[3]s orderly.v1.QueryService/ListCustomers

`, es, commands, queries, httpAddr, viewstore.Where(vc))
}
