package saga

import (
	"context"
	"errors"
	"fmt"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/eventlog"
)

// DefaultCheckpointMaxCount is the $maxCount the saga sets on its checkpoint
// stream. It reads only the latest checkpoint; the others are a trail for
// operators. Unbounded, the stream gains an event per save for ever (one a
// second while busy: ~31 million a year).
//
// The dead-letter stream is left without one on purpose: an unresolved dead
// letter is needed until a replay resolves it, however many letters and
// resolutions came after it, and a count cannot tell the two apart. That
// stream grows only with events the saga could not act on.
const DefaultCheckpointMaxCount = 1000

// boundCheckpoints sets $maxCount on the checkpoint stream through the
// stream's metadata, keeping whatever else an operator put there. It writes
// only when the bound differs, so a restart writes nothing.
func (s *Saga) boundCheckpoints(ctx context.Context) error {
	_, err := eventlog.CallWithin(ctx, s.conn, s.opts.StoreTimeout, eventlog.Op{Method: "GetStreamMetadata", Stream: s.opts.CheckpointStream}, func(ctx context.Context, c *esdb.Client) (struct{}, error) {
		meta, err := c.GetStreamMetadata(ctx, s.opts.CheckpointStream, esdb.ReadStreamOptions{})
		var esErr *esdb.Error
		switch {
		case errors.As(err, &esErr) && esErr.Code() == esdb.ErrorCodeResourceNotFound:
			meta = &esdb.StreamMetadata{} // no metadata yet
		case err != nil:
			return struct{}{}, err
		}
		if n := meta.MaxCount(); n != nil && *n == s.opts.CheckpointMaxCount {
			return struct{}{}, nil
		}
		meta.SetMaxCount(s.opts.CheckpointMaxCount)
		_, err = c.SetStreamMetadata(ctx, s.opts.CheckpointStream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, *meta)
		return struct{}{}, err
	})
	if err != nil {
		return fmt.Errorf("set $maxCount %d on %s: %w", s.opts.CheckpointMaxCount, s.opts.CheckpointStream, err)
	}
	return nil
}
