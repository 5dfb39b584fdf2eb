package command

import (
	"container/list"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/domain"
)

// entry is one aggregate as this process last saw it: its state folded up
// to revision rev, and where each command ID it recorded sits in its stream.
//
// mu serialises the commands on the aggregate within the process, so they
// never conflict with each other; across processes the expected revision
// of each append still decides. Everything but the fields marked otherwise
// is guarded by mu.
type entry struct {
	stream string
	mu     sync.Mutex

	loaded      bool
	fresh       func() aggregate // the aggregate with no events
	snapshotted bool
	agg         aggregate
	rev         int64 // revision of the last event folded; -1 while the stream has none
	pos         uint64
	lastID      uuid.UUID // the event at rev, to tell a recreated stream from this one
	// ids maps a hash of each command ID in the stream to the revision of
	// its last event. A hash, not the ID, because a customer with a million
	// orders holds a million of them; a hit is confirmed by reading that one
	// event, so a collision costs a scan, never a wrong answer.
	ids  *cmdIndex
	snap *pageTracker // nil when the aggregate is not snapshotted

	// profile is set, once, when a customer is seen registered: what
	// PlaceOrder needs of it, which never changes afterwards.
	profile atomic.Pointer[domain.Customer]

	// Guarded by the cache's mu.
	refs int
	size int64
	elem *list.Element
}

// Estimated bytes of an entry: a fixed part, its command index (runs, and
// map slots of the entries since the last seal) and its credit book (see
// domain.Customer.CreditBytes). Estimates, not measures: they keep the
// cache's footprint within a small factor of its bound, which is what the
// bound is for.
const (
	entryBytes      = 1 << 10
	indexEntryBytes = 16 + 16 // key and value, map slot overhead
)

func (e *entry) estimate() int64 {
	n := int64(entryBytes) + e.ids.bytes()
	if c, ok := e.agg.(*domain.Customer); ok {
		n += c.CreditBytes()
	}
	return n
}

// aggCache holds entries, least recently used first out, within maxBytes. An
// entry in use is never evicted: a second entry for the same stream would let
// two commands of this process race on it.
type aggCache struct {
	maxBytes int64
	metrics  *metrics
	log      *slog.Logger
	// warnedOversize is set once an entry alone has been seen over maxBytes.
	warnedOversize atomic.Bool

	mu      sync.Mutex
	entries map[string]*entry
	lru     list.List // front: most recently used
	bytes   int64
}

func newAggCache(maxBytes int64, m *metrics, log *slog.Logger) *aggCache {
	return &aggCache{maxBytes: maxBytes, metrics: m, log: log, entries: map[string]*entry{}}
}

// acquire returns stream's entry, locked for the caller, who must hand it
// back with release.
func (c *aggCache) acquire(stream string) *entry {
	c.mu.Lock()
	e, ok := c.entries[stream]
	if !ok {
		e = &entry{stream: stream, rev: -1}
		e.elem = c.lru.PushFront(e)
		c.entries[stream] = e
		c.metrics.cacheMisses.Inc()
	} else {
		c.lru.MoveToFront(e.elem)
		c.metrics.cacheHits.Inc()
	}
	e.refs++
	c.mu.Unlock()
	e.mu.Lock()
	return e
}

// peek returns stream's entry if cached, without locking it.
func (c *aggCache) peek(stream string) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[stream]
}

// release unlocks e, records its new size, and evicts the least recently
// used idle entries while the cache is over its bound. An entry that failed
// to load is dropped at once. e itself is kept even when it alone is over
// the bound: evicting it would make every command on it a reload, the cost
// the cache is there to avoid (the bound is then exceeded by that entry, and
// a warning says so once).
func (c *aggCache) release(e *entry) {
	var size int64
	if e.loaded {
		size = e.estimate()
	}
	loaded := e.loaded
	e.mu.Unlock()

	if size > c.maxBytes && c.warnedOversize.CompareAndSwap(false, true) {
		c.log.Warn("one aggregate alone is over the cache's bound; it stays cached, over the bound, until another is used",
			"stream", e.stream, "estimated_bytes", size, "cache_bytes", c.maxBytes)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e.refs--
	c.bytes += size - e.size
	e.size = size
	if !loaded && e.refs == 0 {
		c.remove(e)
	}
	for el := c.lru.Back(); c.bytes > c.maxBytes && el != nil; {
		victim := el.Value.(*entry)
		el = el.Prev()
		if victim.refs == 0 && victim != e {
			c.remove(victim)
			c.metrics.cacheEvictions.Inc()
		}
	}
	c.metrics.cacheBytes.Set(float64(c.bytes))
}

// remove runs with c.mu held.
func (c *aggCache) remove(e *entry) {
	if c.entries[e.stream] != e {
		return
	}
	delete(c.entries, e.stream)
	c.lru.Remove(e.elem)
	c.bytes -= e.size
}
