package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/admin"
	"github.com/orderly/orderly/internal/auth"
	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/config"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/lease"
	"github.com/orderly/orderly/internal/projection"
	"github.com/orderly/orderly/internal/query"
	"github.com/orderly/orderly/internal/saga"
	"github.com/orderly/orderly/internal/serve"
	"github.com/orderly/orderly/internal/tlsconf"
	"github.com/orderly/orderly/internal/tracing"
	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/viewstore"
)

// allConfig is the all-in-one's configuration.
type allConfig struct {
	esListen, commandsListen, queriesListen, httpListen string
	// store is the embedded event store's limits and schedule.
	store    func() eventstore.Config
	views    viewstore.Config
	commands command.Options
	// ferretListen is where embedded FerretDB serves the views when they
	// are in MongoDB and no -mongo-uri names a server.
	ferretListen string
	mongoGiven   bool
	logLevel     string
	saga         saga.Options
	lease        lease.Config
	// storeTimeout bounds each store call of the commands and the queries.
	storeTimeout time.Duration
	grace        *time.Duration
	security     serve.SecurityFlags
	// storeUsers is the embedded event store's users file.
	storeUsers string
}

func parseAll(args []string) (allConfig, error) {
	var c allConfig
	fs := flag.NewFlagSet("orderly", flag.ContinueOnError)
	fs.StringVar(&c.esListen, "eventstore-listen", "127.0.0.1:2113", "embedded event store address (esdb://ADDR?tls=false)")
	c.store = storeFlags(fs, "eventstore-")
	fs.StringVar(&c.commandsListen, "commands-listen", "127.0.0.1:50051", "gRPC address of orderly.v1.CommandService and orderly.v1.AdminService")
	fs.StringVar(&c.queriesListen, "queries-listen", "127.0.0.1:50052", "gRPC address of orderly.v1.QueryService")
	fs.StringVar(&c.httpListen, "http-listen", "127.0.0.1:8080", "REST address of both services, with /openapi.json and /metrics")
	fs.StringVar(&c.ferretListen, "ferretdb-listen", "127.0.0.1:27017", "with -views mongo and no -mongo-uri: address of the embedded FerretDB serving the views")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.DurationVar(&c.storeTimeout, "store-timeout", 5*time.Second, "deadline of each event store call of the commands, and of each event store and view store call of the queries, whatever the caller's")
	c.grace = serve.GraceFlag(fs)
	c.security.Register(fs)
	fs.StringVar(&c.storeUsers, "eventstore-users", "", "file of embedded event store users, one `NAME PASSWORD [GROUP,...]` a line, besides admin (whose password is "+AdminPasswordEnv+", which turns its access control on)")
	c.views.RegisterFlags(fs)
	c.commands.RegisterFlags(fs)
	c.saga.RegisterFlags(fs)
	c.lease.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: orderly [flags]          run the whole system on embedded defaults\n"+
			"       orderly eventstore [flags]  run only the embedded event store\n"+
			"       orderly rebuild [flags]     rebuild the views of a running system\n"+
			"       orderly status [flags]      the processors of a running system (-watch to follow)\n"+
			"       orderly bench [flags]       load a running system, or an embedded one, and measure it\n"+
			"       orderly dev-cert [flags]    write a self-signed TLS certificate for trying TLS locally\n"+
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
	sec, err := cfg.security.Build(ctx, log, cfg.esListen, cfg.commandsListen, cfg.queriesListen, cfg.httpListen)
	if err != nil {
		return err
	}
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
	access, err := storeAccess(cfg.storeUsers)
	if err != nil {
		return err
	}
	store, esAddr, err := startEventStore(cfg.esListen, cfg.store(), filepath.Join(dataDir, "eventstore"), metrics.Registry, sec, access, log)
	if err != nil {
		return err
	}
	closers.Add("embedded event store", store.Close)
	conn, err := eventlog.Connect(storeURL(esAddr, cfg.security.TLS, access != nil), log)
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
	cfg.commands.Registerer, cfg.commands.StoreTimeout, cfg.commands.Identify = metrics.Registry, cfg.storeTimeout, auth.Subject
	commands, err := command.New(conn, log.With("service", "command"), cfg.commands)
	if err != nil {
		return err
	}
	closers.Add("command snapshots", func() error { commands.Close(); return nil }) // before the store closes
	cfg.saga.Registerer, cfg.saga.Leases, cfg.saga.Lease = metrics.Registry, vs, cfg.lease
	credit, err := saga.New(conn, commands, log.With("service", "saga"), cfg.saga)
	if err != nil {
		return err
	}
	commands.PaceOrders(credit)
	projector, err := projection.New(conn, vs, log.With("service", "projector"), projection.Options{Registerer: metrics.Registry, Notifier: notifier, Lease: cfg.lease})
	if err != nil {
		return err
	}
	queries := query.New(conn, vs, query.Options{Notifier: notifier, StoreTimeout: cfg.storeTimeout, Log: log.With("service", "query")})
	// The AdminService runs every processor here; it is served beside the
	// commands, over gRPC and REST.
	ops := admin.New(admin.Options{Projector: projector, Views: vs, Saga: credit, Conn: conn, StoreTimeout: cfg.storeTimeout,
		Process: "orderly", Log: log.With("service", "admin")})

	cmdSrv, cmdLis, err := serve.ListenGRPC(cfg.commandsListen, log, metrics, sec, orderlyv1.CommandService_ServiceDesc.ServiceName, func(r grpc.ServiceRegistrar) {
		commands.Register(r)
		ops.Register(r)
	})
	if err != nil {
		return err
	}
	qrySrv, qryLis, err := serve.ListenGRPC(cfg.queriesListen, log, metrics, sec, orderlyv1.QueryService_ServiceDesc.ServiceName, queries.Register)
	if err != nil {
		return err
	}
	handler, closeConns, err := serve.NewGateway(ctx, metrics, sec,
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
		printBanner(os.Stdout, addrs, cfg.security.TLS, cfg.views)
	}
	log.Info("orderly running", "eventstore", esAddr, "commands", cmdLis.Addr().String(),
		"queries", qryLis.Addr().String(), "http", httpLis.Addr().String(), "views", cfg.views.Kind, "data", dataDir)
	return serve.Run(ctx, log, *cfg.grace, serve.Plan{
		Servers: []serve.Server{
			serve.GRPC("commands", cmdSrv, cmdLis),
			serve.GRPC("queries", qrySrv, qryLis),
			serve.HTTP("rest", serve.NewHTTPServer(handler, sec), httpLis),
		},
		Background: []serve.Task{{Name: "saga", Run: credit.Run}, {Name: "projector", Run: projector.Run}, {Name: "watch", Run: queries.Run}, {Name: "admin", Run: ops.Run}},
		Closers:    &closers,
	})
}

