package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// The histogram keeps HDR-style log-linear buckets: every power of two is cut
// into subBuckets equal slices, so a value is known to within 1/subBuckets
// (1.6 %) of itself whatever its size, and the memory is fixed (about 30 KiB)
// however long the run.
const (
	subBits    = 6
	subBuckets = 1 << subBits
	// Values below subBuckets get one bucket each; above, one row of
	// subBuckets per power of two up to 2^63.
	numBuckets = (64 - subBits + 1) * subBuckets
)

// Histogram records durations from many goroutines without locks.
type Histogram struct {
	counts [numBuckets]atomic.Uint64
	max    atomic.Int64
}

func bucketOf(v int64) int {
	if v < subBuckets {
		return int(max(v, 0))
	}
	exp := bits.Len64(uint64(v)) - subBits - 1
	return (exp+1)*subBuckets + int(v>>exp) - subBuckets
}

// bucketHigh is the largest value that falls into bucket i.
func bucketHigh(i int) int64 {
	if i < subBuckets {
		return int64(i)
	}
	exp := i/subBuckets - 1
	sub := int64(i%subBuckets + subBuckets)
	// For the top bucket this wraps to math.MaxInt64, which is right.
	return (sub+1)<<exp - 1
}

// Record adds one duration; a negative one counts as zero.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	h.counts[bucketOf(v)].Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Snapshot copies the counts as they are now; recording may go on meanwhile.
func (h *Histogram) Snapshot() *Snapshot {
	s := &Snapshot{Max: time.Duration(h.max.Load())}
	for i := range h.counts {
		c := h.counts[i].Load()
		s.counts[i] = c
		s.Count += c
	}
	return s
}

// Snapshot is a histogram's counts at one moment.
type Snapshot struct {
	counts [numBuckets]uint64
	Count  uint64
	// Max is exact; it is the run's maximum even in a Since difference.
	Max time.Duration
}

// Since is what was recorded between prev and s, for a live report of the
// last interval. Its Max stays s's (a maximum cannot be subtracted).
func (s *Snapshot) Since(prev *Snapshot) *Snapshot {
	d := &Snapshot{Max: s.Max}
	for i := range s.counts {
		d.counts[i] = s.counts[i] - prev.counts[i]
		d.Count += d.counts[i]
	}
	return d
}

// Quantile is the value below or at which fraction q of the recorded values
// lie, as the top of its bucket (never above Max); 0 when nothing was
// recorded.
func (s *Snapshot) Quantile(q float64) time.Duration {
	if s.Count == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(s.Count)))
	rank = min(max(rank, 1), s.Count)
	var seen uint64
	for i, c := range s.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(bucketHigh(i)), s.Max)
		}
	}
	return s.Max
}

// add merges o into s.
func (s *Snapshot) add(o *Snapshot) {
	for i := range s.counts {
		s.counts[i] += o.counts[i]
	}
	s.Count += o.Count
	s.Max = max(s.Max, o.Max)
}
