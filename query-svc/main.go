// Command query-svc serves orderly.v1.QueryService over gRPC and REST: the
// views the projector keeps, plus history, as-of reads and watches from the
// event store.
package main

import (
	"context"
	"flag"
	"os"
	"time"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/config"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/query"
	"github.com/orderly/orderly/internal/serve"
	"github.com/orderly/orderly/internal/tracing"
	"github.com/orderly/orderly/internal/views/viewstore"
)

func main() { serve.Main("query-svc", run) }

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("query-svc", flag.ContinueOnError)
	grpcListen := fs.String("grpc-listen", "127.0.0.1:50052", "gRPC listen address")
	httpListen := fs.String("http-listen", "127.0.0.1:8082", `REST gateway listen address ("" disables it)`)
	eventstore := fs.String("eventstore", "esdb://127.0.0.1:2113?tls=false", "event store connection string")
	tokenKey := fs.String("page-token-key", "", "secret sealing page tokens; replicas must share it (empty: random per process)")
	maxWait := fs.Duration("max-wait", 10*time.Second, "longest min_position wait, and a watch's wait for its first answer, for a call without a deadline")
	storeTimeout := fs.Duration("store-timeout", 5*time.Second, "deadline of each event store and view store call, whatever the caller's")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	grace := serve.GraceFlag(fs)
	var secFlags serve.SecurityFlags
	secFlags.Register(fs)
	var vc viewstore.Config
	vc.RegisterFlags(fs)
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
	flushTraces, err := tracing.Start(ctx, "query-svc", log)
	if err != nil {
		return err
	}
	closers.Add("tracing", flushTraces)
	store, err := eventlog.Connect(*eventstore, log)
	if err != nil {
		return err
	}
	closers.Add("event store connection", store.Close)
	vs, err := viewstore.Open(ctx, vc)
	if err != nil {
		return err
	}
	closers.Add("views", vs.Close)

	svc := query.New(store, vs, query.Options{PageTokenKey: []byte(*tokenKey), MaxWait: *maxWait, StoreTimeout: *storeTimeout, Log: log})
	metrics := serve.NewMetrics()
	gs, glis, err := serve.ListenGRPC(*grpcListen, log, metrics, sec, orderlyv1.QueryService_ServiceDesc.ServiceName, svc.Register)
	if err != nil {
		return err
	}
	plan := serve.Plan{
		Servers:    []serve.Server{serve.GRPC("grpc", gs, glis)},
		Background: []serve.Task{{Name: "watch", Run: svc.Run}},
		Closers:    &closers,
	}
	if *httpListen != "" {
		rest, closeConns, err := serve.ListenGateway(ctx, *httpListen, metrics, sec, serve.Upstream{Server: gs, Register: query.RegisterGateway})
		if err != nil {
			return err
		}
		closers.Add("gateway connections", closeConns)
		plan.Servers = append(plan.Servers, rest)
	}
	log.Info("query-svc serving", "grpc", glis.Addr().String(), "http", *httpListen, "views", vc.Kind)
	return serve.Run(ctx, log, *grace, plan)
}
