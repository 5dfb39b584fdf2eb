package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/gctune"
)

// BenchmarkManyStreamsClient is BenchmarkManyStreams as a user sees it: the
// same stores (10,000 and 1,000,000 one-event streams), reached through the
// official client over loopback gRPC, under the binaries' GC policy. 16
// readers read streams picked at random from the start, then 64 writers
// append one event each to new streams (as every order placed is), then to
// existing streams picked at random. The CPU per call (client and store,
// one process) is steadier than the rates on a shared machine. Run with
// -benchtime=Nx (N a few thousand): the fill is done once per size.
func BenchmarkManyStreamsClient(b *testing.B) {
	b.Cleanup(gctune.Apply())
	for _, n := range []int{10_000, 1_000_000} {
		dir := b.TempDir()
		filled := false
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			if !filled {
				eventstore.FillStreams(b, dir, n)
				filled = true
			}
			_, addr := estest.Serve(b, estest.WithConfig(func(c *eventstore.Config) { c.Dir = dir }))
			c := estest.Client(b, addr)
			ctx := b.Context()
			pick := func() string { return eventstore.BenchStream(rand.IntN(n)) }
			b.ResetTimer()
			cpu0 := cpuTime(b)
			reads := concurrentRate(b, 16, b.N, func(int) error { return readSome(ctx, c, pick()) })
			cpu1 := cpuTime(b)
			var fresh atomic.Int64
			created := concurrentRate(b, 64, b.N, func(int) error {
				stream := fmt.Sprintf("new-%d-%d", b.N, fresh.Add(1))
				_, err := c.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, events(1, "OrderPlaced")...)
				return err
			})
			cpu2 := cpuTime(b)
			appends := concurrentRate(b, 64, b.N, func(int) error {
				_, err := c.AppendToStream(ctx, pick(), esdb.AppendToStreamOptions{}, events(1, "OrderPlaced")...)
				return err
			})
			cpu3 := cpuTime(b)
			b.StopTimer()
			perCall := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) }
			b.ReportMetric(reads, "reads/s")
			b.ReportMetric(perCall(cpu1-cpu0), "cpu-µs/read")
			b.ReportMetric(created, "new-appends/s")
			b.ReportMetric(perCall(cpu2-cpu1), "cpu-µs/new-append")
			b.ReportMetric(appends, "appends/s")
			b.ReportMetric(perCall(cpu3-cpu2), "cpu-µs/append")
		})
	}
}

// concurrentRate runs do n times from that many workers, each passing its
// number, and returns the calls per second.
func concurrentRate(t testing.TB, workers, n int, do func(worker int) error) float64 {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := do(w); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// readSome reads stream from its start, as a fold of an aggregate does,
// and fails if it has no events.
func readSome(ctx context.Context, c *esdb.Client, stream string) error {
	rs, err := c.ReadStream(ctx, stream, esdb.ReadStreamOptions{}, 100)
	if err != nil {
		return err
	}
	defer rs.Close()
	got := 0
	for {
		_, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		got++
	}
	if got == 0 {
		return fmt.Errorf("read %s: no events", stream)
	}
	return nil
}
