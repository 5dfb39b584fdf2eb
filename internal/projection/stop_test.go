package projection_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/projection"
	"github.com/orderly/orderly/internal/views"
)

// gatedApply is a view store whose writes wait for release, so that a test
// can stop the projector while a batch is being written.
type gatedApply struct {
	views.Store
	writing chan struct{} // closed at the first write
	release chan struct{}
	once    *sync.Once
}

func (s gatedApply) Apply(ctx context.Context, t views.Target, b views.Batch) error {
	s.once.Do(func() { close(s.writing) })
	<-s.release
	return s.Store.Apply(ctx, t, b)
}

// TestStopFinishesBatch: a projector stopped while it writes a batch
// finishes that write, checkpoint included, before Run returns, so a
// restart does not redo it.
func TestStopFinishesBatch(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, open func(t *testing.T) views.Store) {
		client, conn := connect(t, estest.Start(t))
		store := open(t)
		pos := newWriter(t, client).append(eventlog.CustomerStream("c1"),
			domain.CustomerRegistered{CustomerID: "c1", Name: "Ada", Email: "ada@example.com", CreditLimit: usd(100)})
		gated := gatedApply{Store: store, writing: make(chan struct{}), release: make(chan struct{}), once: &sync.Once{}}
		p, err := projection.New(conn, gated, quietLog(), projection.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		<-gated.writing
		cancel() // stop while the batch is being written
		close(gated.release)
		if err := <-done; err != nil {
			t.Fatalf("Run = %v", err)
		}
		for _, v := range views.All() {
			st, err := store.State(testCtx(t, time.Minute), v)
			if err != nil {
				t.Fatal(err)
			}
			if st.LiveCheckpoint != pos {
				t.Errorf("%s: checkpoint after the stop %d, want %d (the batch being written)", v, st.LiveCheckpoint, pos)
			}
		}
	})
}
