package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
)

// Target is where a running system serves: gRPC addresses, the REST base
// URL and the metrics URL.
type Target struct {
	Commands, Queries, REST, Metrics string
}

// Embedded runs a whole system in this process with its data in dir,
// calling ready once it listens, until ctx ends.
type Embedded func(ctx context.Context, dir string, ready func(Target)) error

// Main is `orderly bench`: it parses args, starts an embedded system when no
// address is given, runs the load and prints the summary to stdout (live
// lines and logs go to stderr). A cancelled ctx (SIGINT) ends the load
// early; the summary covers what ran.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, embedded Embedded) error {
	cfg, err := ParseFlags(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t := Target{Commands: cfg.CommandsAddr, Queries: cfg.QueriesAddr, REST: cfg.RESTURL, Metrics: cfg.MetricsURL}
	if cfg.Embedded() {
		var stop func() error
		t, stop, err = startEmbedded(ctx, cfg.EmbeddedData, embedded)
		if err != nil {
			return err
		}
		defer func() {
			if err := stop(); err != nil {
				log.Error("embedded system", "err", err)
			}
		}()
		log.Info("embedded system started", "commands", t.Commands, "queries", t.Queries, "rest", t.REST)
	}
	s, err := Run(ctx, cfg, t, stderr, log)
	if err != nil {
		return err
	}
	if cfg.JSON {
		return s.WriteJSON(stdout)
	}
	return s.WriteTable(stdout)
}

// startEmbedded starts the system in dir (a temporary directory when
// empty); stop ends it and removes a temporary directory.
func startEmbedded(ctx context.Context, dir string, embedded Embedded) (Target, func() error, error) {
	temp := dir == ""
	if temp {
		var err error
		if dir, err = os.MkdirTemp("", "orderly-bench-"); err != nil {
			return Target{}, nil, fmt.Errorf("embedded system: %w", err)
		}
	}
	// The system outlives a SIGINT long enough for the summary: it stops
	// when the bench is done.
	sysCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ready := make(chan Target, 1)
	done := make(chan error, 1)
	go func() { done <- embedded(sysCtx, dir, func(t Target) { ready <- t }) }()
	stop := func() error {
		cancel()
		err := <-done
		if temp {
			err = cmp.Or(err, os.RemoveAll(dir))
		}
		return err
	}
	select {
	case t := <-ready:
		return t, stop, nil
	case err := <-done:
		cancel()
		if err == nil {
			err = errors.New("it stopped before listening")
		}
		if temp {
			_ = os.RemoveAll(dir)
		}
		return Target{}, nil, fmt.Errorf("embedded system: %w", err)
	}
}
