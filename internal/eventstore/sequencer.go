package eventstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

type opKind int

const (
	opAppend opKind = iota
	opDelete
	opTombstone
	opScavenge
)

// op is one write waiting for the sequencer.
type op struct {
	kind      opKind
	stream    string
	expect    expectation
	events    []*record  // appends: id, metadata and data set; the sequencer fills in the rest
	retention *retention // appends to "$$stream": what they set (see metadata.go)
	scavenge  *scavengeSlice
	done      chan result
}

// result answers an op once its group is durable.
type result struct {
	err      error       // errStreamDeleted or a storage failure
	verdict  verdictKind // verdictWrite on success, verdictWrong on a conflict
	current  uint64      // the stream's last revision (after the write on success)
	noStream bool        // the stream has no last revision
	pos      uint64      // position of the last event written (or matched, on a retry)
}

var errClosed = errors.New("event store is shutting down")

// maxGroupBytes bounds one group commit so a burst of large appends cannot
// build an unbounded batch (and an unbounded fan-out to subscribers).
const maxGroupBytes = 16 << 20

// streamState is the sequencer's view of a stream. lastIDs/lastPos remember the
// newest append so a retried expected-revision-Any append is recognised
// (EventStoreDB also treats Any idempotence as best effort: here it is
// forgotten when the stream leaves the cache).
type streamState struct {
	meta    streamMeta
	lastIDs [][]byte
	lastPos uint64
}

// sequencer is the single writer: it owns positions, revisions and stream
// state, and commits waiting ops together with one fsync.
type sequencer struct {
	db      *pebble.DB
	log     *slog.Logger
	metrics *metrics
	publish func(entries []*entry, head uint64)
	now     func() time.Time

	ops     chan *op
	quit    chan struct{}
	stopped chan struct{}

	head    uint64
	streams *streamCache

	// Group commit waits for company. When the last group held several
	// ops, writers are concurrent, and holding the next group open for
	// half a commit's time lets more of them share its fsync (at 64
	// writers, ~16 appends per fsync instead of ~10, and the CPU the
	// saved fsyncs cost goes to appends). A lone writer never waits.
	// PostgreSQL's commit_delay and commit_siblings, with the delay
	// following the disk.
	lastGroup  int
	lastCommit time.Duration
	groups     atomic.Uint64 // committed groups and the ops they answered, for benchmarks
	grouped    atomic.Uint64

	// The group being built.
	batch    *pebble.Batch
	acks     []ack
	entries  []*entry
	undo     map[string]*streamState // state of touched streams before the group; nil = absent
	undoHead uint64
}

type ack struct {
	op  *op
	res result
}

func newSequencer(db *pebble.DB, log *slog.Logger, m *metrics, cacheBytes int, publish func([]*entry, uint64)) (*sequencer, error) {
	head, err := loadHead(db)
	if err != nil {
		return nil, err
	}
	q := &sequencer{
		db: db, log: log, metrics: m, publish: publish, now: time.Now,
		ops:     make(chan *op, 1024),
		quit:    make(chan struct{}),
		stopped: make(chan struct{}),
		head:    head,
		streams: newStreamCache(cacheBytes),
		undo:    map[string]*streamState{},
	}
	q.batch = db.NewBatch()
	q.undoHead = head
	return q, nil
}

// submit queues o and waits for its durable result.
func (q *sequencer) submit(ctx context.Context, o *op) (result, error) {
	o.done = make(chan result, 1)
	select {
	case q.ops <- o:
	case <-ctx.Done():
		return result{}, ctx.Err()
	case <-q.quit:
		return result{}, errClosed
	}
	select {
	case r := <-o.done:
		return r, nil
	case <-ctx.Done():
		return result{}, ctx.Err()
	case <-q.stopped:
		return result{}, errClosed
	}
}

