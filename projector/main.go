// Command projector keeps Orderly's views up to date from the event store:
//
//	projector [flags]                  follow $all into the live views
//	projector rebuild [-view NAME]     rebuild views beside the live ones, then switch
//
// Flags take ORDERLY_* environment variables too (see -h). The views live in
// SQLite under -data by default, or in MongoDB with -views mongo.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/orderly/orderly/internal/projectorcmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := projectorcmd.Main(ctx, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "projector:", err)
		os.Exit(1)
	}
}
