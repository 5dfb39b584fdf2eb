package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/orderly/orderly/gen/event_store/client/operations"
	"github.com/orderly/orderly/internal/config"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// runScavenge starts (or, with -stop, stops) a scavenge of a running event
// store through EventStoreDB's Operations service, so it works against the
// embedded store and a real EventStoreDB alike, then follows its progress
// in "$scavenges-<id>" with the official client until it completes.
// Interrupting the command stops following, not the scavenge.
func runScavenge(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("eventstore scavenge", flag.ContinueOnError)
	addr := fs.String("addr", "esdb://127.0.0.1:2113?tls=false", "connection string of the event store (esdb://[user:pass@]host:port?tls=...)")
	stop := fs.String("stop", "", `stop the scavenge with this id ("current": the one running) instead of starting one`)
	follow := fs.Bool("follow", true, "after starting, print its progress events until it completes")
	timeout := fs.Duration("timeout", 10*time.Second, "deadline of the start or stop call")
	if err := config.Parse(fs, "ORDERLY_SCAVENGE", args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("eventstore scavenge: unexpected arguments %q", fs.Args())
	}
	esCfg, err := esdb.ParseConnectionString(*addr)
	if err != nil {
		return fmt.Errorf("eventstore scavenge: -addr: %w", err)
	}
	conn, err := dialOperations(esCfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	ops := operations.NewOperationsClient(conn)

	callCtx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if *stop != "" {
		res, err := ops.StopScavenge(callCtx, &operations.StopScavengeReq{Options: &operations.StopScavengeReq_Options{ScavengeId: *stop}})
		if err != nil {
			return fmt.Errorf("eventstore scavenge: stop %s: %w", *stop, err)
		}
		fmt.Printf("scavenge %s: %s\n", *stop, res.GetScavengeResult())
		return nil
	}
	res, err := ops.StartScavenge(callCtx, &operations.StartScavengeReq{Options: &operations.StartScavengeReq_Options{ThreadCount: 1}})
	if err != nil {
		return fmt.Errorf("eventstore scavenge: start: %w", err)
	}
	id := res.GetScavengeId()
	fmt.Printf("scavenge %s: %s (stop it with: orderly eventstore scavenge -addr '%s' -stop %s)\n", id, res.GetScavengeResult(), *addr, id)
	if !*follow {
		return nil
	}
	esCfg.Logger = esdb.NoopLogging()
	client, err := esdb.NewClient(esCfg)
	if err != nil {
		return fmt.Errorf("eventstore scavenge: client: %w", err)
	}
	defer client.Close()
	return followScavenge(ctx, client, id, os.Stdout)
}

// followScavenge prints each event of "$scavenges-<id>" (type, then its
// JSON data) until $scavengeCompleted, and fails unless that says Success
// or Stopped.
func followScavenge(ctx context.Context, c *esdb.Client, id string, out io.Writer) error {
	sub, err := c.SubscribeToStream(ctx, "$scavenges-"+id, esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	if err != nil {
		return fmt.Errorf("eventstore scavenge: follow %s: %w", id, err)
	}
	defer sub.Close()
	for {
		ev := sub.Recv()
		switch {
		case ev.SubscriptionDropped != nil:
			if ctx.Err() != nil {
				return nil // interrupted: the scavenge goes on
			}
			return fmt.Errorf("eventstore scavenge: follow %s: %w", id, ev.SubscriptionDropped.Error)
		case ev.EventAppeared == nil:
			continue
		}
		rec := ev.EventAppeared.Event
		fmt.Fprintf(out, "%s %s %s\n", rec.CreatedDate.UTC().Format(time.RFC3339), rec.EventType, rec.Data)
		if rec.EventType != "$scavengeCompleted" {
			continue
		}
		var done struct {
			Result string `json:"result"`
			Error  string `json:"error"`
		}
		if err := json.Unmarshal(rec.Data, &done); err != nil {
			return fmt.Errorf("eventstore scavenge: %s: %w", rec.EventType, err)
		}
		if done.Result != "Success" && done.Result != "Stopped" {
			return fmt.Errorf("eventstore scavenge %s: %s: %s", id, done.Result, done.Error)
		}
		return nil
	}
}

// dialOperations connects to the node a connection string names, with its
// TLS settings and credentials, for the calls the official client lacks.
func dialOperations(cfg *esdb.Configuration) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if !cfg.DisableTLS {
		creds = credentials.NewTLS(&tls.Config{RootCAs: cfg.RootCAs, InsecureSkipVerify: cfg.SkipCertificateVerification}) //nolint:gosec // the connection string asks for it
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if cfg.Username != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(basicAuth{user: cfg.Username, pass: cfg.Password, secure: !cfg.DisableTLS}))
	}
	addr := cfg.Address
	if addr == "" && len(cfg.GossipSeeds) > 0 {
		// A scavenge is a node's own work: this scavenges the first node
		// named; name each node in turn to scavenge a cluster.
		addr = cfg.GossipSeeds[0].String()
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("eventstore scavenge: dial %s: %w", addr, err)
	}
	return conn, nil
}

// basicAuth sends EventStoreDB's HTTP basic credentials with each call.
type basicAuth struct {
	user, pass string
	secure     bool
}

func (b basicAuth) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(b.user+":"+b.pass))}, nil
}

func (b basicAuth) RequireTransportSecurity() bool { return b.secure }
