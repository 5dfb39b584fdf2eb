package command

import (
	"container/list"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
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
	// lastMeta is the command of the event at rev (its ID, name and
	// fingerprint only): a resend of the command that last changed the
	// aggregate, as the saga sends when an event's delivery overtakes the
	// step it started, is answered without reading that event back.
	lastMeta eventcodec.Metadata
	// ids maps a hash of each command ID in the stream to the revision of
	// its last event. A hash, not the ID, because a customer with a million
	// orders holds a million of them; a hit is confirmed by reading that one
	// event, so a collision costs a scan, never a wrong answer.
	ids  *cmdIndex
	snap *pageTracker // nil when the aggregate is not snapshotted
	// lazy are the snapshot pages whose credit lines and index entries a
	// lazy load left in the store; nil when it left none (see pagekeys.go).
	lazy *lazyPages

	// profile is set, once, when a customer is seen registered: what
	// PlaceOrder needs of it, which never changes afterwards.
	profile atomic.Pointer[domain.Customer]

	// Guarded by the cache's mu.
	refs int
	size int64
	seg  *segment
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
	if e.lazy != nil {
		n += e.lazy.size()
	}
	return n
}

// settledShare is the part of the cache's bound that settled aggregates
// (see settled) may hold. At a steady load every order placed is touched
// two or three times within a second (placed, approved or rejected, a
// redelivery of that step) and seldom after; kept in one LRU with the
// customers, the orders of the last few minutes filled the bound (a quarter
// of a million at 256 MiB), and the live heap, and the GC's mark phases
// with it, grew for as long as the load ran. A 1/32 share keeps the orders
// of the last several seconds at 1,000 orders/s (at the default bound,
// 8 MiB at about 1 KiB an order), enough for the redeliveries and the
// cancellations that follow a decision soon; an older one reloads its few
// events.
const settledShare = 32

// settled reports whether the commands agg takes in a burst are behind it:
// an order the credit flow has decided. Such an entry is kept in the
// settled segment, out of the customers' way. Customers never settle: each
// order is a command on one.
func settled(agg aggregate) bool {
	o, ok := agg.(*domain.Order)
	return ok && o.Decided()
}

// aggCache holds entries within maxBytes in two segments, each least
// recently used first out: open entries, and settled ones within
// maxBytes/settledShare. Over the bound, settled entries go first, so the
// orders of a load never push a hot customer out. An entry in use is never
// evicted: a second entry for the same stream would let two commands of
// this process race on it.
type aggCache struct {
	maxBytes, settledMax int64
	metrics              *metrics
	log                  *slog.Logger
	// warnedOversize is set once an entry alone has been seen over maxBytes.
	warnedOversize atomic.Bool

	mu            sync.Mutex
	entries       map[string]*entry
	open, settled segment
}

// segment is one LRU list of entries and their bytes.
type segment struct {
	lru   list.List // front: most recently used
	bytes int64
}

func newAggCache(maxBytes int64, m *metrics, log *slog.Logger) *aggCache {
	return &aggCache{maxBytes: maxBytes, settledMax: maxBytes / settledShare, metrics: m, log: log, entries: map[string]*entry{}}
}

// acquire returns stream's entry, locked for the caller, who must hand it
// back with release.
func (c *aggCache) acquire(stream string) *entry {
	c.mu.Lock()
	e, ok := c.entries[stream]
	if !ok {
		e = &entry{stream: stream, rev: -1, seg: &c.open}
		e.elem = c.open.lru.PushFront(e)
		c.entries[stream] = e
		c.metrics.cacheMisses.Inc()
	} else {
		e.seg.lru.MoveToFront(e.elem)
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

// release unlocks e, records its new size and segment, and evicts the
// least recently used idle entries while a segment is over its share or the
// cache over its bound, settled ones first. An entry that failed to load is
// dropped at once. e itself is kept even when it alone is over the bound:
// evicting it would make every command on it a reload, the cost the cache
// is there to avoid (the bound is then exceeded by that entry, and a warning
// says so once).
func (c *aggCache) release(e *entry) {
	var size int64
	if e.loaded {
		size = e.estimate()
	}
	loaded, seg := e.loaded, &c.open
	if loaded && settled(e.agg) {
		seg = &c.settled
	}
	e.mu.Unlock()

	if size > c.maxBytes && c.warnedOversize.CompareAndSwap(false, true) {
		c.log.Warn("one aggregate alone is over the cache's bound; it stays cached, over the bound, until another is used",
			"stream", e.stream, "estimated_bytes", size, "cache_bytes", c.maxBytes)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e.refs--
	c.move(e, seg, size)
	if !loaded && e.refs == 0 {
		c.remove(e)
	}
	c.evict(&c.settled, func() bool { return c.settled.bytes > c.settledMax }, e)
	over := func() bool { return c.open.bytes+c.settled.bytes > c.maxBytes }
	c.evict(&c.settled, over, e)
	c.evict(&c.open, over, e)
	c.metrics.cacheBytes.Set(float64(c.open.bytes + c.settled.bytes))
}

// move puts e, with its new size, at the front of seg. It runs with c.mu
// held.
func (c *aggCache) move(e *entry, seg *segment, size int64) {
	e.seg.bytes -= e.size
	if e.seg != seg {
		e.seg.lru.Remove(e.elem)
		e.seg, e.elem = seg, seg.lru.PushFront(e)
	}
	e.size = size
	seg.bytes += size
}

// evict removes idle entries from the back of seg, except keep, while over
// says so. It runs with c.mu held.
func (c *aggCache) evict(seg *segment, over func() bool, keep *entry) {
	for el := seg.lru.Back(); over() && el != nil; {
		victim := el.Value.(*entry)
		el = el.Prev()
		if victim.refs == 0 && victim != keep {
			c.remove(victim)
			c.metrics.cacheEvictions.Inc()
		}
	}
}

// remove runs with c.mu held.
func (c *aggCache) remove(e *entry) {
	if c.entries[e.stream] != e {
		return
	}
	delete(c.entries, e.stream)
	e.seg.lru.Remove(e.elem)
	e.seg.bytes -= e.size
}