// startEventStore opens the event store in dir and serves it on addr until
// Close, with cfg's limits, over TLS when sec has certificates; it returns
// the address it listens on.
func startEventStore(addr string, cfg eventstore.Config, dir string, reg prometheus.Registerer, sec serve.Security, access *eventstore.Access, log *slog.Logger) (*eventstore.Server, string, error) {
	cfg.Dir, cfg.Registerer, cfg.Logger, cfg.Access = dir, reg, log.With("service", "eventstore"), access
	cfg.Traced = tracing.Enabled(os.Getenv)
	if sec.Certs != nil {
		cfg.TLS = sec.Certs.Config("h2")
	}
	srv, err := eventstore.Open(cfg)
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

// storeURL is the connection string of the all-in-one's own clients to its
// event store: with TLS, they trust the listeners' certificate file as
// their CA (right for a self-signed certificate; a CA-signed one verifies
// too, as a pinned root) and present the same pair when clients must have
// certificates. The client reads these files once: after a renewal to a
// certificate the old file does not vouch for, restart the all-in-one.
// With the store's access control on, they are its admin: the saga, the
// projector and the watches read $all, which is the $admins'.
func storeURL(addr string, f tlsconf.Flags, asAdmin bool) string {
	if !f.Enabled() {
		return "esdb://" + addr + "?tls=false"
	}
	q := url.Values{"tls": {"true"}, "tlsCAFile": {f.CertFile}}
	if f.ClientCAFile != "" {
		q.Set("userCertFile", f.CertFile)
		q.Set("userKeyFile", f.KeyFile)
	}
	u := url.URL{Scheme: "esdb", Host: addr, RawQuery: q.Encode()}
	if asAdmin {
		u.User = url.UserPassword("admin", os.Getenv(AdminPasswordEnv))
	}
	return u.String()
}

// printBanner tells a newcomer where everything is and what to try first.
func printBanner(w io.Writer, a allAddrs, tf tlsconf.Flags, vc viewstore.Config) {
	scheme, grpcurlTLS, curlTLS, esTLS := "http", "-plaintext", "", "?tls=false"
	if tf.Enabled() {
		scheme, grpcurlTLS, curlTLS, esTLS = "https", "-cacert "+tf.CertFile, "--cacert "+tf.CertFile+" ", "?tls=true"
	}
	fmt.Fprintf(w, `
Orderly is running (Ctrl-C to stop).
  commands  gRPC  %[2]s   (orderly.v1.CommandService)
  queries   gRPC  %[3]s   (orderly.v1.QueryService)
  REST            %[6]s://%[4]s   (OpenAPI: %[6]s://%[4]s/openapi.json, metrics: /metrics)
  console         %[6]s://%[4]s/console
  events          esdb://%[1]s%[9]s
  views           %[5]s

Try:
  curl -s %[8]s-X POST %[6]s://%[4]s/v1/customers -d '{"name":"Ada","email":"ada@example.com","creditLimit":{"currencyCode":"USD","minorUnits":"10000"}}'
  grpcurl %[7]s -d '{}' %[3]s orderly.v1.QueryService/ListCustomers

`, a.eventStore, a.commands, a.queries, a.http, viewstore.Where(vc), scheme, grpcurlTLS, curlTLS, esTLS)
}
