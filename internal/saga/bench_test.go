package saga_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/saga"
)

// BenchmarkBacklog measures how fast the saga decides a backlog of b.N
// orders over 200 customers (on-disk store, fsync on), by lanes. Each order
// is two steps: reserve, then approve.
//
//	go test -run '^$' -bench Backlog -benchtime 2000x ./internal/saga/
func BenchmarkBacklog(b *testing.B) {
	for _, workers := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			env := commandtest.Start(b, command.Options{}, estest.OnDisk())
			customers := make([]string, 200)
			for i := range customers {
				customers[i] = env.RegisterCustomer(b, domain.MaxCreditLimit)
			}
			appendOrders(b, env, customers, b.N)
			b.ResetTimer()
			start := time.Now()
			s := startSaga(b, env, saga.Options{Workers: workers})
			for s.metric(b, "orderly_saga_events_handled_total") < float64(2*b.N) {
				time.Sleep(5 * time.Millisecond)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "orders/s")
		})
	}
}

// appendOrders writes n OrderPlaced events as PlaceOrder would, from 16
// concurrent writers.
func appendOrders(b *testing.B, env *commandtest.Env, customers []string, n int) {
	reg := eventcodec.Default()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				id := uuid.NewString()
				ev, err := eventlog.Encode(reg, uuid.New(), domain.OrderPlaced{
					OrderID: id, CustomerID: customers[int(i)%len(customers)], Total: domain.Money{Currency: "USD", Minor: 100},
					Lines: []domain.OrderLine{{SKU: "BENCH-1", Quantity: 1, UnitPrice: domain.Money{Currency: "USD", Minor: 100}}},
				}, eventcodec.Metadata{CommandID: id, CorrelationID: id, CausationID: id})
				if err == nil {
					_, err = env.Store.AppendToStream(context.Background(), eventlog.OrderStream(id), esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, ev)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
