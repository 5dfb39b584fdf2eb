package eventstore_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/gctune"
)

// BenchmarkAppend measures durable (fsync) appends of one event through the
// official client, under the binaries' GC policy (set GOGC to measure
// without it). Group commit is what lets 64 writers share each sync;
// appends/fsync says how many did. ×1-writer is the 64 writers' rate over
// one writer's, measured on the same store right after: this machine's
// disk and CPU change speed by the minute, so only a ratio measured
// alongside means anything (and -count repeats the pair).
func BenchmarkAppend(b *testing.B) {
	b.Cleanup(gctune.Apply())
	for _, writers := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			srv, addr := estest.Serve(b, estest.OnDisk())
			c := estest.Client(b, addr)
			mustAppend(b, c, "warmup", esdb.Any{}, events(1, "e")...)
			groups0, ops0 := eventstore.GroupCommits(srv)
			cpu0 := cpuTime(b)
			b.ResetTimer()
			rate := appendRate(b, c, writers, b.N)
			b.StopTimer()
			groups, ops := eventstore.GroupCommits(srv)
			b.ReportMetric(rate, "appends/s")
			b.ReportMetric(float64(ops-ops0)/float64(groups-groups0), "appends/fsync")
			b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/append")
			if writers > 1 {
				b.ReportMetric(rate/appendRate(b, c, 1, max(500, b.N/16)), "×1-writer")
			}
		})
	}
}

// appendRate appends n events from that many concurrent writers, each to
// its own stream, and returns the appends per second.
func appendRate(b *testing.B, c *esdb.Client, writers, n int) float64 {
	// One context for the run: a per-append testCtx would register a
	// cleanup and a timer for every append and measure the test harness.
	ctx := b.Context()
	streams := make([]string, writers)
	for w := range streams {
		streams[w] = fmt.Sprintf("bench-%d", w)
	}
	return concurrentRate(b, writers, n, func(w int) error {
		stream := streams[w]
		_, err := c.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{}, events(1, "e")...)
		return err
	})
}

// cpuTime is the CPU the process has used (user and system, the kernel's
// side of fsync and loopback included). Per append it is steadier than the
// rate on a shared machine, but it counts the client as well as the store.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSubscribeAll measures events per second delivered to a $all
// subscriber catching up from disk, under the binaries' GC policy like
// BenchmarkAppend (the client's decoding is most of the work).
func BenchmarkSubscribeAll(b *testing.B) {
	b.Cleanup(gctune.Apply())
	c := newClient(b, estest.OnDisk())
	for n := 0; n < b.N; n += 500 {
		mustAppend(b, c, fmt.Sprintf("sub-%d", n%16), esdb.Any{}, events(min(500, b.N-n), "e")...)
	}
	b.ResetTimer()
	sub, err := c.SubscribeToAll(testCtx(b), esdb.SubscribeToAllOptions{From: esdb.Start{}})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	for got := 0; got < b.N; {
		ev := sub.Recv()
		if ev.SubscriptionDropped != nil {
			b.Fatal(ev.SubscriptionDropped.Error)
		}
		if ev.EventAppeared != nil {
			got++
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
