package eventstore

// Stream metadata, as EventStoreDB has it: the metadata of stream "x" is the
// latest event of stream "$$x", of type "$metadata", a JSON object. This store
// acts on $tb (truncate before), $maxCount and $maxAge; it keeps
// $cacheControl, $acl and custom properties in the event as written and
// returns them as they are (there is no authentication yet, so $acl is not
// enforced). What the metadata retires is hidden from stream reads and stream
// subscriptions; $all still shows it, as EventStoreDB's does until a scavenge
// removes it (scavenge.go; nothing is removed from disk here).
//
// Deletion follows EventStoreDB's writer: a soft delete writes metadata
// {"$tb": MaxInt64} in place of the stream's metadata; an append to a
// soft-deleted stream, or new metadata for it, is followed by a copy of its
// latest metadata with $tb at the revision where the stream starts again.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	metastreamPrefix  = "$$"
	eventTypeMetadata = "$metadata"
	contentTypeJSON   = "application/json"
	// softDeletedTB is the $tb of a soft-deleted stream: EventStoreDB's
	// EventNumber.DeletedStream.
	softDeletedTB = math.MaxInt64
)

func metastreamOf(stream string) string { return metastreamPrefix + stream }

// originalOf returns the stream that name holds the metadata of.
func originalOf(name string) (string, bool) { return strings.CutPrefix(name, metastreamPrefix) }

// retention is what this store acts on in a $metadata event.
type retention struct {
	truncateBefore uint64
	maxCount       uint64
	maxAge         time.Duration
}

// retentionOf checks the events of an append to a metadata stream and returns
// what the last one sets: only the latest metadata counts. It returns nil for
// other streams.
func retentionOf(stream string, events []*record) (*retention, error) {
	if _, ok := originalOf(stream); !ok || len(events) == 0 {
		return nil, nil
	}
	var md retention
	for _, rec := range events {
		if t := rec.GetMetadata()[metaType]; t != eventTypeMetadata {
			return nil, status.Errorf(codes.InvalidArgument, "append to %s: event type %q; a metadata stream takes %q events only", stream, t, eventTypeMetadata)
		}
		var err error
		if md, err = parseMetadata(rec.GetData()); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "append to %s: %v", stream, err)
		}
	}
	return &md, nil
}

// parseMetadata reads the system properties of stream metadata, with the
// types and ranges EventStoreDB accepts: counts and seconds as JSON integers,
// $acl as "$userStreamAcl", "$systemStreamAcl" or an object of roles.
func parseMetadata(data []byte) (retention, error) {
	var props map[string]json.RawMessage
	if err := json.Unmarshal(data, &props); err != nil || props == nil {
		return retention{}, errors.New("stream metadata must be a JSON object")
	}
	var md retention
	for key, v := range props {
		var err error
		switch key {
		case "$tb":
			md.truncateBefore, err = metadataInt(v, 0)
		case "$maxCount":
			md.maxCount, err = metadataInt(v, 1)
		case "$maxAge":
			var secs uint64
			secs, err = metadataInt(v, 1)
			// Past this, a duration overflows; no retention is that long.
			md.maxAge = time.Duration(min(secs, math.MaxInt64/uint64(time.Second))) * time.Second
		case "$cacheControl":
			_, err = metadataInt(v, 1)
		case "$acl":
			err = checkACL(v)
		}
		if err != nil {
			return retention{}, fmt.Errorf("stream metadata %s: %w", key, err)
		}
	}
	return md, nil
}

// metadataInt reads a non-negative integer of at least lo, capped at
// MaxInt64, the largest of EventStoreDB's (signed) fields. The cap matters:
// the Go client decodes numbers as float64, so the $tb of a soft-deleted
// stream (MaxInt64) comes back as 2^63, and a client that writes back what
// it read sends that.
func metadataInt(v json.RawMessage, lo uint64) (uint64, error) {
	n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
	if err != nil || n < lo {
		return 0, fmt.Errorf("%s is not an integer of at least %d", v, lo)
	}
	return min(n, math.MaxInt64), nil
}

