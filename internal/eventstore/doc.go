// Package eventstore is Orderly's embedded event store: a gRPC server that speaks
// the subset of the EventStoreDB protocol the official Go client
// (EventStore-Client-Go v4) uses for streams, so services talk to it exactly as
// they would to a real node. It implements appends with optimistic concurrency
// and idempotence, stream and $all reads in both directions, catch-up and live
// subscriptions with server-side filters and checkpoints, soft delete and
// tombstone, stream metadata ("$$stream": $tb, $maxCount and $maxAge hide
// what they retire from stream reads and subscriptions; see metadata.go),
// the server-features handshake, and scavenging through the StartScavenge
// and StopScavenge calls of EventStoreDB's Operations service, with
// progress in the "$scavenges" and "$scavenges-<id>" streams (see
// scavenge.go). Everything else (persistent subscriptions, projections,
// users, the other operations, system streams other than "$$stream" and
// the scavenge streams) answers UNIMPLEMENTED.
//
// # Storage
//
// Events live in Pebble (github.com/cockroachdb/pebble/v2). An event store is an
// append-only log plus per-stream indexes that must change together, durably,
// and never half-way; Pebble gives exactly that in-process and in pure Go:
// atomic write batches, a synced write-ahead log that recovers after a crash
// without exposing a partial batch, ordered iteration both ways for range
// reads, consistent snapshots for readers, and an in-memory filesystem for
// tests. A hand-rolled segment log would need its own recovery and indexing;
// SQLite would serialize writers behind one lock and add a cgo-free but much
// heavier SQL layer for what are only point and range lookups.
//
// Keys (see keys.go):
//
//	f                          -> key layout version (be64; none in the first)
//	l <pos:be64>               -> the event, in its wire form (RecordedEvent)
//	s <stream> 0x00            -> stream state (next revision, tombstone, and the
//	                              $tb, $maxCount, $maxAge of its latest metadata)
//	s <stream> 0x00 <rev:be64> -> pos      per-stream index
//
// The state sorts just before the stream's index entries, so that reading a
// stream whose blocks are not cached takes its state and its first index
// entries from one block. Stores of the first layout kept states under
// "m <stream>"; Open moves them, and refuses a layout newer than its own.
//
// A metadata stream "$$x" is a stream like any other in this layout; the
// sequencer copies what its latest event sets into the state of "x".
//
// A scavenge deletes retired events' l and index entries together, in the
// writer's group commits, and never the state: a stream's next revision
// and tombstone outlive its events (retire.go says what is kept).
//
// # Writes
//
// One sequencer goroutine owns positions, revisions and stream state (hot
// streams in a cache bounded in bytes, the rest read from Pebble on a miss,
// metadata included; see streamCache). It drains every append waiting in its
// queue, checks each against the state, writes all of them in one Pebble
// batch committed with fsync, then acknowledges them all and hands the batch
// to live subscribers. Concurrent writers thus share one sync (group
// commit), positions are assigned in commit order, and nothing is
// acknowledged before it is on disk.
//
// # What readers see
//
// Pebble makes a batch readable as soon as it is in the memtable, before its
// WAL sync completes. Reads therefore never use the live database: stream and
// $all reads, and subscriptions' catch-ups (events and the metadata that
// retires them), use a snapshot the sequencer takes after each synced commit
// (durable.go), and subscriptions deliver stored events only up to the head
// published after that commit. So no reader
// sees an event that a crash could take back, and an event a reader has seen
// is one an append has been (or is about to be) acknowledged for. This holds
// for crashes of the process and of the machine, as far as the filesystem
// honours fsync; conformance_crash_test.go checks both halves on a
// filesystem that drops every unsynced write when it "crashes".
package eventstore
