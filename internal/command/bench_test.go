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

// benchWorkers is the concurrency of both sub-benchmarks.
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
		runParallel(b, func(ctx context.Context) error {
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
		runParallel(b, func(ctx context.Context) error {
			_, err := env.API.PlaceOrder(ctx, &orderlyv1.PlaceOrderRequest{CommandId: uuid.NewString(), CustomerId: cust, Lines: lines})
			return err
		})
	})
}

// runParallel spreads b.N calls of op over benchWorkers goroutines and
// reports throughput and latency percentiles.
func runParallel(b *testing.B, op func(context.Context) error) {
	ctx := context.Background()
	var next atomic.Int64
	latencies := make([][]time.Duration, benchWorkers)
	errs := make(chan error, benchWorkers)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range benchWorkers {
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
