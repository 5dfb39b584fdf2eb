// Command orderly is the all-in-one entry point: with no subcommand it runs the
// whole system on embedded defaults; subcommands run single parts of it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/orderly/orderly/internal/projectorcmd"
)

// subcommands maps a subcommand name to its runner. Each runner parses its own
// flags from args so that `orderly NAME -h` documents only what NAME accepts.
var subcommands = map[string]func(ctx context.Context, args []string) error{
	"eventstore": runEventStore,
	"rebuild":    projectorcmd.Rebuild,
	"version":    runVersion,
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	args := os.Args[1:]
	run := runAll
	if len(args) > 0 {
		if sub, ok := subcommands[args[0]]; ok {
			run, args = sub, args[1:]
		}
	}
	if err := run(ctx, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		slog.Error("orderly failed", "err", err)
		os.Exit(1)
	}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func runVersion(_ context.Context, _ []string) error {
	fmt.Println("orderly", version)
	return nil
}
