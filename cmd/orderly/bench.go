package main

import (
	"context"
	"os"

	"github.com/orderly/orderly/internal/bench"
)

func runBench(ctx context.Context, args []string) error {
	return bench.Main(ctx, args, os.Stdout, os.Stderr, embeddedBench)
}

// embeddedBench runs the all-in-one for the bench: its data in dir, every
// listener on a port the OS picks, warnings only in the log.
func embeddedBench(ctx context.Context, dir string, ready func(bench.Target)) error {
	args := []string{"-data", dir, "-log-level", "warn",
		"-eventstore-listen", "127.0.0.1:0", "-commands-listen", "127.0.0.1:0",
		"-queries-listen", "127.0.0.1:0", "-http-listen", "127.0.0.1:0", "-ferretdb-listen", "127.0.0.1:0"}
	return startAll(ctx, args, func(a allAddrs) {
		ready(bench.Target{Commands: a.commands, Queries: a.queries, REST: "http://" + a.http, Metrics: "http://" + a.http + "/metrics"})
	}, os.Stderr)
}
