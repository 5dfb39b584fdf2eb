package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// Every value lands in a bucket whose top is at or above it and within
// 1/subBuckets of it, and buckets are in value order.
func TestBuckets(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	values := []int64{0, 1, 63, 64, 65, 127, 128, 1000, 1 << 40, math.MaxInt64}
	for range 10_000 {
		values = append(values, r.Int64N(1<<(1+r.IntN(62))))
	}
	for _, v := range values {
		i := bucketOf(v)
		if i < 0 || i >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d, out of range", v, i)
		}
		hi := bucketHigh(i)
		if hi < v || (i > 0 && bucketHigh(i-1) >= v) {
			t.Fatalf("%d in bucket %d, which holds (%d, %d]", v, i, bucketHigh(i-1), hi)
		}
		if float64(hi-v) > float64(v)/subBuckets {
			t.Fatalf("%d in bucket %d topped by %d: more than 1/%d off", v, i, hi, subBuckets)
		}
	}
	if bucketOf(-5) != 0 {
		t.Fatal("a negative duration is not counted as zero")
	}
}

// Quantiles agree with the exact ones from the sorted values, within the
// bucket resolution, and Since leaves only what came after.
func TestQuantiles(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var h Histogram
	var all []time.Duration
	for range 50_000 {
		// Log-uniform from 1µs to about 10s, like latencies.
		d := time.Duration(math.Exp(r.Float64()*math.Log(1e10/1e3)) * 1e3)
		h.Record(d)
		all = append(all, d)
	}
	s := h.Snapshot()
	if s.Count != uint64(len(all)) {
		t.Fatalf("count %d, want %d", s.Count, len(all))
	}
	slices.Sort(all)
	for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
		rank := max(int(math.Ceil(q*float64(len(all))))-1, 0)
		exact, got := all[rank], s.Quantile(q)
		if got < exact || float64(got-exact) > float64(exact)/subBuckets {
			t.Errorf("q%g = %v, exact %v", q, got, exact)
		}
	}
	if s.Max != all[len(all)-1] || s.Quantile(1) != s.Max {
		t.Errorf("max %v, q1 %v; want %v", s.Max, s.Quantile(1), all[len(all)-1])
	}

	for range 10 {
		h.Record(time.Hour)
	}
	d := h.Snapshot().Since(s)
	if d.Count != 10 || d.Quantile(0.5) != time.Hour {
		t.Errorf("since: %d values, median %v; want 10 of 1h", d.Count, d.Quantile(0.5))
	}
	var empty Histogram
	if q := empty.Snapshot().Quantile(0.99); q != 0 {
		t.Errorf("empty histogram: q0.99 = %v", q)
	}
}

// Merging two snapshots is the snapshot of both recordings.
func TestSnapshotAdd(t *testing.T) {
	var a, b, both Histogram
	for i := range 1000 {
		d := time.Duration(i) * time.Microsecond
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
		both.Record(d)
	}
	m := a.Snapshot()
	m.add(b.Snapshot())
	want := both.Snapshot()
	if *m != *want {
		t.Fatalf("merged: count %d max %v p50 %v; want %d %v %v", m.Count, m.Max, m.Quantile(0.5), want.Count, want.Max, want.Quantile(0.5))
	}
}