func checkACL(v json.RawMessage) error {
	var named string
	if json.Unmarshal(v, &named) == nil {
		if named != "$userStreamAcl" && named != "$systemStreamAcl" {
			return fmt.Errorf("%q is neither $userStreamAcl nor $systemStreamAcl", named)
		}
		return nil
	}
	var roles map[string]json.RawMessage
	if err := json.Unmarshal(v, &roles); err != nil || roles == nil {
		return errors.New("must be a string or an object of roles")
	}
	for key, r := range roles {
		switch key {
		case "$r", "$w", "$d", "$mr", "$mw":
		default:
			return fmt.Errorf("unknown role key %q", key)
		}
		var one string
		var many []string
		if json.Unmarshal(r, &one) != nil && json.Unmarshal(r, &many) != nil {
			return fmt.Errorf("%s: roles must be a string or an array of strings", key)
		}
	}
	return nil
}

// withTruncateBefore is raw metadata with $tb set to tb, its other properties
// kept (re-encoded, in key order).
func withTruncateBefore(raw []byte, tb uint64) []byte {
	props := map[string]json.RawMessage{}
	_ = json.Unmarshal(raw, &props) // raw was checked on its way in; {} otherwise
	if props == nil {
		props = map[string]json.RawMessage{}
	}
	props["$tb"] = strconv.AppendUint(nil, tb, 10)
	out, _ := json.Marshal(props) // raw messages of valid JSON cannot fail to encode
	return out
}

// softDeleteMetadata is what a soft delete writes, in place of the stream's
// metadata, as EventStoreDB does.
var softDeleteMetadata = withTruncateBefore(nil, softDeletedTB)

func (m *streamMeta) setRetention(md retention) {
	m.truncateBefore, m.maxCount, m.maxAge = md.truncateBefore, md.maxCount, md.maxAge
}

// firstKept is the oldest revision that $tb and $maxCount leave readable.
func (m streamMeta) firstKept() uint64 {
	first := m.truncateBefore
	if m.maxCount > 0 && m.next > m.maxCount {
		first = max(first, m.next-m.maxCount)
	}
	return first
}

// expired reports whether $maxAge retires e at now. EventStoreDB keeps an
// event created at or after now - maxAge. A tombstone never expires.
func (m streamMeta) expired(e *entry, now time.Time) (bool, error) {
	if m.maxAge == 0 {
		return false, nil
	}
	rec, err := e.record()
	if err != nil {
		return false, err
	}
	if rec.StreamRevision == tombstoneRevision {
		return false, nil
	}
	ticks, err := strconv.ParseInt(rec.GetMetadata()[metaCreated], 10, 64)
	if err != nil {
		return false, fmt.Errorf("event at position %d: bad created time: %w", e.pos, err)
	}
	return time.Unix(0, ticks*100).Before(now.Add(-m.maxAge)), nil
}

// unexpired wraps fn so that it sees only the events $maxAge keeps at now.
func (m streamMeta) unexpired(now time.Time, fn visit) visit {
	if m.maxAge == 0 {
		return fn
	}
	return func(e *entry) (bool, error) {
		gone, err := m.expired(e, now)
		if err != nil || gone {
			return err == nil, err
		}
		return fn(e)
	}
}

// readView is a stream's committed state as readers apply it. A metadata
// stream shows only its latest event (EventStoreDB gives metadata streams
// $maxCount 1) and is deleted with its stream's tombstone.
func readView(r pebble.Reader, name string) (streamMeta, error) {
	m, err := readMeta(r, name)
	if err != nil {
		return m, err
	}
	orig, ok := originalOf(name)
	if !ok {
		return m, nil
	}
	om, err := readMeta(r, orig)
	if err != nil {
		return m, err
	}
	m.setRetention(retention{maxCount: 1})
	m.tombstoned = om.tombstoned
	return m, nil
}

