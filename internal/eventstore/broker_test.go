package eventstore

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A subscriber that stops reading pins at most its byte limit (or one
// group, if a group is larger), is then dropped with RESOURCE_EXHAUSTED and
// the reason, and the drop is counted; one that takes what it is given is
// never dropped, however large the groups.
func TestSubscriberQueueIsBoundedInBytes(t *testing.T) {
	drops := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "drops"}, []string{"reason"})
	b := newBroker(0, drops)
	const limit = 1 << 20
	stalled, reading := newSubscriber(limit), newSubscriber(limit)
	for _, s := range []*subscriber{stalled, reading} {
		if ok, err := b.join(s, 0); !ok || err != nil {
			t.Fatalf("join: %v %v", ok, err)
		}
	}
	group := func(events, size int) []*entry {
		out := make([]*entry, events)
		for i := range out {
			out[i] = &entry{pos: uint64(i + 1), raw: make([]byte, size)}
		}
		return out
	}

	// Larger than the limit, but the queue is empty: taken whole.
	b.publish(group(1, 2*limit), 1)
	if _, err := stalled.take(); err != nil {
		t.Fatalf("a group larger than the limit into an empty queue dropped the subscriber: %v", err)
	}
	if _, err := reading.take(); err != nil {
		t.Fatal(err)
	}

	maxPinned := 0
	for i := range 64 {
		b.publish(group(16, 16<<10), uint64(i+2)) // 256 KiB a group
		if _, err := reading.take(); err != nil {
			t.Fatalf("reading subscriber dropped after %d groups: %v", i, err)
		}
		stalled.mu.Lock()
		maxPinned = max(maxPinned, stalled.queued)
		stalled.mu.Unlock()
	}
	if maxPinned > limit {
		t.Fatalf("stalled subscriber pinned %d bytes, limit %d", maxPinned, limit)
	}
	_, err := stalled.take()
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "SubscriberBufferBytes") {
		t.Fatalf("stalled subscriber: %v, want RESOURCE_EXHAUSTED naming SubscriberBufferBytes", err)
	}
	if got := counterValue(t, drops.WithLabelValues(dropSlow)); got != 1 {
		t.Fatalf("slow drops counted: %v, want 1", got)
	}
}