func (q *sequencer) run() {
	defer close(q.stopped)
	for {
		select {
		case <-q.quit:
			return
		case o := <-q.ops:
			q.apply(o)
			q.gather()
			if q.lastGroup > 1 {
				q.linger(min(q.lastCommit/2, maxLinger))
			}
			q.lastGroup = len(q.acks)
			q.flush()
		}
	}
}

// maxLinger bounds the wait for company, so one slow fsync does not slow
// the groups after it.
const maxLinger = time.Millisecond

// gather adds the ops already waiting to the group, while it has room.
func (q *sequencer) gather() {
	for q.batch.Len() < maxGroupBytes {
		select {
		case o := <-q.ops:
			q.apply(o)
		default:
			return
		}
	}
}

// linger adds the ops arriving within d to the group, while it has room.
func (q *sequencer) linger(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for q.batch.Len() < maxGroupBytes {
		select {
		case o := <-q.ops:
			q.apply(o)
		case <-t.C:
			return
		}
	}
}

func (q *sequencer) stop() {
	close(q.quit)
	<-q.stopped
}

func (q *sequencer) apply(o *op) {
	// Before any state is loaded for the op: this may commit the pending
	// group, and a commit may evict.
	recreate, recreateMeta, err := q.recreating(o)
	if err != nil {
		q.ack(o, result{err: err})
		return
	}
	st, partner, err := q.load(o, recreate)
	if err != nil {
		q.ack(o, result{err: err})
		return
	}
	if o.kind == opScavenge {
		q.removeRetired(o, st, partner)
		q.ack(o, result{})
		return
	}
	if _, ok := originalOf(o.stream); ok && partner != nil && partner.meta.tombstoned {
		q.ack(o, result{err: errStreamDeleted}) // a tombstone deletes the metadata too
		return
	}
	var meta streamMeta
	if st != nil {
		meta = st.meta
	}
	verdict, retryFrom := judge(meta, o.expect)
	if verdict == verdictRetry && o.kind == opAppend {
		if _, dirty := q.undo[o.stream]; dirty {
			// The retry check reads committed events; make this stream's pending ones committed.
			q.flush()
		}
		q.ack(o, q.retry(o, meta, retryFrom))
		return
	}
	switch verdict {
	case verdictDeleted:
		q.ack(o, result{err: errStreamDeleted})
		return
	case verdictWrong, verdictRetry:
		q.ack(o, conflict(meta))
		return
	}
	if o.kind == opDelete && meta.next == 0 && partner == nil {
		// EventStoreDB's writer refuses to soft-delete a stream with
		// neither events nor metadata, whatever the expectation.
		q.ack(o, conflict(meta))
		return
	}
	if o.kind == opAppend && o.expect.kind == expectAny && st != nil && len(o.events) > 0 && sameIDs(st.lastIDs, o.events) {
		q.ack(o, result{current: meta.lastRevision(), pos: st.lastPos})
		return
	}
	st = q.touch(o.stream)
	switch o.kind {
	case opAppend:
		// An append ends a soft delete, as in EventStoreDB: the stream
		// starts again at this append, and its metadata says so.
		undelete := recreate && st.meta.softDeleted()
		if undelete {
			st.meta.truncateBefore = st.meta.next
		}
		res := q.writeEvents(o, st)
		if o.retention != nil {
			q.applyMetadata(o)
		}
		if undelete {
			q.writeMetadata(o.stream, withTruncateBefore(recreateMeta, st.meta.truncateBefore))
		}
		q.ack(o, res)
	case opDelete:
		// A soft delete is metadata, as in EventStoreDB: $tb at its maximum,
		// in place of whatever metadata the stream had.
		st.meta.setRetention(retention{truncateBefore: softDeletedTB})
		q.batch.Set(metaKey(o.stream), st.meta.encode(), nil)
		q.writeMetadata(o.stream, softDeleteMetadata)
		q.ack(o, result{pos: q.head})
	case opTombstone:
		q.ack(o, q.writeTombstone(o, st))
	}
}

