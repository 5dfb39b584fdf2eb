package eventstore

import "time"

// scavengeSlice is a bounded part of one stream's retired events, which the
// scavenger hands to the sequencer to delete.
type scavengeSlice struct {
	events []retiree
	// Set by the sequencer before it answers.
	removed int
	freed   int64 // bytes of the entries removed
}

// scavengeSliceEvents bounds a slice, so deleting it adds little to a group
// commit (two small keys per event) and appends wait behind it briefly.
const scavengeSliceEvents = 1024

// scavengeScanEvents bounds the events one slice looks at, so a long stream
// that $maxAge retires little of is read a part per durable view, too.
const scavengeScanEvents = 8 * scavengeSliceEvents

// removeRetired deletes the events of o's slice (log and index entries
// together, in the group's batch) that the stream's current state still
// retires. The scavenger picked them from an older durable view; checking
// again here, where every write is ordered, is what makes a scavenge safe
// against a concurrent metadata change: new metadata that relaxes $tb or
// $maxCount, or ends a soft delete, is either in an earlier group (and
// spares the events) or in a later one (and finds them gone, as in
// EventStoreDB once a scavenge has run). The state may include writes of
// the group being built, which commits atomically with the deletes, so
// nothing is ever deleted on the strength of metadata a crash takes back.
func (q *sequencer) removeRetired(o *op, st, partner *streamState) {
	if st == nil {
		return
	}
	view := st.meta
	if _, isMeta := originalOf(o.stream); isMeta {
		// As readers see a metadata stream (readView): only its latest
		// event, and nothing once its stream is tombstoned.
		view.setRetention(retention{maxCount: 1})
		view.tombstoned = partner != nil && partner.meta.tombstoned
	}
	now := time.Now() // what readers compare $maxAge with
	sl := o.scavenge
	for _, r := range sl.events {
		if !view.retires(r, now) {
			continue
		}
		q.batch.Delete(logKey(r.pos), nil)
		q.batch.Delete(indexKey(o.stream, r.rev), nil)
		sl.removed++
		sl.freed += int64(r.size)
	}
}
