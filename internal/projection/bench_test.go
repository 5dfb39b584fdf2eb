package projection_test

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/gctune"
	"github.com/orderly/orderly/internal/projection"
	"github.com/orderly/orderly/internal/projectorcmd"
	"github.com/orderly/orderly/internal/views"
)

// Benchmarks (go test -run '^$' -bench . ./internal/projection):
//
//   - Pipeline (in bench_internal_test.go): decoding, folding and
//     partitioning alone, on records in memory, into a store that keeps
//     nothing;
//   - Discard: the same through a real subscription to the embedded store;
//   - LiveSQLite: a caught-up projector following appends as they happen
//     (bounded by how fast the appenders, on the same two cores, append);
//   - LiveBacklogSQLite: the live projector catching up a backlog of updates:
//     how fast it can go live;
//   - RebuildSQLite: a rebuild of a million events (-rebuild-events);
//   - IdleVisible: write-to-visible of single appends on an idle system.
//
// Each reports events/s over every event of $all (every view reads them
// all and folds its own), and the process CPU time per event, steadier than
// rates on a shared machine. All but Pipeline run under the binaries' GC
// policy (gctune), and the rebuild with the rebuild command's default batch
// size.

var rebuildEvents = flag.Int("rebuild-events", 1_000_000, "events BenchmarkRebuildSQLite rebuilds")

// appendWriters append concurrently, as many service instances would; the
// store commits what arrives together.
const appendWriters = 64

// encoded is one append, ready to send.
type encoded struct {
	stream string
	data   []esdb.EventData
}

// encode encodes appends and returns them with their number of events.
func encode(tb testing.TB, appends []projection.BenchAppend) ([]encoded, int) {
	tb.Helper()
	codec := eventcodec.Default()
	var all []encoded
	var events int
	for _, a := range appends {
		e := encoded{stream: a.Stream}
		for _, ev := range a.Events {
			d, err := eventlog.Encode(codec, uuid.New(), ev, eventcodec.Metadata{CorrelationID: "bench"})
			if err != nil {
				tb.Fatal(err)
			}
			e.data = append(e.data, d)
		}
		all = append(all, e)
		events += len(e.data)
	}
	return all, events
}

// splitFirst splits appends into the first event of each and the rest: the
// second half, appended after the first, updates documents that exist.
func splitFirst(appends []projection.BenchAppend) (first, rest []projection.BenchAppend) {
	for _, a := range appends {
		first = append(first, projection.BenchAppend{Stream: a.Stream, Events: a.Events[:1]})
		if len(a.Events) > 1 {
			rest = append(rest, projection.BenchAppend{Stream: a.Stream, Events: a.Events[1:]})
		}
	}
	return first, rest
}

// appendAll appends from parallel writers and returns the head position.
func appendAll(tb testing.TB, client *esdb.Client, all []encoded) uint64 {
	var next atomic.Int64
	var head atomic.Uint64
	var wg sync.WaitGroup
	for range appendWriters {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(all)); i = next.Add(1) - 1 {
				res, err := client.AppendToStream(context.Background(), all[i].stream,
					esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, all[i].data...)
				if err != nil {
					tb.Error(err)
					return
				}
				for h := head.Load(); h < res.CommitPosition && !head.CompareAndSwap(h, res.CommitPosition); h = head.Load() {
				}
			}
		})
	}
	wg.Wait()
	return head.Load()
}

// generate appends a history of about n events and returns the number of
// events and the head position.
func generate(tb testing.TB, client *esdb.Client, prefix string, n int) (int, uint64) {
	all, events := encode(tb, projection.BenchHistory(prefix, n))
	return events, appendAll(tb, client, all)
}

// tuneGC runs the benchmark under the binaries' GC policy.
func tuneGC(b *testing.B) {
	b.Cleanup(gctune.Apply())
}

func BenchmarkDiscard(b *testing.B) {
	tuneGC(b)
	connString := estest.Start(b)
	client, conn := connect(b, connString)
	events, head := generate(b, client, "d", 300_000)
	b.ResetTimer()
	var cpu projection.CPUMeter
	cpu.Start()
	for range b.N {
		store := projection.NewDiscardStore()
		p, err := projection.New(conn, store, quietLog(), projection.Options{})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		if _, err := views.WaitCheckpoint(testCtx(b, 10*time.Minute), store, nil, head); err != nil {
			b.Fatal(err)
		}
		cancel()
		<-done
	}
	b.ReportMetric(float64(events*b.N)/b.Elapsed().Seconds(), "events/s")
	cpu.Report(b, events*b.N)
}

