package views

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Notifier tells waiters in the same process when the live views' checkpoint
// rises, so a read-your-writes query wakes as soon as the projector commits
// instead of polling the store. The projector publishes each view's
// checkpoint after the batch that reached it is stored; the notifier's
// position is the lowest of them, like Reader.Checkpoint.
type Notifier struct {
	mu   sync.Mutex
	per  map[View]uint64
	sole map[View]bool
	pos  uint64
	wake chan struct{} // closed and replaced when pos rises, or a view stops being sole
}

// NewNotifier returns a notifier at position 0.
func NewNotifier() *Notifier {
	return &Notifier{per: map[View]uint64{}, sole: map[View]bool{}, wake: make(chan struct{})}
}

// Publish records that view v's live version has applied everything up to
// pos. Positions only rise: a lower one than already published is ignored.
func (n *Notifier) Publish(v View, pos uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if pos <= n.per[v] {
		return
	}
	n.per[v] = pos
	low := pos
	for _, w := range All() {
		low = min(low, n.per[w])
	}
	if low > n.pos {
		n.pos = low
		n.signal()
	}
}

// SetSole says whether the projector publishing to n is, from now on, the
// only writer of view v's live checkpoint: it holds every partition, and
// publishes each batch it commits (after publishing the checkpoint it
// started from). While every view is sole, the notifier is as fresh as the
// store, and waiters need not read the store to learn where it stands.
// Waiters are woken when a view stops being sole, to read the store again.
func (n *Notifier) SetSole(v View, sole bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	was := n.sole[v]
	n.sole[v] = sole
	if was && !sole {
		n.signal()
	}
}

func (n *Notifier) signal() {
	close(n.wake)
	n.wake = make(chan struct{})
}

// Watch returns the current position, a channel closed when it rises (or a
// view stops being sole), and whether every view is sole (see SetSole).
func (n *Notifier) Watch() (pos uint64, wake <-chan struct{}, sole bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	sole = true
	for _, v := range All() {
		sole = sole && n.sole[v]
	}
	return n.pos, n.wake, sole
}

// CheckpointReader is the part of Reader WaitCheckpoint needs.
type CheckpointReader interface {
	Checkpoint(ctx context.Context) (uint64, error)
}

// Poll bounds between two reads of the store's checkpoint while waiting.
// Without a notifier the store is polled from minPoll, backing off to
// maxPoll. With one, publishes wake the waiter and the store is read again
// only every maxPoll, in case the notifier lags the store (the projector
// runs in another process, or has not published since a restart).
const (
	minPoll = 2 * time.Millisecond
	maxPoll = 250 * time.Millisecond
)

// WaitCheckpoint returns once the live views' checkpoint has reached pos,
// with the checkpoint seen; it gives up with ctx's error. With a notifier (a
// projector in this process) it wakes on every publish, reading only the
// notifier then: a publish below pos says "not yet", and with hundreds of
// waiters a store read per waiter per publish costs the view store more
// than the writes they wait for. While that projector is the views' sole
// writer (see Notifier.SetSole) the store is not read at the start either,
// only every maxPoll as a fallback: at 1,000 orders/s those first reads,
// a SQLite read transaction per read-your-writes query, were ~4 % of the
// CPU, on the cores the projector's commits wait for.
// Without a notifier it polls r with exponential backoff, so waiting never
// spins on the store.
func WaitCheckpoint(ctx context.Context, r CheckpointReader, n *Notifier, pos uint64) (uint64, error) {
	wait := minPoll
	if n != nil {
		wait = maxPoll
	}
	var (
		cp       uint64
		start    = time.Now()
		nextRead time.Time // zero until the store is first read
	)
	for {
		var wake <-chan struct{}
		sole := false
		if n != nil {
			var seen uint64
			if seen, wake, sole = n.Watch(); seen >= pos {
				return seen, nil
			}
		}
		due := nextRead
		if due.IsZero() {
			due = start
			if sole {
				due = start.Add(maxPoll)
			}
		}
		if !time.Now().Before(due) {
			var err error
			if cp, err = r.Checkpoint(ctx); err != nil {
				return cp, fmt.Errorf("wait for position %d: %w", pos, err)
			}
			if cp >= pos {
				return cp, nil
			}
			nextRead = time.Now().Add(wait)
			wait = min(2*wait, maxPoll)
			continue
		}
		timer := time.NewTimer(time.Until(due))
		select {
		case <-ctx.Done():
			timer.Stop()
			return cp, fmt.Errorf("wait for position %d (views at %d): %w", pos, cp, ctx.Err())
		case <-wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}
