package command_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
)

// benchWorkers is the concurrency of BenchmarkPlaceOrder's sub-benchmarks.
const benchWorkers = 16

// BenchmarkPlaceOrder compares PlaceOrder through gRPC (validate, read the
// order and customer streams, decide, append) with bare official-client
// appends of the same event, on one on-disk store (fsync on) in one run, at
// equal concurrency.
//
//	go test -run '^$' -bench PlaceOrder -benchtime 4000x ./internal/command/
func BenchmarkPlaceOrder(b *testing.B) {
	env := commandtest.Start(b, command.Options{}, estest.OnDisk())
	cust := env.RegisterCustomer(b, domain.MaxCreditLimit)
	lines := []*orderlyv1.OrderLine{{Sku: "BENCH-1", Quantity: 2, UnitPrice: commandtest.USD(1_999)}}
	reg := eventcodec.Default()

	b.Run("raw-append", func(b *testing.B) {
		runParallel(b, benchWorkers, func(ctx context.Context) error {
			id := uuid.NewString()
			ev, err := eventlog.Encode(reg, uuid.New(), domain.OrderPlaced{
				OrderID: id, CustomerID: cust, Total: domain.Money{Currency: "USD", Minor: 3_998},
				Lines: []domain.OrderLine{{SKU: "BENCH-1", Quantity: 2, UnitPrice: domain.Money{Currency: "USD", Minor: 1_999}}},
			}, eventcodec.Metadata{CommandID: id, CorrelationID: id, CausationID: id})
			if err != nil {
				return err
			}
			_, err = env.Store.AppendToStream(ctx, eventlog.OrderStream(id), esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, ev)
			return err
		})
	})
	b.Run("command-svc", func(b *testing.B) {
		runParallel(b, benchWorkers, func(ctx context.Context) error {
			_, err := env.API.PlaceOrder(ctx, &orderlyv1.PlaceOrderRequest{CommandId: uuid.NewString(), CustomerId: cust, Lines: lines})
			return err
		})
	})
}

// BenchmarkColdCustomer measures a command on a customer not in the cache,
// as every first command after a restart is, and every command of a
// deployment whose customers outnumber its cache: ChangeCreditLimit, one
// at a time, in turn on 1,000 customers of a few events each (no snapshot
// pages), with a cache too small to keep any.
//
//	go test -run '^$' -bench ColdCustomer -benchtime 3000x ./internal/command/
func BenchmarkColdCustomer(b *testing.B) {
	env := commandtest.Start(b, command.Options{CacheBytes: 1}, estest.OnDisk())
	customers := make([]string, 1000)
	for i := range customers {
		customers[i] = env.RegisterCustomer(b, 100_000)
	}
	var n atomic.Int64
	runParallel(b, 1, func(ctx context.Context) error {
		i := n.Add(1)
		_, err := env.API.ChangeCreditLimit(ctx, &orderlyv1.ChangeCreditLimitRequest{
			CommandId: uuid.NewString(), CustomerId: customers[i%int64(len(customers))], CreditLimit: commandtest.USD(100_000 + i),
		})
		return err
	})
}

// runParallel spreads b.N calls of op over workers goroutines and reports
// throughput and latency percentiles.
func runParallel(b *testing.B, workers int, op func(context.Context) error) {
	ctx := context.Background()
	var next atomic.Int64
	latencies := make([][]time.Duration, workers)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := op(ctx); err != nil {
					errs <- err
					return
				}
				latencies[w] = append(latencies[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	all := slices.Concat(latencies...)
	slices.Sort(all)
	ms := func(q float64) float64 { return float64(all[int(q*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "cmds/s")
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
}
