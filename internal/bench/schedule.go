package bench

import (
	"sync/atomic"
	"time"
)

// schedule hands out the send times of a run. At a target rate it is open
// loop: the i-th operation is due at start + i/rate whoever sends it and
// however long earlier ones took, and its latency counts from that due time,
// so a stalled server shows as latency instead of fewer requests
// (coordinated omission). Flat out (rate 0) an operation is due when a
// client is free to send it.
type schedule struct {
	start    time.Time
	end      time.Time
	interval time.Duration // 0: flat out
	next     atomic.Int64
}

func newSchedule(start time.Time, duration time.Duration, rate float64) *schedule {
	s := &schedule{start: start, end: start.Add(duration)}
	if rate > 0 {
		s.interval = time.Duration(float64(time.Second) / rate)
	}
	return s
}

// take returns when the next operation is due, or false once the run is
// over: when now reaches the end, or, at a rate, the due time does.
// Operations due but not taken by the end are counted by unsent.
func (s *schedule) take(now time.Time) (time.Time, bool) {
	if s.interval == 0 {
		return now, now.Before(s.end)
	}
	if !now.Before(s.end) {
		return time.Time{}, false
	}
	i := s.next.Add(1) - 1
	due := s.start.Add(time.Duration(i) * s.interval)
	return due, due.Before(s.end)
}

// unsent is how many operations were due before the end but never taken:
// the clients were too few, or the system too slow, for the rate.
func (s *schedule) unsent() int64 {
	if s.interval == 0 {
		return 0
	}
	due := int64((s.end.Sub(s.start) + s.interval - 1) / s.interval)
	return max(due-s.next.Load(), 0)
}