// liveRetention is the live filter of a stream subscription: it applies the
// stream's metadata, following the metadata events that the feed carries too.
type liveRetention struct {
	stream string
	meta   streamMeta
	next   uint64 // next revision to deliver: catch-up's, or a start past the end
}

// observe takes in a published group before its entries are filtered: the
// stream's newest revision (for $maxCount) and its newest metadata.
func (r *liveRetention) observe(entries []*entry) {
	for _, e := range entries {
		rec := e.rec // live entries are always decoded
		// Compared as bytes: every stream subscriber looks at every entry.
		switch name := rec.GetStreamIdentifier().GetStreamName(); {
		case string(name) == r.stream && rec.StreamRevision != tombstoneRevision:
			r.meta.next = rec.StreamRevision + 1
		case len(name) == len(metastreamPrefix)+len(r.stream) &&
			string(name[:len(metastreamPrefix)]) == metastreamPrefix && string(name[len(metastreamPrefix):]) == r.stream:
			if md, err := parseMetadata(rec.GetData()); err == nil { // checked when appended
				r.meta.setRetention(md)
			}
		}
	}
}

// keeps reports whether a live entry is to be delivered.
func (r *liveRetention) keeps(e *entry, now time.Time) (bool, error) {
	if string(e.rec.GetStreamIdentifier().GetStreamName()) != r.stream || e.rec.StreamRevision < max(r.next, r.meta.firstKept()) {
		return false, nil
	}
	gone, err := r.meta.expired(e, now)
	return !gone, err
}

// writeMetadata appends a $metadata event to stream's metadata stream, in
// the group being built.
func (q *sequencer) writeMetadata(stream string, data []byte) {
	name := metastreamOf(stream)
	rec := newRecord(name, newEventID(), eventTypeMetadata, contentTypeJSON, nil, data)
	q.writeEvents(&op{stream: name, events: []*record{rec}}, q.touch(name))
}

// applyMetadata makes an append of metadata (o, to "$$stream") take effect on
// stream. New metadata for a soft-deleted stream does not bring its retired
// events back: EventStoreDB follows it with a copy whose $tb is the end of
// the stream.
func (q *sequencer) applyMetadata(o *op) {
	stream, _ := originalOf(o.stream)
	st := q.touch(stream)
	wasDeleted := st.meta.softDeleted()
	st.meta.setRetention(*o.retention)
	if wasDeleted {
		st.meta.truncateBefore = st.meta.next
		q.writeMetadata(stream, withTruncateBefore(o.events[len(o.events)-1].GetData(), st.meta.next))
	}
	q.batch.Set(metaKey(stream), st.meta.encode(), nil)
}

// latestMetadata returns the stream's committed metadata (nil if none). It
// reads what is committed, so a group with writes to the metadata stream
// pending is committed first (soft-deleted streams are rare; this keeps
// them simple). The metadata stream
// must not have writes pending in the group, so a pending group is
// committed first (soft-deleted streams are rare; this keeps them simple).
func (q *sequencer) latestMetadata(stream string) ([]byte, error) {
	name := metastreamOf(stream)
	if _, dirty := q.undo[name]; dirty {
		q.flush()
	}
	var raw []byte
	err := scanStream(q.db, name, 0, math.MaxUint64, true, func(e *entry) (bool, error) {
		rec, err := e.record()
		if err != nil {
			return false, err
		}
		raw = rec.GetData()
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read metadata of %q: %w", stream, err)
	}
	return raw, nil
}

// recreating reports whether o appends to a soft-deleted stream, and if so
// returns the stream's latest metadata, which the append rewrites.
func (q *sequencer) recreating(o *op) (bool, []byte, error) {
	if o.kind != opAppend || len(o.events) == 0 {
		return false, nil, nil
	}
	st, err := q.state(o.stream)
	if err != nil || st == nil || !st.meta.softDeleted() {
		return false, nil, err
	}
	raw, err := q.latestMetadata(o.stream)
	return err == nil, raw, err
}
