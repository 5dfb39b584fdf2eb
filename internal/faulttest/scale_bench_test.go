package faulttest_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/faulttest"
	"github.com/orderly/orderly/internal/faulttest/invariant"
	"github.com/orderly/orderly/internal/saga"
	"github.com/orderly/orderly/internal/views"
)

// BenchmarkScaleOut measures how fast 1, 2 and 3 instances of each
// processor, sharing its partitions, clear a backlog on this machine (SQLite
// views). For each count the instances start and settle their shares,
// then are paused (SIGSTOP) while a backlog of commands is written; the
// sagas are woken and decide it, then the projectors are woken and project
// it. Each phase reports the log's events it went through per second and
// the CPU each instance used meanwhile (from /proc). The leases outlast
// the pause, so what is measured is the shared work, not a takeover. One
// iteration is one backlog per count; run with -benchtime 1x:
//
//	go test -run '^$' -bench ScaleOut -benchtime 1x ./internal/faulttest/
func BenchmarkScaleOut(b *testing.B) {
	s := faulttest.Start(b, faulttest.Config{Instances: 3, StoreTimeout: 5 * time.Second, LeaseTTL: 5 * time.Minute})
	for _, p := range slices.Concat(s.Sagas, s.Projectors) {
		p.Stop()
	}
	src := s.Sources()
	watch := faulttest.WatchLeases(b, src.Leases, 100*time.Millisecond, true)
	for _, n := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			sagas, projectors := s.Sagas[:n], s.Projectors[:n]
			for range b.N {
				for proc, ps := range map[string][]*faulttest.Proc{saga.DefaultProcessor: sagas, views.LeaseProcessor: projectors} {
					var names []string
					for _, p := range ps {
						p.Restart()
						names = append(names, p.Name())
					}
					watch.WaitOwned(time.Minute, proc, names...)
				}
				for _, p := range slices.Concat(sagas, projectors) {
					pauseUnlocked(b, s, p)
				}
				from := head(b, src)
				backlog(b, s, fmt.Sprintf("backlog-%d", n), 20_000)
				for _, phase := range []struct {
					name  string
					procs []*faulttest.Proc
					which invariant.Which
				}{{"saga", sagas, invariant.Saga}, {"projector", projectors, invariant.Views}} {
					events := head(b, src) - from // the embedded store numbers its events
					cpu := make([]time.Duration, n)
					for i, p := range phase.procs {
						cpu[i] = p.CPUNow()
					}
					start := time.Now()
					for _, p := range phase.procs {
						p.Resume()
					}
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
					err := invariant.SettleOf(ctx, src, phase.which)
					cancel()
					took := time.Since(start)
					if err != nil {
						b.Fatal(err)
					}
					var cores []string
					var sum time.Duration
					for i, p := range phase.procs {
						used := p.CPUNow() - cpu[i]
						sum += used
						cores = append(cores, fmt.Sprintf("%.2f", used.Seconds()/took.Seconds()))
					}
					b.ReportMetric(float64(events)/took.Seconds(), phase.name+"-events/s")
					b.ReportMetric(sum.Seconds()/took.Seconds()/float64(n), phase.name+"-cores/instance")
					b.Logf("%s ×%d: %d events in %v (%.0f/s); cores per instance %v", phase.name, n, events,
						took.Round(time.Millisecond), float64(events)/took.Seconds(), cores)
				}
				for _, p := range slices.Concat(sagas, projectors) {
					p.Stop()
				}
			}
		})
	}
}

// backlog writes about n acknowledged commands (mostly orders); name sets
// its command IDs apart.
func backlog(b *testing.B, s *faulttest.System, name string, n int) {
	b.Helper()
	l := faulttest.StartLoad(b, s.CommandClient(), faulttest.LoadConfig{Clients: 16, Customers: 200, Pause: time.Nanosecond, Name: name})
	l.WaitProgress(n, 10*time.Minute)
	l.Stop()
}

// head is the commit position of the last event in the store.
func head(b *testing.B, src invariant.Sources) uint64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pos, _, err := eventlog.AllHead(ctx, src.Store)
	if err != nil {
		b.Fatal(err)
	}
	return pos.Commit
}
