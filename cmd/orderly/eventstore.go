package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/orderly/orderly/internal/config"
	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/tlsconf"
	"github.com/orderly/orderly/internal/tracing"
)

// runEventStore serves the embedded event store on its own, for tools and for
// services run separately: esdb://HOST:PORT?tls=false, or with -tls-cert
// esdb://HOST:PORT?tls=true&tlsCAFile=.... `orderly eventstore scavenge` is
// the operator's command for a running store (scavenge.go).
func runEventStore(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "scavenge" {
		return runScavenge(ctx, args[1:])
	}
	fs := flag.NewFlagSet("eventstore", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:2113", "address to serve the EventStoreDB gRPC protocol on")
	data := fs.String("data", "./.orderly/eventstore", `directory for the event store; "" or ":memory:" keeps it in memory`)
	metricsListen := fs.String("metrics-listen", "", `HTTP address serving the store's Prometheus metrics at /metrics; "" serves none`)
	storeConfig := storeFlags(fs, "")
	var tf tlsconf.Flags
	tf.Register(fs)
	users := fs.String("users", "", "file of event store users, one `NAME PASSWORD [GROUP,...]` a line, besides admin (whose password is "+AdminPasswordEnv+", which turns access control on)")
	if err := config.Parse(fs, "ORDERLY_EVENTSTORE", args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("eventstore: unexpected arguments %q (the subcommand is: scavenge)", fs.Args())
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("service", "eventstore")
	if err := tf.CheckListen(log, *listen); err != nil {
		return fmt.Errorf("eventstore: %w", err)
	}
	certs, err := tf.Server(log)
	if err != nil {
		return fmt.Errorf("eventstore: %w", err)
	}
	cfg := storeConfig()
	if certs != nil {
		cfg.TLS = certs.Config("h2")
	}
	if cfg.Access, err = storeAccess(*users); err != nil {
		return fmt.Errorf("eventstore: %w", err)
	}
	cfg.Dir, cfg.Logger = *data, log
	if cfg.Dir == ":memory:" {
		cfg.Dir = ""
	}
	flushTraces, err := tracing.Start(ctx, "eventstore", log)
	if err != nil {
		return err
	}
	defer func() { _ = flushTraces() }()
	reg := prometheus.NewRegistry()
	cfg.Registerer, cfg.Traced = reg, tracing.Enabled(os.Getenv)
	srv, err := eventstore.Open(cfg)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return errors.Join(fmt.Errorf("eventstore: listen: %w", err), srv.Close())
	}
	conn := fmt.Sprintf("esdb://%s?tls=false", lis.Addr())
	if certs != nil {
		conn = fmt.Sprintf("esdb://%s?tls=true&tlsCAFile=%s", lis.Addr(), url.QueryEscape(tf.CertFile))
	}
	log.Info("event store listening", "conn", conn, "data", *data)
	stopMetrics, err := serveMetrics(*metricsListen, reg, log)
	if err != nil {
		return errors.Join(err, lis.Close(), srv.Close())
	}
	defer stopMetrics()

	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	select {
	case err := <-served:
		return errors.Join(err, srv.Close())
	case <-ctx.Done():
		log.Info("event store stopping", "reason", context.Cause(ctx))
		return errors.Join(srv.Close(), <-served)
	}
}

// metricsShutdown bounds how long a scrape in progress may delay shutdown.
const metricsShutdown = 2 * time.Second

// serveMetrics serves reg at /metrics on addr ("" serves nothing) until the
// returned function is called.
func serveMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("eventstore: metrics listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := hs.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("event store metrics", "url", fmt.Sprintf("http://%s/metrics", lis.Addr()))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), metricsShutdown)
		defer cancel()
		_ = hs.Shutdown(ctx)
	}, nil
}
