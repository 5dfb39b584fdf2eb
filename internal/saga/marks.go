package saga

import (
	"container/list"
	"maps"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/lease"
)

// marks are the watermarks of the partitions this instance holds: each
// partition has its own checkpoint, saved under its lease, so that
// another instance can take one partition over from exactly where it was.
type marks struct {
	mu    sync.Mutex
	parts map[int]*mark
	// seen is the furthest position seen in the log, for Position while
	// nothing is held.
	seen esdb.Position
}

// mark is one held partition's watermark, the epoch of its lease and the
// position last saved.
type mark struct {
	wm    watermark
	epoch lease.Epoch
	saved esdb.Position
	// savedAt is when saved was last written (zero: never by this
	// instance).
	savedAt time.Time
}

// hold makes the held partitions those of held: a partition still held at
// the same epoch keeps its watermark (events in flight finish into it);
// one newly held starts at from[p]; one no longer held is dropped, its
// events in flight finishing into a watermark nobody saves.
func (m *marks) hold(held map[int]lease.Epoch, from map[int]esdb.Position) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make(map[int]*mark, len(held))
	for p, e := range held {
		if mk, ok := m.parts[p]; ok && mk.epoch == e {
			next[p] = mk
			continue
		}
		mk := &mark{epoch: e, saved: from[p]}
		mk.wm.from(from[p])
		next[p] = mk
	}
	m.parts = next
}

// of returns partition p's mark, or nil if p is not held.
func (m *marks) of(p int) *mark {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.parts[p]
}

// held returns the held partitions' marks.
func (m *marks) held() map[int]*mark {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.parts)
}

// dispatch records an event of partition mk as unfinished, and every other
// partition as having nothing at pos.
func (m *marks) dispatch(mk *mark, pos esdb.Position, recordedAt time.Time, lane int) *list.Element {
	e := mk.wm.dispatch(pos, recordedAt, lane)
	m.pass(pos)
	return e
}

// pass records that none of the held partitions has an event up to pos
// beyond those dispatched.
func (m *marks) pass(pos esdb.Position) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if after(pos, m.seen) {
		m.seen = pos
	}
	for _, mk := range m.parts {
		mk.wm.pass(pos)
	}
}

// position is the lowest watermark held: the point to subscribe from, and
// how far this instance has finished the log.
func (m *marks) position() esdb.Position {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.parts) == 0 {
		return m.seen
	}
	var low *esdb.Position
	for _, mk := range m.parts {
		if p := mk.wm.position(); low == nil || after(*low, p) {
			low = &p
		}
	}
	return *low
}

// unfinished counts the events dispatched and not finished.
func (m *marks) unfinished() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, mk := range m.parts {
		n += mk.wm.unfinished()
	}
	return n
}

// lag is the age of the oldest unfinished event outside the lanes skip
// names (nil: none); 0 with none.
func (m *marks) lag(skip func(lane int) bool) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	var d time.Duration
	for _, mk := range m.parts {
		d = max(d, mk.wm.lag(skip))
	}
	return d
}
