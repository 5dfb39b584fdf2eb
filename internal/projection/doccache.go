package projection

import "sync"

// docCache keeps a view's documents as they were last written, so that the
// next event of a stream folds onto its document without reading it back
// from the view store: at a steady load an order is written when placed
// and again when decided a few milliseconds later, and a customer with
// every reservation.
//
// A cached document is used only for the event right after it: when its
// revision is the one before the first event of the document in the batch.
// Every event of a stream advances its document's revision (fold reflects
// even the events it shows nothing of), so the cached document is then
// exactly the fold of the stream up to that event, whoever else may have
// written the view since — another projector instance, a rebuild — and
// whether or not its own write won the store's revision guard. Anything
// else (an event missed, a dead-lettered one, a document written by someone
// else meanwhile) is a miss and a read, never a wrong fold. Folds replace a
// document's slices rather than change their elements, so a cached
// document shares them safely with the batches folded from it.
//
// The bound is in estimated bytes and the eviction generational: documents
// go into the young map, and when it holds half the bound the old map is
// dropped and the young one becomes old; a hit in the old map moves the
// document back to the young one. Lookups are O(1) and no list is kept.
type docCache[D any] struct {
	mu         sync.Mutex
	young, old map[string]cached[D]
	youngBytes int
	limit      int // of each generation: half the bound
	size       func(D) int
	revision   func(D) uint64
}

type cached[D any] struct {
	doc  D
	size int
}

// newDocCache returns a cache bounded by about bytes, or nil (a cache that
// keeps nothing) when bytes is not positive.
func newDocCache[D any](k kind[D], bytes int) *docCache[D] {
	if bytes <= 0 {
		return nil
	}
	return &docCache[D]{young: map[string]cached[D]{}, old: map[string]cached[D]{}, limit: bytes / 2, size: k.size, revision: k.revision}
}

// before returns the cached document of key if it reflects exactly the
// revision before rev.
func (c *docCache[D]) before(key string, rev uint64) (D, bool) {
	var zero D
	if c == nil || rev == 0 {
		return zero, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.young[key]
	if !ok {
		if e, ok = c.old[key]; ok {
			delete(c.old, key)
			c.putLocked(key, e)
		}
	}
	if !ok || c.revision(e.doc) != rev-1 {
		return zero, false
	}
	return e.doc, true
}

// put records docs as written.
func (c *docCache[D]) put(keyOf func(D) string, docs []D) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range docs {
		key := keyOf(d)
		delete(c.old, key)
		c.putLocked(key, cached[D]{doc: d, size: c.size(d) + len(key) + 64})
	}
}

func (c *docCache[D]) putLocked(key string, e cached[D]) {
	if prev, ok := c.young[key]; ok {
		c.youngBytes -= prev.size
	}
	c.young[key] = e
	c.youngBytes += e.size
	if c.youngBytes >= c.limit {
		c.old, c.young, c.youngBytes = c.young, map[string]cached[D]{}, 0
	}
}
