package viewstest

import (
	"context"
	"sync/atomic"

	"github.com/orderly/orderly/internal/views"
)

// CountingReader counts the checkpoint reads that reach a real view store.
type CountingReader struct {
	views.CheckpointReader
	Reads atomic.Int64
}

func (c *CountingReader) Checkpoint(ctx context.Context) (uint64, error) {
	c.Reads.Add(1)
	return c.CheckpointReader.Checkpoint(ctx)
}
