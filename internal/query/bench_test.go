package query_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/views"
)

// BenchmarkReads measures GetOrder and ListOrders over gRPC and over REST in
// one run, on the SQLite views: with one client, the latency of a call
// (p50/p99); with 8 concurrent clients, the throughput (reads/s).
//
//	go test -run '^$' -bench Reads ./internal/query
func BenchmarkReads(b *testing.B) {
	e := start(b, sqliteStore(b))
	const orders, customers = 10_000, 100
	docs := make([]views.OrderDoc, orders)
	for i := range docs {
		docs[i] = orderDoc(i+1, i%customers, domain.StatusApproved)
	}
	e.apply(1, docs, nil)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	get := func(path string) error {
		resp, err := client.Get(e.http + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return nil
	}
	ops := []struct {
		name string
		call func(i int) error
	}{
		{"GetOrder/gRPC", func(i int) error {
			_, err := e.client.GetOrder(e.ctx, &orderlyv1.GetOrderRequest{OrderId: id(2, i%orders+1)})
			return err
		}},
		{"GetOrder/REST", func(i int) error { return get("/v1/orders/" + id(2, i%orders+1)) }},
		{"ListOrders/gRPC", func(i int) error {
			_, err := e.client.ListOrders(e.ctx, &orderlyv1.ListOrdersRequest{CustomerId: id(1, i%customers), PageSize: 20})
			return err
		}},
		{"ListOrders/REST", func(i int) error { return get("/v1/orders?page_size=20&customer_id=" + id(1, i%customers)) }},
	}
	for _, clients := range []int{1, 8} {
		for _, op := range ops {
			b.Run(fmt.Sprintf("%s/clients=%d", op.name, clients), func(b *testing.B) { measure(b, clients, op.call) })
		}
	}
}

// measure runs call b.N times from workers goroutines and reports the rate
// and the latency percentiles.
func measure(b *testing.B, workers int, call func(i int) error) {
	lat := make([][]time.Duration, workers)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			for i := w; i < b.N; i += workers {
				t0 := time.Now()
				if err := call(i); err != nil {
					b.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "reads/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op") // the rate and latencies say it better
}
