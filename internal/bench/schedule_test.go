package bench

import (
	"sync"
	"testing"
	"time"
)

// At a rate, the schedule hands out exactly rate × duration due times, each
// once, i/rate apart, however many clients take them, and whatever the
// clock says: a slow client never thins the schedule (open loop).
func TestScheduleAtRate(t *testing.T) {
	start := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	s := newSchedule(start, 2*time.Second, 500)
	var (
		mu  sync.Mutex
		due = map[time.Time]bool{}
		wg  sync.WaitGroup
	)
	for range 16 {
		wg.Go(func() {
			for {
				// A clock behind the due times: they come at once.
				at, ok := s.take(start)
				if !ok {
					return
				}
				mu.Lock()
				if due[at] {
					t.Errorf("%v handed out twice", at)
				}
				due[at] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(due) != 1000 {
		t.Fatalf("%d operations scheduled, want 1000", len(due))
	}
	for i := range 1000 {
		if at := start.Add(time.Duration(i) * 2 * time.Millisecond); !due[at] {
			t.Fatalf("operation %d not due at %v", i, at)
		}
	}
	if n := s.unsent(); n != 0 {
		t.Fatalf("%d unsent after all were taken", n)
	}
}

// Operations still due when the clock reaches the end are not sent late
// but counted: the run lasts its duration whatever the backlog.
func TestScheduleUnsent(t *testing.T) {
	start := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	s := newSchedule(start, time.Second, 100)
	for range 30 {
		if _, ok := s.take(start.Add(500 * time.Millisecond)); !ok {
			t.Fatal("a due operation refused before the end")
		}
	}
	if _, ok := s.take(start.Add(time.Second)); ok {
		t.Fatal("an operation handed out at the end")
	}
	if n := s.unsent(); n != 70 {
		t.Fatalf("unsent %d, want 70", n)
	}
}

// Flat out, an operation is due when it is taken, until the end.
func TestScheduleFlatOut(t *testing.T) {
	start := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	s := newSchedule(start, time.Second, 0)
	now := start.Add(999 * time.Millisecond)
	if at, ok := s.take(now); !ok || !at.Equal(now) {
		t.Fatalf("take before the end: %v %v, want %v true", at, ok, now)
	}
	if _, ok := s.take(start.Add(time.Second)); ok {
		t.Fatal("take at the end still hands out work")
	}
}
