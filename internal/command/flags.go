package command

import "flag"

// RegisterFlags declares the flags of the options a deployment tunes
// (config.Parse adds their ORDERLY_* variables).
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.Int64Var(&o.CacheBytes, "aggregate-cache-bytes", defaultCacheBytes,
		"estimated memory of the aggregates kept folded between commands (least recently used out first; decided orders within 1/32 of it, out before the rest)")
	fs.IntVar(&o.SnapshotEvents, "snapshot-page-events", defaultSnapshotEvents,
		"events of a customer per snapshot page (at most 4096; -1 writes and reads no snapshots)")
}
