package eventstore

import (
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// durable holds what plain reads see: a Pebble snapshot taken by the
// sequencer right after a group's synced commit returned, and before it starts
// the next one. Pebble makes a batch readable before its WAL sync completes
// (commit.go says so), so a snapshot of the live DB can hold a group that a
// crash would take back; this one never does, because the sequencer is the
// only writer and nothing is visible past the group it has just synced.
type durable struct {
	mu     sync.Mutex
	cur    *durableView
	closed bool
}

// durableView is one such snapshot, closed when the last reader releases it.
type durableView struct {
	snap *pebble.Snapshot
	refs int // guarded by durable.mu; durable holds one while the view is current
}

func newDurable(db *pebble.DB) *durable {
	return &durable{cur: &durableView{snap: db.NewSnapshot(), refs: 1}}
}

// advance replaces the current view with a snapshot of db as it is now. Only
// the sequencer calls it, after a synced commit and before the next.
func (d *durable) advance(db *pebble.DB) {
	next := &durableView{snap: db.NewSnapshot(), refs: 1}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		_ = next.snap.Close()
		return
	}
	prev := d.cur
	d.cur = next
	d.mu.Unlock()
	d.release(prev)
}

// acquire returns the current view; the caller must release it. After close
// it returns errClosed.
func (d *durable) acquire() (*durableView, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errClosed
	}
	d.cur.refs++
	return d.cur, nil
}

// read runs fn on the current view.
func (d *durable) read(fn func(pebble.Reader) error) error {
	v, err := d.acquire()
	if err != nil {
		return err
	}
	defer d.release(v)
	return fn(v.snap)
}

func (d *durable) release(v *durableView) {
	d.mu.Lock()
	v.refs--
	last := v.refs == 0
	d.mu.Unlock()
	if last {
		_ = v.snap.Close()
	}
}

// close drops the current view; Pebble refuses to close with a snapshot open,
// so readers must be done (the gRPC server has stopped) before the DB closes.
func (d *durable) close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	v := d.cur
	d.mu.Unlock()
	d.release(v)
}
