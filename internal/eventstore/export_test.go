package eventstore

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
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
	_, closer, err := s.db.Get(logKey(pos))
	if err == nil {
		_ = closer.Close()
	}
	return err == nil
}

// AppendPending queues an append of one event to stream straight to the
// sequencer, as the Append handler does, and returns a function reporting
// whether the sequencer has answered it yet. Going around gRPC lets a test
// look at the answer the moment it is given, with no network in between.
func AppendPending(s *Server, stream string) (answered func() bool) {
	return pending(s, stream, newRecord(stream, newEventID(), "pending", contentTypeBinary, nil, nil), nil)
}

// MetadataPending is AppendPending for stream metadata: it queues data (a
// JSON object) as the latest metadata of stream.
func MetadataPending(s *Server, stream string, data []byte) (answered func() bool, err error) {
	name := metastreamOf(stream)
	rec := newRecord(name, newEventID(), eventTypeMetadata, contentTypeJSON, nil, data)
	md, err := retentionOf(name, []*record{rec})
	if err != nil {
		return nil, err
	}
	return pending(s, name, rec, md), nil
}

func pending(s *Server, stream string, rec *record, md *retention) (answered func() bool) {
	o := &op{
		kind: opAppend, stream: stream, expect: expectation{kind: expectAny},
		events: []*record{rec}, retention: md,
		done: make(chan result, 1),
	}
	s.seq.ops <- o
	return func() bool { return len(o.done) > 0 }
}

// SetClock makes s stamp the events it writes with now() instead of the wall
// clock, so tests can write events that $maxAge already retires. Call it
// before the first append; now itself may change its answer later.
func SetClock(s *Server, now func() time.Time) { s.seq.now = now }

// SetHandlerHook makes fn run before every handler of s, inside its panic
// recovery, so a test can make a handler panic.
func SetHandlerHook(s *Server, fn func(method string)) {
	s.testHook.Store(&fn)
}

// Panics, SlowDrops and Refused read s's counters of the same names.
func Panics(t testing.TB, s *Server) float64 { return counterValue(t, s.metrics.panics) }

func SlowDrops(t testing.TB, s *Server) float64 {
	return counterValue(t, s.metrics.drops.WithLabelValues(dropSlow))
}

func Refused(t testing.TB, s *Server) float64 { return counterValue(t, s.metrics.refused) }

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// SetScavengeHook makes fn run before each slice a scavenge of s deletes.
func SetScavengeHook(s *Server, fn func(ctx context.Context)) { s.scavengeHook.Store(&fn) }

// ScavengeRemoved reads s's count of events scavenges removed.
func ScavengeRemoved(t testing.TB, s *Server) float64 {
	return counterValue(t, s.metrics.scavengeRemoved)
}

// LogEntries counts the events in s's log on disk (live state), scavenged
// or not: what $all would show without the durable view.
func LogEntries(t testing.TB, s *Server) int {
	t.Helper()
	n := 0
	if err := scanLog(s.db, 1, math.MaxUint64, false, func(*entry) (bool, error) { n++; return true, nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// FillStreams writes n one-event streams, named by BenchStream, into the
// store in dir (closed again) and returns the RSS afterwards.
func FillStreams(b *testing.B, dir string, n int) float64 { return fillStreams(b, dir, n) }

// BenchStream names the i-th stream FillStreams writes.
func BenchStream(i int) string { return benchStream(i) }

// ToLegacyStateKeys rewrites the closed store in dir as stores were
// written before stream states moved into the index range, and returns how
// many states it moved.
func ToLegacyStateKeys(t *testing.T, dir string) int {
	SetLayout(t, dir, 0)
	n := 0
	withPebble(t, dir, func(db *pebble.DB) error {
		b := db.NewBatch()
		err := scan(db, []byte{prefixIndex}, []byte{prefixIndex + 1}, false, func(k, v []byte) (bool, error) {
			name, state, _ := streamOfKey(k)
			if !state {
				return true, nil
			}
			n++
			return true, errors.Join(b.Set(append([]byte{prefixLegacyState}, name...), v, nil), b.Delete(k, nil))
		})
		return errors.Join(err, b.Commit(pebble.Sync))
	})
	return n
}

// LegacyStateKeys counts the states of the closed store in dir that are
// still in the old layout.
func LegacyStateKeys(t *testing.T, dir string) int {
	n := 0
	withPebble(t, dir, func(db *pebble.DB) error {
		return scan(db, []byte{prefixLegacyState}, []byte{prefixLegacyState + 1}, false, func([]byte, []byte) (bool, error) {
			n++
			return true, nil
		})
	})
	return n
}

// SetLayout records layout as the key layout of the closed store in dir;
// 0 removes the record, as in stores of the first layout.
func SetLayout(t *testing.T, dir string, layout uint64) {
	withPebble(t, dir, func(db *pebble.DB) error {
		if layout == 0 {
			return db.Delete(layoutKey, pebble.Sync)
		}
		return db.Set(layoutKey, binary.BigEndian.AppendUint64(nil, layout), pebble.Sync)
	})
}

// withPebble runs fn on the Pebble database of the closed store in dir.
func withPebble(t *testing.T, dir string, fn func(*pebble.DB) error) {
	t.Helper()
	db, err := openPebble(dir, nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(fn(db), db.Close()); err != nil {
		t.Fatal(err)
	}
}

// FlushToTables writes what s holds in memory to its tables, so that reads
// read blocks.
func FlushToTables(s *Server) error { return s.db.Flush() }