func BenchmarkLiveSQLite(b *testing.B) {
	tuneGC(b)
	connString := estest.Start(b)
	client, conn := connect(b, connString)
	store := openSQLiteAt(b, filepath.Join(b.TempDir(), "views.db"))
	r := runProjector(b, conn, store, projection.Options{})
	var events int
	var appending, projecting time.Duration
	var cpu projection.CPUMeter // appending's CPU counts too: it shares the machine
	for i := range b.N {
		b.StopTimer()
		all, n := encode(b, projection.BenchHistory(fmt.Sprintf("l%d-", i), 200_000))
		b.StartTimer()
		cpu.Start()
		start := time.Now()
		head := appendAll(b, client, all)
		appending += time.Since(start)
		waitFor(b, store, r.notifier, head)
		projecting += time.Since(start)
		cpu.Stop()
		events += n
	}
	// The projector follows the appends as they happen: the first rate is
	// the appenders', the second how fast the views were complete.
	b.ReportMetric(float64(events)/appending.Seconds(), "appended-events/s")
	b.ReportMetric(float64(events)/projecting.Seconds(), "events/s")
	b.ReportMetric(meanBatch(b, r.registry), "events/batch")
	cpu.Report(b, events)
}

// meanBatch is the mean size of the batches the projector applied.
func meanBatch(b *testing.B, reg *prometheus.Registry) float64 {
	families, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	var n uint64
	for _, f := range families {
		if f.GetName() != "orderly_projector_batch_events" {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetHistogram().GetSampleSum()
			n += m.GetHistogram().GetSampleCount()
		}
	}
	return sum / float64(max(n, 1))
}

// BenchmarkLiveBacklogSQLite measures how fast the live projector applies
// events when they come faster than it can apply them: it catches up a
// backlog into the live views (all indexes maintained), and every order
// decision and customer credit event updates a document written by an
// earlier batch, read back from SQLite.
func BenchmarkLiveBacklogSQLite(b *testing.B) {
	tuneGC(b)
	connString := estest.Start(b)
	client, conn := connect(b, connString)
	store := openSQLiteAt(b, filepath.Join(b.TempDir(), "views.db"))
	var events int
	var cpu projection.CPUMeter
	for i := range b.N {
		b.StopTimer()
		first, rest := splitFirst(projection.BenchHistory(fmt.Sprintf("b%d-", i), 200_000))
		e1, n1 := encode(b, first)
		e2, n2 := encode(b, rest)
		appendAll(b, client, e1)
		head := appendAll(b, client, e2)
		events += n1 + n2
		b.StartTimer()
		cpu.Start()
		r := runProjector(b, conn, store, projection.Options{})
		waitFor(b, store, r.notifier, head)
		r.stop()
		cpu.Stop()
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	cpu.Report(b, events)
}

func BenchmarkRebuildSQLite(b *testing.B) {
	tuneGC(b)
	connString := estest.Start(b)
	client, conn := connect(b, connString)
	events, _ := generate(b, client, "r", *rebuildEvents)
	store := openSQLiteAt(b, filepath.Join(b.TempDir(), "views.db"))
	p, err := projection.New(conn, store, quietLog(), projection.Options{BatchSize: projectorcmd.RebuildBatchSize})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var cpu projection.CPUMeter
	cpu.Start()
	for range b.N {
		if err := p.Rebuild(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(events*b.N)/b.Elapsed().Seconds(), "events/s")
	cpu.Report(b, events*b.N)
}

// BenchmarkIdleVisible measures write-to-visible on an idle system: one
// event appended at a time, each waited for until the views' checkpoint
// passes it (as a read with min_position would), with the default options.
// It reports the median and the 90th percentile.
func BenchmarkIdleVisible(b *testing.B) {
	tuneGC(b)
	client, conn := connect(b, estest.Start(b))
	store := openSQLiteAt(b, filepath.Join(b.TempDir(), "views.db"))
	r := runProjector(b, conn, store, projection.Options{})
	w := newWriter(b, client)
	took := make([]time.Duration, 0, b.N)
	for i := range b.N {
		id := fmt.Sprintf("idle-%d", i)
		start := time.Now()
		pos := w.append(eventlog.CustomerStream(id), domain.CustomerRegistered{CustomerID: id, Name: "Idle", Email: id + "@example.com", CreditLimit: usd(100)})
		waitFor(b, store, r.notifier, pos)
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*9/10].Microseconds())/1000, "p90-ms")
}
