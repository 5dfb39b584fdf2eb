package main

import (
	"flag"

	"github.com/orderly/orderly/internal/eventstore"
)

// storeFlags declares the embedded event store's limits and schedule on fs,
// each name after prefix ("" for `orderly eventstore`, "eventstore-" for the
// all-in-one), and returns a function giving the configuration they set.
func storeFlags(fs *flag.FlagSet, prefix string) func() eventstore.Config {
	var c eventstore.Config
	fs.IntVar(&c.MaxEventSize, prefix+"max-event-size", 0, "largest event in bytes (0 = default, 1 MiB)")
	fs.IntVar(&c.MaxAppendSize, prefix+"max-append-size", 0, "largest append request in bytes (0 = default, 4 MiB)")
	fs.IntVar(&c.MaxPendingAppendBytes, prefix+"max-pending-append-bytes", 0, "bytes all appends read and not yet answered may hold together (0 = default, 64 MiB)")
	fs.IntVar(&c.SubscriberBufferBytes, prefix+"subscriber-buffer-bytes", 0, "bytes of live events a subscriber may have waiting before it is dropped (0 = default, 64 MiB)")
	fs.IntVar(&c.StreamCacheBytes, prefix+"stream-cache-bytes", 0, "bytes of stream state the writer keeps in memory; others are read from disk (0 = default, 16 MiB)")
	fs.DurationVar(&c.ScavengeEvery, prefix+"scavenge-every", 0, "start a scavenge (removing retired and deleted events from disk) at this interval; 0 = only when an operator starts one")
	return func() eventstore.Config { return c }
}
