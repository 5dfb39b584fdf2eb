// Command orderly is the all-in-one entry point: with no subcommand it runs the
// whole system on embedded defaults; subcommands run single parts of it.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/orderly/orderly/internal/projectorcmd"
	"github.com/orderly/orderly/internal/serve"
	"github.com/orderly/orderly/internal/statuscmd"
)

// subcommands maps a subcommand name to its runner. Each runner parses its own
// flags from args so that `orderly NAME -h` documents only what NAME accepts.
var subcommands = map[string]func(ctx context.Context, args []string) error{
	"bench":      runBench,
	"dev-cert":   runDevCert,
	"eventstore": runEventStore,
	"rebuild":    projectorcmd.Rebuild,
	"status":     runStatus,
	"version":    runVersion,
}

func main() {
	serve.Main("orderly", func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			if sub, ok := subcommands[args[0]]; ok {
				return sub(ctx, args[1:])
			}
		}
		return runAll(ctx, args)
	})
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func runVersion(_ context.Context, _ []string) error {
	fmt.Println("orderly", version)
	return nil
}

func runStatus(ctx context.Context, args []string) error {
	return statuscmd.Main(ctx, args, os.Stdout)
}
