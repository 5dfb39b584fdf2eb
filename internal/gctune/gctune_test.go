package gctune

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercentFor(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 1500},              // before the first collection: the runtime's minimum heap
		{runtimeMinHeap, 1500}, // 4 MiB × 16 = Floor
		{8 << 20, 700},
		{Floor / 5, 400}, // from here on, Percent
		{16 << 20, 400},
		{1 << 30, 400},
	} {
		if got := percentFor(c.live); got != c.want {
			t.Errorf("percentFor(%d) = %d, want %d", c.live, got, c.want)
		}
	}
}

// TestApply runs the policy in this process: GOGC follows the live heap
// after each collection, up past the floor and back.
func TestApply(t *testing.T) {
	old := debug.SetGCPercent(80)
	t.Cleanup(func() { debug.SetGCPercent(old) })

	t.Setenv("GOGC", "100")
	Apply()()
	runtime.GC()
	if got := gogc(); got != 80 {
		t.Fatalf("with GOGC set, Apply changed it: GOGC = %d", got)
	}

	os.Unsetenv("GOGC") // t.Setenv restores it
	restore := Apply()
	Apply()() // a second policy is not started, and its restore does nothing
	waitGOGC(t, "small live heap", func(p int) bool { return p > Percent })

	live := make([]byte, Floor)
	for i := range live {
		live[i] = 1
	}
	waitGOGC(t, "live heap above the floor", func(p int) bool { return p == Percent })
	runtime.KeepAlive(live)
	waitGOGC(t, "live heap small again", func(p int) bool { return p > Percent })

	restore()
	if got := gogc(); got != 80 {
		t.Fatalf("restore left GOGC = %d, want the 80 it found", got)
	}
	for range 3 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if got := gogc(); got != 80 {
		t.Fatalf("the policy still runs after restore: GOGC = %d", got)
	}
}

// waitGOGC collects until GOGC satisfies ok: the policy runs after a
// collection, in the runtime's cleanup goroutine.
func waitGOGC(t *testing.T, what string, ok func(int) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(gogc()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: GOGC = %d", what, gogc())
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}

func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}
