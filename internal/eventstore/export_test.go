package eventstore

import (
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// GroupCommits reports how many groups s has committed and how many ops
// they answered, so benchmarks can show what group commit did.
func GroupCommits(s *Server) (groups, ops uint64) {
	return s.seq.groups.Load(), s.seq.grouped.Load()
}

// UseFS makes the store keep its files in fs, for crash tests.
func UseFS(fs vfs.FS) func(*Config) {
	return func(c *Config) { c.fs = fs }
}

// Visible reports whether the event at pos is in Pebble's live state, synced
// or not: what a read would see without the durable view.
func Visible(s *Server, pos uint64) bool {
	_, err := readEntry(s.db, pos)
	return err == nil
}

// AppendPending queues an append of one event to stream straight to the
// sequencer, as the Append handler does, and returns a function reporting
// whether the sequencer has answered it yet. Going around gRPC lets a test
// look at the answer the moment it is given, with no network in between.
func AppendPending(s *Server, stream string) (answered func() bool) {
	o := &op{
		kind: opAppend, stream: stream, expect: expectation{kind: expectAny},
		events: []*record{newRecord(stream, newEventID(), "pending", contentTypeBinary, nil, nil)},
		done:   make(chan result, 1),
	}
	s.seq.ops <- o
	return func() bool { return len(o.done) > 0 }
}

// SetClock makes s stamp the events it writes with now() instead of the wall
// clock, so tests can write events that $maxAge already retires. Call it
// before the first append; now itself may change its answer later.
func SetClock(s *Server, now func() time.Time) { s.seq.now = now }
