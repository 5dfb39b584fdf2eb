package eventstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkGroupCommit measures durable appends at the storage layer, without
// gRPC or the client, to show what group commit alone gives: with many
// writers, one fsync covers many appends.
func BenchmarkGroupCommit(b *testing.B) {
	for _, writers := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			srv, err := Open(Config{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for w := range writers {
				wg.Go(func() {
					stream := fmt.Sprintf("bench-%d", w)
					for next.Add(1) <= int64(b.N) {
						rec := newRecord(stream, newEventID(), "e", "application/json", nil, []byte(`{}`))
						res, err := srv.seq.submit(context.Background(), &op{kind: opAppend, stream: stream, events: []*record{rec}})
						if err == nil {
							err = res.err
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
		})
	}
}
