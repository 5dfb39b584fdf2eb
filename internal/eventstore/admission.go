package eventstore

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// admission bounds the bytes held by appends that have been read and not
// yet answered, taken event by event as a request arrives (the NATS stall
// gate's idea): gRPC's limits bound one message, not the sum over
// concurrent calls.
//
// A request waits for room only for its first event, when it holds
// nothing; a request already holding bytes that finds no room for its next
// event is refused instead. Waiting while holding could deadlock: requests
// each holding part of the budget, all waiting for more.
type admission struct {
	limit int
	held  prometheus.Gauge

	mu   sync.Mutex
	used int
	room chan struct{} // closed (and replaced) when bytes are released
}

func newAdmission(limit int, held prometheus.Gauge) *admission {
	return &admission{limit: limit, held: held, room: make(chan struct{})}
}

// wait takes n bytes for a request that holds none, waiting for room.
func (a *admission) wait(ctx context.Context, n int) error {
	for {
		a.mu.Lock()
		if a.used+n <= a.limit {
			a.take(n)
			a.mu.Unlock()
			return nil
		}
		room := a.room
		a.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// try takes n more bytes for a request that already holds some, if there is room.
func (a *admission) try(n int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.used+n > a.limit {
		return false
	}
	a.take(n)
	return true
}

func (a *admission) take(n int) {
	a.used += n
	a.held.Set(float64(a.used))
}

func (a *admission) release(n int) {
	if n == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.used -= n
	a.held.Set(float64(a.used))
	close(a.room)
	a.room = make(chan struct{})
}
