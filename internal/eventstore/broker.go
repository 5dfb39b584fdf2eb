package eventstore

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// broker fans committed events out to live subscribers. Publishing never
// blocks: each subscriber has a queue bounded in bytes, and one that lets it
// overflow is dropped, so a slow reader cannot stall the writer or the other
// readers, nor pin memory without bound.
type broker struct {
	drops *prometheus.CounterVec // by reason

	mu     sync.Mutex
	head   uint64 // position of the last published event
	subs   map[*subscriber]struct{}
	closed bool
}

func newBroker(head uint64, drops *prometheus.CounterVec) *broker {
	return &broker{head: head, drops: drops, subs: map[*subscriber]struct{}{}}
}

func (b *broker) Head() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.head
}

func (b *broker) publish(entries []*entry, head uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.head = head
	size := 0
	for _, e := range entries {
		size += len(e.raw)
	}
	for s := range b.subs {
		if !s.offer(entries, size) {
			delete(b.subs, s)
			b.drops.WithLabelValues(dropSlow).Inc()
		}
	}
}

// join makes s live if nothing was published after head, the position its
// catch-up has delivered up to. Joining under the lock that publish holds is
// what makes the catch-up-to-live switch free of gaps and duplicates; when
// join reports false the caller catches up further and tries again.
func (b *broker) join(s *subscriber, head uint64) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false, errClosed
	}
	if b.head != head {
		return false, nil
	}
	b.subs[s] = struct{}{}
	return true, nil
}

func (b *broker) leave(s *subscriber) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.subs, s)
}

// close ends every live subscription; later joins fail.
func (b *broker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		s.drop(status.Error(codes.Unavailable, "event store is shutting down; resubscribe from your last checkpoint"))
		delete(b.subs, s)
		b.drops.WithLabelValues(dropShutdown).Inc()
	}
}

// subscriber is one live subscription's queue.
type subscriber struct {
	limit  int           // bytes
	notify chan struct{} // signalled when queue or dropped changes

	mu      sync.Mutex
	queue   []*entry
	queued  int // bytes of the events in queue, in their wire form
	dropped error
}

func newSubscriber(limit int) *subscriber {
	return &subscriber{limit: limit, notify: make(chan struct{}, 1)}
}

// offer queues entries (size bytes), or drops the subscriber if that would
// pass its limit. An empty queue takes any group commit whole: events are
// counted in bytes, so a legal append of many small events (or one group of
// several appends) never drops a subscriber that keeps reading, while one
// that stalls holds at most its limit or one group, whichever is larger.
func (s *subscriber) offer(entries []*entry, size int) bool {
	s.mu.Lock()
	if s.queued > 0 && s.queued+size > s.limit {
		queued := s.queued
		s.mu.Unlock()
		s.drop(status.Error(codes.ResourceExhausted, fmt.Sprintf(
			"subscription dropped: subscriber too slow: %d bytes of events waiting to be sent and %d more arriving pass the limit of %d (SubscriberBufferBytes); resubscribe from your last checkpoint",
			queued, size, s.limit)))
		return false
	}
	s.queue = append(s.queue, entries...)
	s.queued += size
	s.mu.Unlock()
	s.signal()
	return true
}

func (s *subscriber) drop(err error) {
	s.mu.Lock()
	if s.dropped == nil {
		s.dropped = err
	}
	s.mu.Unlock()
	s.signal()
}

func (s *subscriber) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// take returns everything queued so far, or the reason the subscriber was
// dropped. Events queued before a drop are not delivered: the client resumes
// from its own last position anyway.
func (s *subscriber) take() ([]*entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropped != nil {
		return nil, s.dropped
	}
	entries := s.queue
	s.queue, s.queued = nil, 0
	return entries, nil
}