// state returns the stream's state, reading it from storage on a cache
// miss; nil means the stream was never written. Storage holds every
// committed state and the cache every pending one (see streamCache), and
// this goroutine is the only writer, so a miss reads the current state.
func (q *sequencer) state(stream string) (*streamState, error) {
	if st, ok := q.streams.get(stream); ok {
		q.metrics.cache.WithLabelValues("hit").Inc()
		return st, nil
	}
	q.metrics.cache.WithLabelValues("miss").Inc()
	m, err := readMeta(q.db, stream)
	if err != nil || m == (streamMeta{}) {
		return nil, err
	}
	st := &streamState{meta: m}
	q.streams.put(stream, st)
	return st, nil
}

// load brings into the cache the states o may touch, and returns them: its
// stream's, and its partner's (the stream a metadata stream describes, or
// the metadata stream of a stream that o deletes or recreates) when o needs
// it; touch then finds them, since nothing is evicted before the group
// commits. A plain append leaves the metadata stream alone: looking it up
// would cost every append a read when the stream has no metadata.
func (q *sequencer) load(o *op, recreate bool) (st, partner *streamState, err error) {
	if st, err = q.state(o.stream); err != nil {
		return nil, nil, err
	}
	other, isMeta := originalOf(o.stream)
	if !isMeta {
		if o.kind != opDelete && !recreate {
			return st, nil, nil
		}
		other = metastreamOf(o.stream)
	}
	if partner, err = q.state(other); err != nil {
		return nil, nil, err
	}
	return st, partner, nil
}

func conflict(m streamMeta) result {
	if !m.exists() {
		return result{verdict: verdictWrong, noStream: true}
	}
	return result{verdict: verdictWrong, current: m.lastRevision()}
}

// touch returns the stream's state for writing, remembering its prior value so
// a failed commit can be undone. The op must have loaded the state (see
// load): an evicted stream's state is not in the cache, and touch would
// start it afresh.
func (q *sequencer) touch(stream string) *streamState {
	st, _ := q.streams.get(stream)
	if _, seen := q.undo[stream]; !seen {
		if st == nil {
			q.undo[stream] = nil
		} else {
			prior := *st
			q.undo[stream] = &prior
		}
	}
	if st == nil {
		st = &streamState{}
		q.streams.put(stream, st)
	}
	return st
}

func (q *sequencer) writeEvents(o *op, st *streamState) result {
	created := strconv.FormatInt(q.now().UnixNano()/100, 10)
	for i, rec := range o.events {
		rec.StreamRevision = st.meta.next + uint64(i)
		rec.Metadata[metaCreated] = created
	}
	q.appendLog(o.events)
	ids := make([][]byte, len(o.events))
	for i, rec := range o.events {
		ids[i] = eventID(rec)
		q.batch.Set(indexKey(o.stream, rec.StreamRevision), binary.BigEndian.AppendUint64(nil, rec.CommitPosition), nil)
	}
	st.meta.next += uint64(len(o.events))
	q.batch.Set(metaKey(o.stream), st.meta.encode(), nil)
	if len(o.events) > 0 {
		st.lastIDs, st.lastPos = ids, q.head
	}
	if !st.meta.exists() {
		return result{noStream: true, pos: q.head}
	}
	return result{current: st.meta.lastRevision(), pos: q.head}
}

func (q *sequencer) writeTombstone(o *op, st *streamState) result {
	rec := newRecord(o.stream, newEventID(), eventTypeStreamDeleted, contentTypeBinary, nil, nil)
	rec.StreamRevision = tombstoneRevision
	rec.Metadata[metaCreated] = strconv.FormatInt(q.now().UnixNano()/100, 10)
	q.appendLog([]*record{rec})
	// Indexed with the stream, so a stream subscription catching up finds
	// it: one that joins the live feed just after the tombstone was
	// published would otherwise never see it.
	q.batch.Set(indexKey(o.stream, tombstoneRevision), binary.BigEndian.AppendUint64(nil, q.head), nil)
	st.meta.tombstoned = true
	q.batch.Set(metaKey(o.stream), st.meta.encode(), nil)
	return result{pos: q.head}
}

