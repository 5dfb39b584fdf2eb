package saga_test

import (
	"context"
	"fmt"
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

// BenchmarkDecisionLatency places b.N orders over 200 customers through the
// command API at a steady 300/s (on-disk store) and measures how long after
// PlaceOrder was acknowledged the saga's OrderApproved is in the log.
//
//	go test -run '^$' -bench DecisionLatency -benchtime 3000x ./internal/saga/
func BenchmarkDecisionLatency(b *testing.B) {
	const rate = 300
	env := commandtest.Start(b, command.Options{}, estest.OnDisk())
	customers := make([]string, 200)
	for i := range customers {
		customers[i] = env.RegisterCustomer(b, domain.MaxCreditLimit)
	}
	startSaga(b, env, saga.Options{})
	sub, err := env.Store.SubscribeToAll(context.Background(), esdb.SubscribeToAllOptions{
		From: esdb.End{}, Filter: &esdb.SubscriptionFilter{Type: esdb.EventFilterType, Prefixes: []string{domain.TypeOrderApproved}},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()

	var mu sync.Mutex
	acked := map[string]time.Time{}
	var latencies []time.Duration
	b.ResetTimer()
	start := time.Now()
	go func() {
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		for i := range b.N {
			<-tick.C
			go func() {
				resp, err := env.API.PlaceOrder(context.Background(), &orderlyv1.PlaceOrderRequest{
					CustomerId: customers[i%len(customers)], Lines: []*orderlyv1.OrderLine{{Sku: "BENCH-1", Quantity: 1, UnitPrice: commandtest.USD(100)}},
				})
				if err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				acked[resp.OrderId] = time.Now()
				mu.Unlock()
			}()
		}
	}()
	approvedAt := map[string]time.Time{}
	for len(approvedAt) < b.N {
		ev := sub.Recv()
		if ev.SubscriptionDropped != nil {
			b.Fatal(ev.SubscriptionDropped.Error)
		}
		if ev.EventAppeared != nil {
			_, id, _ := eventlog.StreamID(ev.EventAppeared.Event.StreamID)
			approvedAt[id] = time.Now()
		}
	}
	elapsed := time.Since(start)
	mu.Lock()
	for id, at := range approvedAt {
		var d time.Duration // an approval seen before its ack was noted counts as 0
		if a, ok := acked[id]; ok && at.After(a) {
			d = at.Sub(a)
		}
		latencies = append(latencies, d)
	}
	mu.Unlock()
	slices.Sort(latencies)
	ms := func(q float64) float64 {
		return float64(latencies[int(q*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "orders/s")
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
	b.ReportMetric(ms(1), "max-ms")
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
