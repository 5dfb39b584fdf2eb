package saga

import (
	"container/list"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// watermark tells how far the log is done while lanes finish events out of
// log order: its position is that of the last event such that it and every
// event before it have finished. Only the unfinished events are kept (with
// the position dispatched just before each), so a lane stalled on one event
// costs one entry, however far the other lanes get.
type watermark struct {
	mu      sync.Mutex
	pending list.List // of *inFlight, unfinished, in log order
	// last is the position of the last event dispatched, or the last point
	// the subscription reported scanning past without a match.
	last esdb.Position
}

type inFlight struct {
	before     esdb.Position // position dispatched just before this event
	recordedAt time.Time
	lane       int
}

// from starts the watermark at a checkpoint: everything up to p is done.
func (w *watermark) from(p esdb.Position) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last = p
}

// dispatch records an event as unfinished; the caller finishes it with the
// returned element.
func (w *watermark) dispatch(p esdb.Position, recordedAt time.Time, lane int) *list.Element {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.pending.PushBack(&inFlight{before: w.last, recordedAt: recordedAt, lane: lane})
	w.last = p
	return e
}

// pass records that the log holds nothing of interest up to p. It counts
// only once every event dispatched before it has finished.
func (w *watermark) pass(p esdb.Position) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if after(p, w.last) {
		w.last = p
	}
}

// finish records that the event of e is done.
func (w *watermark) finish(e *list.Element) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending.Remove(e)
}

// position is the watermark: the resume point, exclusive.
func (w *watermark) position() esdb.Position {
	w.mu.Lock()
	defer w.mu.Unlock()
	if f := w.pending.Front(); f != nil {
		return f.Value.(*inFlight).before
	}
	return w.last
}

// dispatched is the position of the last event dispatched (or passed):
// after a resubscription from the watermark, events up to it are already in
// the lanes.
func (w *watermark) dispatched() esdb.Position {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// unfinished counts the events dispatched and not finished.
func (w *watermark) unfinished() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending.Len()
}

// lag is the age of the oldest unfinished event outside the lanes skip
// names (nil: none); 0 with none.
func (w *watermark) lag(skip func(lane int) bool) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	for e := w.pending.Front(); e != nil; e = e.Next() {
		if f := e.Value.(*inFlight); skip == nil || !skip(f.lane) {
			return time.Since(f.recordedAt)
		}
	}
	return 0
}

// after reports whether a comes after b in the log.
func after(a, b esdb.Position) bool {
	return a.Commit > b.Commit || (a.Commit == b.Commit && a.Prepare > b.Prepare)
}
