package eventstore

import "container/list"

// streamCache holds the writer's state of recently written streams, bounded
// in bytes: the rest is read from storage on a miss. Only the sequencer
// uses it, and it evicts only after a group is committed (trim), so every
// state it drops is on disk and a miss reads exactly what was evicted; the
// states a pending group touched stay until then.
type streamCache struct {
	limit, used int
	byName      map[string]*list.Element // of *cachedStream
	lru         list.List                // front: most recently used
}

type cachedStream struct {
	name string
	st   *streamState
	cost int
}

// streamStateOverhead approximates what one cached stream costs besides its
// name and remembered IDs: the map slot, list element, cachedStream and
// streamState.
const streamStateOverhead = 200

func newStreamCache(limit int) *streamCache {
	return &streamCache{limit: limit, byName: map[string]*list.Element{}}
}

func (c *streamCache) get(name string) (*streamState, bool) {
	el, ok := c.byName[name]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(el)
	return el.Value.(*cachedStream).st, true
}

func (c *streamCache) put(name string, st *streamState) {
	if el, ok := c.byName[name]; ok {
		el.Value.(*cachedStream).st = st
		c.lru.MoveToFront(el)
		c.charge(name)
		return
	}
	c.byName[name] = c.lru.PushFront(&cachedStream{name: name, st: st})
	c.charge(name)
}

func (c *streamCache) remove(name string) {
	if el, ok := c.byName[name]; ok {
		c.used -= el.Value.(*cachedStream).cost
		c.lru.Remove(el)
		delete(c.byName, name)
	}
}

// charge recomputes what name costs, after its state changed.
func (c *streamCache) charge(name string) {
	el, ok := c.byName[name]
	if !ok {
		return
	}
	cs := el.Value.(*cachedStream)
	c.used -= cs.cost
	cs.cost = streamStateOverhead + len(name) + len(cs.st.lastIDs)*(16+24)
	c.used += cs.cost
}

// trim evicts the least recently used streams until the cache is within its
// limit. Only call it when no group is pending (see streamCache).
func (c *streamCache) trim() {
	for c.used > c.limit && c.lru.Len() > 0 {
		c.remove(c.lru.Back().Value.(*cachedStream).name)
	}
}
