package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"

	"github.com/orderly/orderly/internal/config"
	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/tlsconf"
)

// runEventStore serves the embedded event store on its own, for tools and for
// services run separately: esdb://HOST:PORT?tls=false, or with -tls-cert
// esdb://HOST:PORT?tls=true&tlsCAFile=....
func runEventStore(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("eventstore", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:2113", "address to serve the EventStoreDB gRPC protocol on")
	data := fs.String("data", "./.orderly/eventstore", `directory for the event store; "" or ":memory:" keeps it in memory`)
	maxEvent := fs.Int("max-event-size", 0, "largest event in bytes (0 = default, 1 MiB)")
	maxAppend := fs.Int("max-append-size", 0, "largest append request in bytes (0 = default, 4 MiB)")
	maxPending := fs.Int("max-pending-append-bytes", 0, "bytes all appends read and not yet answered may hold together (0 = default, 64 MiB)")
	subBuffer := fs.Int("subscriber-buffer-bytes", 0, "bytes of live events a subscriber may have waiting before it is dropped (0 = default, 64 MiB)")
	streamCache := fs.Int("stream-cache-bytes", 0, "bytes of stream state the writer keeps in memory; others are read from disk (0 = default, 16 MiB)")
	var tf tlsconf.Flags
	tf.Register(fs)
	users := fs.String("users", "", "file of event store users, one `NAME PASSWORD [GROUP,...]` a line, besides admin (whose password is "+AdminPasswordEnv+", which turns access control on)")
	if err := config.Parse(fs, "ORDERLY_EVENTSTORE", args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("eventstore: unexpected arguments %q", fs.Args())
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("service", "eventstore")
	if err := tf.CheckListen(log, *listen); err != nil {
		return fmt.Errorf("eventstore: %w", err)
	}
	certs, err := tf.Server(log)
	if err != nil {
		return fmt.Errorf("eventstore: %w", err)
	}
	var tlsConfig *tls.Config
	if certs != nil {
		tlsConfig = certs.Config("h2")
	}
	access, err := storeAccess(*users)
	if err != nil {
		return fmt.Errorf("eventstore: %w", err)
	}

	dir := *data
	if dir == ":memory:" {
		dir = ""
	}
	srv, err := eventstore.Open(eventstore.Config{
		Dir: dir, MaxEventSize: *maxEvent, MaxAppendSize: *maxAppend, MaxPendingAppendBytes: *maxPending,
		SubscriberBufferBytes: *subBuffer, StreamCacheBytes: *streamCache, Logger: log, TLS: tlsConfig, Access: access,
	})
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