// appendLog gives recs the next positions and adds them to the log.
func (q *sequencer) appendLog(recs []*record) {
	for _, rec := range recs {
		q.head++
		rec.CommitPosition, rec.PreparePosition = q.head, q.head
		e := &entry{pos: q.head, raw: encodeRecord(rec), rec: rec}
		q.batch.Set(logKey(e.pos), e.raw, nil)
		q.entries = append(q.entries, e)
	}
}

// retry applies EventStoreDB's idempotence rule to an append whose expected
// revision is behind the stream: if every event is already committed, in
// order, from retryFrom on, the append succeeded before and is answered again
// without writing; anything else is a conflict.
func (q *sequencer) retry(o *op, m streamMeta, retryFrom uint64) result {
	n := uint64(len(o.events))
	if n == 0 || retryFrom+n > m.next {
		return conflict(m)
	}
	var i int
	var pos uint64
	match := true
	err := scanStream(q.db, o.stream, retryFrom, retryFrom+n-1, false, func(e *entry) (bool, error) {
		rec, err := e.record()
		if err != nil {
			return false, err
		}
		pos, match = e.pos, bytes.Equal(eventID(rec), eventID(o.events[i]))
		i++
		return match, nil
	})
	if err != nil {
		return result{err: fmt.Errorf("check retried append to %q: %w", o.stream, err)}
	}
	if !match {
		return conflict(m)
	}
	if uint64(i) != n {
		return conflict(m)
	}
	return result{current: retryFrom + n - 1, pos: pos}
}

func sameIDs(ids [][]byte, events []*record) bool {
	if len(ids) != len(events) {
		return false
	}
	for i, rec := range events {
		if !bytes.Equal(ids[i], eventID(rec)) {
			return false
		}
	}
	return true
}

func (q *sequencer) ack(o *op, r result) {
	q.acks = append(q.acks, ack{op: o, res: r})
}

// flush makes the group durable, publishes its events, then answers its ops.
func (q *sequencer) flush() {
	if !q.batch.Empty() {
		start := time.Now()
		err := q.batch.Commit(pebble.Sync)
		q.lastCommit = time.Since(start)
		q.groups.Add(1)
		q.grouped.Add(uint64(len(q.acks)))
		q.metrics.fsync.Observe(q.lastCommit.Seconds())
		q.metrics.groupOps.Observe(float64(len(q.acks)))
		q.metrics.groupBytes.Observe(float64(q.batch.Len()))
		if err != nil {
			q.log.Error("group commit failed", "err", err, "ops", len(q.acks))
			q.rollback()
			err = fmt.Errorf("commit events: %w", err)
			for i := range q.acks {
				q.acks[i].res = result{err: err}
			}
		} else {
			q.publish(q.entries, q.head)
		}
		// The committed batch is left to the garbage collector, never Closed:
		// Close recycles it through pebble's process-wide pool, and with
		// several stores in one process (tests, tools) a recycled batch was
		// seen handed back while still in use — a nil-DB panic on commit
		// and lost acknowledged writes. One allocation per group is cheap.
		q.batch = q.db.NewBatch()
	}
	for _, a := range q.acks {
		a.op.done <- a.res
	}
	q.acks, q.entries = q.acks[:0], nil
	for name := range q.undo {
		q.streams.charge(name)
	}
	clear(q.undo)
	q.undoHead = q.head
	// Only now, with nothing pending, may states leave the cache.
	q.streams.trim()
}

func (q *sequencer) rollback() {
	for name, prior := range q.undo {
		if prior == nil {
			q.streams.remove(name)
		} else {
			q.streams.put(name, prior)
		}
	}
	q.head = q.undoHead
}
