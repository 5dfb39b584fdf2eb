// Command ferretdb serves an embedded FerretDB (SQLite backend) for the
// fault tests, as a process of its own: they kill it to play a MongoDB
// outage, and it runs at full speed, not under the race detector of the
// test process (FerretDB is slow enough without it; see notes on FerretDB).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/orderly/orderly/internal/views/mongo/ferrettest"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "address to serve the MongoDB wire protocol on")
	dir := flag.String("data", "", "directory of the SQLite files (created if missing)")
	flag.Parse()
	if err := run(*listen, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb:", err)
		os.Exit(1)
	}
}

func run(listen, dir string) error {
	if dir == "" {
		return fmt.Errorf("-data is required")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return ferrettest.Serve(ctx, listen, dir)
}
