package faulttest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/faulttest"
	"github.com/orderly/orderly/internal/faulttest/invariant"
)

// BenchmarkScaleOut measures how fast 1, 2 and 3 instances of each
// processor, sharing its partitions, clear a backlog on this machine: for
// each count, a fresh backlog of orders is written while no processor
// runs, then the sagas alone decide it, then the projectors alone project
// it. Each reports events/s over the backlog and the CPU each instance
// used (user + system, from start to its clean exit). One iteration is
// one backlog per count; run with -benchtime 1x:
//
//	go test -run '^$' -bench ScaleOut -benchtime 1x ./internal/faulttest/
func BenchmarkScaleOut(b *testing.B) {
	s := faulttest.Start(b, faulttest.Config{Instances: 3, StoreTimeout: 5 * time.Second})
	for _, p := range append(append([]*faulttest.Proc{}, s.Sagas...), s.Projectors...) {
		p.Stop()
	}
	src := s.Sources()
	for _, n := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			for range b.N {
				backlog(b, s, 4_000)
				for _, phase := range []struct {
					name  string
					procs []*faulttest.Proc
					which invariant.Which
				}{{"saga", s.Sagas[:n], invariant.Saga}, {"projector", s.Projectors[:n], invariant.Views}} {
					from := head(b, src)
					start := time.Now()
					for _, p := range phase.procs {
						p.Restart()
					}
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
					err := invariant.SettleOf(ctx, src, phase.which)
					cancel()
					took := time.Since(start)
					if err != nil {
						b.Fatal(err)
					}
					events := head(b, src) - from
					var cpu time.Duration
					for _, p := range phase.procs {
						p.Stop()
						cpu += p.CPU()
					}
					b.ReportMetric(float64(events)/took.Seconds(), phase.name+"-events/s")
					b.ReportMetric(cpu.Seconds()/took.Seconds()/float64(n), phase.name+"-cores/instance")
					b.Logf("%s ×%d: caught up with the backlog in %v; %.2f cores each", phase.name, n, took.Round(time.Millisecond), cpu.Seconds()/took.Seconds()/float64(n))
				}
			}
		})
	}
}

// backlog writes about orders acknowledged commands (mostly orders) while
// no processor runs.
func backlog(b *testing.B, s *faulttest.System, orders int) {
	b.Helper()
	l := faulttest.StartLoad(b, s.CommandClient(), faulttest.LoadConfig{Clients: 16, Customers: 200, Pause: time.Nanosecond})
	l.WaitProgress(orders, 10*time.Minute)
	l.Stop()
}

// head is the commit position of the last event in the store.
func head(b *testing.B, src invariant.Sources) uint64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pos, err := invariant.Head(ctx, src.Store)
	if err != nil {
		b.Fatal(err)
	}
	return pos
}
