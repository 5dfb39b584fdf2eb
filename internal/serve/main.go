package serve

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/orderly/orderly/internal/gctune"
)

// Main runs a command: run gets the arguments and a context cancelled on
// SIGINT or SIGTERM, which starts a graceful shutdown. The process exits 0
// on success, 2 when the flags asked for help, and 1 after printing any
// other error. The garbage collector runs under gctune's policy.
func Main(name string, run func(ctx context.Context, args []string) error) {
	gctune.Apply()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
