package projection

import (
	"fmt"
	"testing"

	"github.com/orderly/orderly/internal/views"
)

// The cache answers only for the next revision, and stays within its bound:
// what was put long ago is gone, what was just put or just used is kept.
func TestDocCacheBound(t *testing.T) {
	const bound = 64 << 10
	c := newDocCache(orders, bound)
	doc := func(i int, rev uint64) views.OrderDoc {
		return views.OrderDoc{OrderID: fmt.Sprintf("o%06d", i), Revision: rev}
	}
	c.put(orders.key, []views.OrderDoc{doc(0, 3)})
	for _, rev := range []uint64{0, 1, 2, 3, 5} {
		if _, ok := c.before("o000000", rev); ok {
			t.Errorf("cached revision 3 answered for revision %d", rev)
		}
	}
	if d, ok := c.before("o000000", 4); !ok || d.Revision != 3 {
		t.Errorf("before(4) = %+v, %v; want the cached revision 3", d, ok)
	}
	size := orders.size(doc(0, 0)) + len("o000000") + 64
	for i := 1; i < 4*bound/size; i++ {
		c.put(orders.key, []views.OrderDoc{doc(i, 0)})
		if i%16 == 0 {
			c.before("o000000", 4) // used often: kept
		}
	}
	if _, ok := c.before("o000000", 4); !ok {
		t.Error("a document in use was evicted")
	}
	if _, ok := c.before("o000001", 1); ok {
		t.Error("the oldest unused document is still cached")
	}
	if _, ok := c.before(fmt.Sprintf("o%06d", 4*bound/size-1), 1); !ok {
		t.Error("the newest document is not cached")
	}
	held := 0
	for _, m := range []map[string]cached[views.OrderDoc]{c.young, c.old} {
		for _, e := range m {
			held += e.size
		}
	}
	if held > bound {
		t.Errorf("%d bytes held, bound %d", held, bound)
	}
	if newDocCache(orders, -1) != nil {
		t.Error("a negative bound made a cache")
	}
}
