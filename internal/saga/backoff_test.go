package saga

import (
	"testing"
	"time"
)

// TestBackoff: the delay doubles from lo up to hi, with jitter in its upper
// half, for any failure count and any bounds (no overflow past hi).
func TestBackoff(t *testing.T) {
	for _, b := range []struct{ lo, hi time.Duration }{
		{20 * time.Millisecond, 30 * time.Second},
		{10 * time.Second, time.Minute}, // lo<<30 would overflow
		{time.Second, time.Second},
	} {
		for failures := 1; failures <= 100; failures++ {
			want := b.hi
			if failures <= 30 && b.lo<<(failures-1) < b.hi {
				want = b.lo << (failures - 1)
			}
			for range 20 {
				if d := backoff(b.lo, b.hi, failures); d < want/2 || d > want {
					t.Fatalf("backoff(%v, %v, %d) = %v; want within [%v, %v]", b.lo, b.hi, failures, d, want/2, want)
				}
			}
		}
	}
}
