package eventstore

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkManyStreams writes n streams of one event each, then restarts
// the store and measures, against it: the RSS after writing and after the
// restart, the time from Open to a served append, and the rate of reads
// and then appends (64 writers) to streams picked at random. At 1,000,000 streams
// most picks miss the stream cache and read state from disk; 10,000 all
// fit. Run with -benchtime=Nx (N a few thousand): the fill is done once.
func BenchmarkManyStreams(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		dir := b.TempDir()
		var written float64
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			if written == 0 {
				written = fillStreams(b, dir, n)
			}
			start := time.Now()
			srv, err := Open(Config{Dir: dir})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			appendOne(b, srv, benchStream(0))
			opened := time.Since(start)
			restarted := rssMiB(b)

			b.ResetTimer()
			// Reads first, while every stream holds its one event, so both
			// sizes read the same amount per stream.
			readStart := time.Now()
			for range b.N {
				readOne(b, srv, benchStream(rand.IntN(n)))
			}
			readRate := float64(b.N) / time.Since(readStart).Seconds()
			var next atomic.Int64
			var wg sync.WaitGroup
			appendStart := time.Now()
			for range 64 {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						appendOne(b, srv, benchStream(rand.IntN(n)))
					}
				})
			}
			wg.Wait()
			appendRate := float64(b.N) / time.Since(appendStart).Seconds()
			b.StopTimer()
			b.ReportMetric(written, "rss-written-MiB")
			b.ReportMetric(float64(srv.db.Metrics().DiskSpaceUsage())/(1<<20), "disk-MiB")
			b.ReportMetric(restarted, "rss-restart-MiB")
			b.ReportMetric(float64(opened.Milliseconds()), "open-to-append-ms")
			b.ReportMetric(appendRate, "appends/s")
			b.ReportMetric(readRate, "reads/s")
		})
	}
}

func benchStream(i int) string { return "order-" + strconv.Itoa(i) }

// fillStreams writes n one-event streams into dir and returns the RSS
// afterwards, with the store still open.
func fillStreams(b *testing.B, dir string, n int) float64 {
	srv, err := Open(Config{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 256 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				appendOne(b, srv, benchStream(int(i)))
			}
		})
	}
	wg.Wait()
	rss := rssMiB(b)
	// Measure a settled store, not the compaction debt a bulk load leaves
	// behind (it would slow the 1M run for reasons other than its size).
	if err := srv.db.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
		b.Fatal(err)
	}
	return rss
}

func appendOne(b *testing.B, srv *Server, stream string) {
	rec := newRecord(stream, newEventID(), "OrderPlaced", "application/json", nil, []byte(`{"customer":"c-1","lines":[{"sku":"s-1","qty":1}]}`))
	res, err := srv.seq.submit(context.Background(), &op{kind: opAppend, stream: stream, events: []*record{rec}})
	if err == nil {
		err = res.err
	}
	if err != nil {
		b.Error(err)
	}
}

// readOne reads a stream as the Read handler does: its state, then its events.
func readOne(b *testing.B, srv *Server, stream string) {
	snap := srv.db.NewSnapshot()
	defer snap.Close()
	m, err := readMeta(snap, stream)
	if err == nil && m.exists() {
		var got int
		err = scanStream(snap, stream, m.truncateBefore, m.lastRevision(), false, func(*entry) (bool, error) { got++; return true, nil })
		if err == nil && got == 0 {
			err = fmt.Errorf("stream %s: no events", stream)
		}
	}
	if err != nil {
		b.Error(err)
	}
}

// rssMiB is the process's resident set after a full GC returned what it could.
func rssMiB(b *testing.B) float64 {
	runtime.GC()
	debug.FreeOSMemory()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Skip("no /proc/self/status:", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				b.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatal("VmRSS not found")
	return 0
}

// BenchmarkReadLongStream reads a 200,000-event stream from start to end,
// as a fold of one aggregate does, and reports events/s.
func BenchmarkReadLongStream(b *testing.B) {
	const n, perAppend = 200_000, 1000
	srv, err := Open(Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	for i := 0; i < n; i += perAppend {
		recs := make([]*record, perAppend)
		for j := range recs {
			recs[j] = newRecord("long", newEventID(), "ItemAdded", "application/json", nil, []byte(`{"sku":"s-1","qty":1}`))
		}
		res, err := srv.seq.submit(context.Background(), &op{kind: opAppend, stream: "long", events: recs})
		if err == nil {
			err = res.err
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		got := 0
		if err := scanStream(srv.db, "long", 0, math.MaxUint64, false, func(*entry) (bool, error) { got++; return true, nil }); err != nil || got != n {
			b.Fatalf("read %d of %d events: %v", got, n, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}
