// Package gctune sets the garbage collector policy Orderly's binaries run
// with: GOGC=400 over a 64 MiB heap floor.
//
// Their live heaps are small: events and views live in Pebble, SQLite or
// MongoDB, and what stays on the Go heap is little more than the requests
// and batches in flight. Go's default (GOGC=100) collects whenever the heap
// doubles, with a 4 MiB minimum, so a process turning over a few hundred
// MB/s of short-lived request garbage collects dozens of times a second,
// each time scanning the stacks of all its goroutines. Collecting at 5× the
// live heap, and never below Floor, removes most of that work; the memory
// it costs is bounded by max(Floor, 5× the live heap).
package gctune

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// Percent is the GOGC the binaries run with once the live heap is past a
// fifth of Floor.
const Percent = 400

// Floor is the heap size the collector lets the heap reach before it runs.
const Floor = 64 << 20

// runtimeMinHeap is the heap goal the runtime gives a tiny live heap at
// GOGC=100; GOGC scales it.
const runtimeMinHeap = 4 << 20

var (
	mu     sync.Mutex
	active uint64 // generation of the running policy; 0 when none runs
	last   uint64
)

// Apply runs the policy until restore is called (binaries never call
// it; benchmarks do, to measure as the binaries run), unless the
// environment sets GOGC: an operator's choice wins.
func Apply() (restore func()) {
	if _, set := os.LookupEnv("GOGC"); set {
		return func() {}
	}
	mu.Lock()
	defer mu.Unlock()
	if active != 0 {
		return func() {}
	}
	last++
	gen := last
	active = gen
	prior := debug.SetGCPercent(percentFor(liveHeap()))
	arm(gen)
	return func() {
		mu.Lock()
		defer mu.Unlock()
		if active == gen {
			active = 0
			debug.SetGCPercent(prior)
		}
	}
}

// arm runs follow after the next collection.
func arm(gen uint64) {
	runtime.AddCleanup(new(cycle), follow, gen)
}

// follow sets GOGC for the live heap the last collection left.
func follow(gen uint64) {
	mu.Lock()
	defer mu.Unlock()
	if active != gen {
		return
	}
	debug.SetGCPercent(percentFor(liveHeap()))
	arm(gen)
}

// cycle is garbage as soon as it is made, so its cleanup runs after the next
// collection. It holds a pointer so that it is not tiny-allocated (tiny
// blocks are shared and freed late).
type cycle struct{ _ *byte }

// percentFor is the GOGC that puts the next collection at Floor, or at
// Percent once that is later.
func percentFor(live uint64) int {
	live = max(live, runtimeMinHeap)
	return max(Percent, int(Floor*100/live)-100)
}

func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
