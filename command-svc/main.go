// Command command-svc serves orderly.v1.CommandService over gRPC and REST and
// runs the credit saga.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/admin"
	"github.com/orderly/orderly/internal/auth"
	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/config"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/lease"
	"github.com/orderly/orderly/internal/saga"
	"github.com/orderly/orderly/internal/serve"
	"github.com/orderly/orderly/internal/tracing"
	"github.com/orderly/orderly/internal/views/viewstore"
)

func main() { serve.Main("command-svc", run) }

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("command-svc", flag.ContinueOnError)
	grpcListen := fs.String("grpc-listen", "127.0.0.1:50051", "gRPC listen address (CommandService, AdminService)")
	httpListen := fs.String("http-listen", "127.0.0.1:8081", `REST gateway listen address for the command routes ("" disables it)`)
	eventstore := fs.String("eventstore", "esdb://127.0.0.1:2113?tls=false", "event store connection string")
	runSaga := fs.Bool("saga", true, "run the credit saga in this process")
	storeTimeout := fs.Duration("store-timeout", 5*time.Second, "deadline of each event store call")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	grace := serve.GraceFlag(fs)
	var secFlags serve.SecurityFlags
	secFlags.Register(fs)
	var opts command.Options
	opts.RegisterFlags(fs)
	var sagaOpts saga.Options
	sagaOpts.RegisterFlags(fs)
	// The saga's partitions are leased in the view store, beside the
	// projector's.
	var leaseStore viewstore.Config
	leaseStore.RegisterFlags(fs)
	var shared lease.Config
	shared.RegisterFlags(fs)
	if err := config.Parse(fs, "ORDERLY", args); err != nil {
		return err
	}
	log, err := serve.NewLogger(os.Stderr, *logLevel)
	if err != nil {
		return err
	}
	sec, err := secFlags.Build(ctx, log, *grpcListen, *httpListen)
	if err != nil {
		return err
	}

	var closers serve.Closers // closed by serve.Run, or here after a failed start
	defer closers.Close()
	flushTraces, err := tracing.Start(ctx, "command-svc", log)
	if err != nil {
		return err
	}
	closers.Add("tracing", flushTraces)
	conn, err := eventlog.Connect(*eventstore, log)
	if err != nil {
		return err
	}
	closers.Add("event store connection", conn.Close)
	metrics := serve.NewMetrics()
	opts.StoreTimeout, opts.Registerer, opts.Identify = *storeTimeout, metrics.Registry, auth.Subject
	commands, err := command.New(conn, log, opts)
	if err != nil {
		return err
	}
	closers.Add("command snapshots", func() error { commands.Close(); return nil }) // before the store connection closes

	var plan serve.Plan
	// The AdminService answers for the saga when it runs here; the views
	// are the projector's.
	adminOpts := admin.Options{Conn: conn, StoreTimeout: *storeTimeout, Process: "command-svc", Log: log.With("component", "admin")}
	if *runSaga {
		leases, err := viewstore.Open(ctx, leaseStore)
		if err != nil {
			return fmt.Errorf("the saga's lease store: %w", err)
		}
		closers.Add("lease store", leases.Close)
		sagaOpts.StoreTimeout, sagaOpts.Registerer, sagaOpts.Leases, sagaOpts.Lease = *storeTimeout, metrics.Registry, leases, shared
		credit, err := saga.New(conn, commands, log.With("component", "saga"), sagaOpts)
		if err != nil {
			return err
		}
		// Orders placed here wait while this instance's saga is behind;
		// with its partitions held elsewhere, it is never behind.
		commands.PaceOrders(credit)
		plan.Background = append(plan.Background, serve.Task{Name: "saga", Run: credit.Run})
		adminOpts.Saga = credit
	}
	ops := admin.New(adminOpts)
	plan.Background = append(plan.Background, serve.Task{Name: "admin", Run: ops.Run})

	gs, glis, err := serve.ListenGRPC(*grpcListen, log, metrics, sec, orderlyv1.CommandService_ServiceDesc.ServiceName, func(r grpc.ServiceRegistrar) {
		commands.Register(r)
		ops.Register(r)
	})
	if err != nil {
		return err
	}
	plan.Servers, plan.Closers = []serve.Server{serve.GRPC("grpc", gs, glis)}, &closers
	if *httpListen != "" {
		rest, closeConns, err := serve.ListenGateway(ctx, *httpListen, metrics, sec,
			serve.Upstream{Server: gs, Register: command.RegisterGateway}, serve.Upstream{Server: gs, Register: admin.RegisterGateway})
		if err != nil {
			return err
		}
		closers.Add("gateway connections", closeConns)
		plan.Servers = append(plan.Servers, rest)
	}

	log.Info("command-svc serving", "grpc", glis.Addr().String(), "http", *httpListen, "saga", *runSaga)
	return serve.Run(ctx, log, *grace, plan)
}
