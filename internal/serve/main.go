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
// SIGINT or SIGTERM, which starts a graceful shutdown; a second signal
// exits at once (status 1), for an operator who will not wait. The process
// exits 0 on success, 2 when the flags asked for help, and 1 after printing
// any other error. The garbage collector runs under gctune's policy.
func Main(name string, run func(ctx context.Context, args []string) error) {
	gctune.Apply()
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-signals
		cancel()
		sig := <-signals
		fmt.Fprintf(os.Stderr, "%s: %v again: exiting without finishing the shutdown\n", name, sig)
		os.Exit(1)
	}()
	err := run(ctx, os.Args[1:])
	signal.Stop(signals)
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
