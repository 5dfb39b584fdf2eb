package eventstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkScavenge is the target: a store of 1,000,000 events, 90 %
// of them retired ($maxCount 100 on 1,000 streams of 1,000), scavenged
// while 16 writers append. It reports the share of the retired events' disk
// space freed (freed_pct) and the writers' rate during the scavenge against
// their rate just before it (append_pct). The store is filled once and
// compacted, so "before" is its settled size; the bytes the writers add
// meanwhile are counted out of "after". Run with -benchtime=1x; it takes
// minutes.
func BenchmarkScavenge(b *testing.B) {
	const streams, perStream, keep, writers = 1000, 1000, 100, 16
	srv, err := Open(Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	for s := range streams {
		name := fmt.Sprintf("scav-%d", s)
		for range perStream / 100 {
			recs := make([]*record, 100)
			for i := range recs {
				recs[i] = newRecord(name, newEventID(), "OrderPlaced", contentTypeJSON, nil, fmt.Appendf(nil, `{"customer":"c-%d","lines":[{"sku":"s-%d","qty":1}]}`, s, i))
			}
			mustSubmit(b, srv, &op{kind: opAppend, stream: name, events: recs})
		}
		if err := srv.appendInternal(ctx, metastreamOf(name), expectation{kind: expectAny}, eventTypeMetadata, map[string]int{"$maxCount": keep}); err != nil {
			b.Fatal(err)
		}
	}
	if err := srv.db.Compact(ctx, []byte{0}, []byte{0xff}, true); err != nil {
		b.Fatal(err)
	}
	before := srv.db.Metrics().DiskSpaceUsage()
	perEvent := float64(before) / (streams * perStream)

	var appended atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				appendOne(b, srv, fmt.Sprintf("load-%d-%d", w, i%100))
				appended.Add(1)
			}
		})
	}
	rate := func(d time.Duration) float64 {
		n0, t0 := appended.Load(), time.Now()
		time.Sleep(d)
		return float64(appended.Load()-n0) / time.Since(t0).Seconds()
	}
	rate(2 * time.Second) // warm up
	baseline := rate(10 * time.Second)

	b.ResetTimer()
	n0, t0 := appended.Load(), time.Now()
	id, _, err := srv.scavenges.start()
	if err != nil {
		b.Fatal(err)
	}
	srv.scavenges.mu.Lock()
	run := srv.scavenges.cur
	srv.scavenges.mu.Unlock()
	if run != nil && run.id == id {
		<-run.done
	}
	took := time.Since(t0)
	during := float64(appended.Load()-n0) / took.Seconds()
	b.StopTimer()
	close(stop)
	wg.Wait()

	after := srv.db.Metrics().DiskSpaceUsage()
	addedDisk := float64(appended.Load()) * perEvent
	retiredDisk := float64(before) * float64(perStream-keep) / perStream
	freed := float64(before) + addedDisk - float64(after)
	b.ReportMetric(took.Seconds(), "scavenge_s")
	b.ReportMetric(float64(before)/(1<<20), "disk_before_MiB")
	b.ReportMetric(float64(after)/(1<<20), "disk_after_MiB")
	b.ReportMetric(100*freed/retiredDisk, "freed_pct")
	b.ReportMetric(baseline, "appends/s_before")
	b.ReportMetric(during, "appends/s_during")
	b.ReportMetric(100*during/baseline, "append_pct")
}

func mustSubmit(b *testing.B, srv *Server, o *op) {
	res, err := srv.seq.submit(context.Background(), o)
	if err == nil {
		err = res.err
	}
	if err != nil {
		b.Fatal(err)
	}
}
