package command

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/gctune"
)

// BenchmarkHugeCustomer runs commands on a customer whose stream holds
// ORDERLY_BENCH_EVENTS events (default 1,000,000, each deciding another
// order, so its credit book and command index hold as many entries), on an
// on-disk store (fsync on). It reports p50/p99 of the first command after a
// restart (a new Service: cold cache, snapshot pages present) — a limit
// change, a reservation of a new order, and a resend of the customer's
// second command (a replay answered from the index), and a release of an
// old order (looked up in the page that holds it) —, the live heap a loaded
// customer adds, and p50/p99 of ChangeCreditLimit, the saga's ReserveCredit
// and a release of an old order on the cached customer.
//
//	go test -run '^$' -bench HugeCustomer -benchtime 20x -timeout 30m ./internal/command/
//	ORDERLY_BENCH_EVENTS=100000 go test -run '^$' -bench HugeCustomer -benchtime 20x ./internal/command/
func BenchmarkHugeCustomer(b *testing.B) {
	defer gctune.Apply()() // the services' garbage collector policy
	n := 1_000_000
	if v := os.Getenv("ORDERLY_BENCH_EVENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 3 {
			b.Fatalf("ORDERLY_BENCH_EVENTS=%q: want a count of 3 or more", v)
		}
	}
	connString := estest.Start(b, estest.OnDisk())
	client := estest.Client(b, connString)

	// Replicas are made by hand, not by serviceOn, whose cleanups would keep
	// every replica's cache alive: a restarted process holds one.
	opts := Options{StoreTimeout: time.Minute}
	replica := func() (*Service, func()) {
		conn, err := eventlog.Connect(connString, nil)
		if err != nil {
			b.Fatal(err)
		}
		s, err := New(conn, slog.New(slog.DiscardHandler), opts)
		if err != nil {
			b.Fatal(err)
		}
		return s, func() {
			if err := s.WaitSnapshots(context.Background()); err != nil {
				b.Error(err)
			}
			s.pages.waitBackground()
			_ = conn.Close()
		}
	}

	// The first two commands through a service, so the second can be resent
	// as a client would; the rest written straight to the stream.
	id := uuid.NewString()
	oldReserve := domain.ReserveCredit{CustomerID: id, OrderID: uuid.NewString(), Amount: usd(1)}
	oldMeta := eventcodec.Metadata{CommandID: uuid.NewString()}
	s0, close0 := replica()
	if _, err := s0.registerCustomer(testCtx(b), domain.RegisterCustomer{CustomerID: id, Name: "Ada", Email: "ada@example.com", CreditLimit: usd(1_000_000)},
		eventcodec.Metadata{CommandID: uuid.NewString()}); err != nil {
		b.Fatal(err)
	}
	oldResult, err := s0.ReserveCredit(testCtx(b), oldReserve, oldMeta)
	if err != nil {
		b.Fatal(err)
	}
	close0()
	history := make([]stored, n-2)
	for i := range history {
		history[i] = stored{domain.CreditLimitExceeded{CustomerID: id, OrderID: uuid.NewString(), Amount: usd(2_000_000)}, fmt.Sprintf("exceed-%d", i)}
	}
	t0 := time.Now()
	appendAll(b, client, eventlog.CustomerStream(id), history)
	b.Logf("%d events appended in %v", n, time.Since(t0))
	// Old orders to release, spread over the history: each is looked up
	// in the page that holds it.
	var old []string
	for i := 0; i < len(history); i += max(1, len(history)/1000) {
		old = append(old, history[i].ev.(domain.CreditLimitExceeded).OrderID)
	}
	history = nil

	first, closeFirst := replica()
	t0 = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	e := acquire(first, customers, id)
	err = first.load(ctx, e)
	first.cache.release(e)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("first load, folded from the first event: %v", time.Since(t0))
	closeFirst()
	b.Logf("snapshot pages written: %v", value(first.metrics.pagesWritten))
	first = nil

	limit := int64(1_000_000)
	changeLimit := func(s *Service) error {
		limit++
		_, err := s.changeCreditLimit(testCtx(b), domain.ChangeCreditLimit{CustomerID: id, CreditLimit: usd(limit)},
			eventcodec.Metadata{CommandID: uuid.NewString()})
		return err
	}
	reserve := func(s *Service) error {
		_, err := s.ReserveCredit(testCtx(b), domain.ReserveCredit{CustomerID: id, OrderID: uuid.NewString(), Amount: usd(1)},
			eventcodec.Metadata{CommandID: uuid.NewString()})
		return err
	}
	releaseOld := func(s *Service) error {
		_, err := s.ReleaseCredit(testCtx(b), domain.ReleaseCredit{CustomerID: id, OrderID: old[rand.IntN(len(old))]},
			eventcodec.Metadata{CommandID: uuid.NewString()})
		return err
	}
	replay := func(s *Service) error {
		res, err := s.ReserveCredit(testCtx(b), oldReserve, oldMeta)
		if err == nil && !replayOf(res, oldResult) {
			err = fmt.Errorf("resent command answered %+v; first answered %+v", res, oldResult)
		}
		return err
	}
	for _, c := range []struct {
		name string
		op   func(*Service) error
	}{{"ChangeCreditLimit", changeLimit}, {"ReserveCredit", reserve}, {"replay", replay}, {"ReleaseCredit-old", releaseOld}} {
		b.Run("first-after-restart/"+c.name, func(b *testing.B) {
			all := make([]time.Duration, 0, b.N)
			for range b.N {
				s, closeIt := replica()
				t0 := time.Now()
				err := c.op(s)
				all = append(all, time.Since(t0))
				closeIt() // its page writes and merges end before the next start
				if err != nil {
					b.Fatal(err)
				}
			}
			report(b, all)
		})
	}
	b.Run("heap-after-load", func(b *testing.B) {
		var sum uint64
		for range b.N {
			before := liveHeap()
			s, closeIt := replica()
			if err := changeLimit(s); err != nil {
				b.Fatal(err)
			}
			s.pages.waitBackground() // what it keeps, merges done
			sum += liveHeap() - before
			runtime.KeepAlive(s)
			closeIt()
		}
		b.ReportMetric(float64(sum)/float64(b.N)/(1<<20), "live-MB")
	})
	// Steady state: loaded, and its runs merged.
	s, closeIt := replica()
	defer closeIt()
	if err := changeLimit(s); err != nil {
		b.Fatal(err)
	}
	s.pages.waitBackground()
	b.Run("ChangeCreditLimit", func(b *testing.B) {
		latencies(b, func() error { return changeLimit(s) })
	})
	b.Run("ReserveCredit", func(b *testing.B) {
		latencies(b, func() error { return reserve(s) })
	})
	b.Run("ReleaseCredit-old", func(b *testing.B) {
		latencies(b, func() error { return releaseOld(s) })
	})
}

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// latencies runs op b.N times, one after the other, and reports the p50 and
// p99 of its latency.
func latencies(b *testing.B, op func() error) {
	all := make([]time.Duration, 0, b.N)
	for range b.N {
		t0 := time.Now()
		if err := op(); err != nil {
			b.Fatal(err)
		}
		all = append(all, time.Since(t0))
	}
	report(b, all)
}

// report reports the p50, p99 and max of latencies all.
func report(b *testing.B, all []time.Duration) {
	slices.Sort(all)
	ms := func(q float64) float64 { return float64(all[int(q*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
	b.ReportMetric(ms(1), "max-ms")
}
