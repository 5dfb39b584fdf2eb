package eventstore

import (
	"math"
	"strconv"
	"time"
)

// What a scavenge may remove, as one rule that the scavenger's scan (to pick
// candidates) and the sequencer (to delete them, against the stream's
// current state) both apply.
//
// A scavenge removes what the stream's metadata retires ($tb, $maxCount,
// $maxAge, a soft delete) and every event of a tombstoned stream but the
// tombstone, as EventStoreDB does. Like EventStoreDB it keeps the last event
// of a stream that is not tombstoned even when the metadata retires it:
// there the last event is how the index knows the stream's last revision.
// Here the stream state (m<stream>) records that anyway, but keeping the
// event keeps $all after a scavenge the same as EventStoreDB's, and costs
// one event per stream at most.

// retiree is an event a scavenge may remove.
type retiree struct {
	rev, pos uint64
	created  int64 // its created time in ticks of 100 ns since the Unix epoch; 0 when not read
	size     int   // bytes of its log and index entries, keys included
}

// retires reports whether m retires r at now, so a scavenge may remove it.
func (m streamMeta) retires(r retiree, now time.Time) bool {
	switch {
	case m.tombstoned:
		return r.rev != tombstoneRevision
	case r.rev == tombstoneRevision || r.rev+1 >= m.next:
		return false // the last event stays
	case r.rev < m.firstKept():
		return true
	}
	return m.maxAge > 0 && r.created != 0 && time.Unix(0, r.created*100).Before(now.Add(-m.maxAge))
}

// retiredCeiling is the highest revision m may retire; ok is false when it
// retires nothing, so a scavenge need not look at the stream's events.
func (m streamMeta) retiredCeiling() (hi uint64, ok bool) {
	switch {
	case m.tombstoned:
		return math.MaxUint64, true
	case m.next < 2:
		return 0, false
	case m.maxAge > 0:
		return m.next - 2, true
	}
	first := min(m.firstKept(), m.next-1)
	return first - 1, first > 0
}

// createdTicks reads an event's created time, for $maxAge.
func createdTicks(e *entry) (int64, error) {
	rec, err := e.record()
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(rec.GetMetadata()[metaCreated], 10, 64)
}
