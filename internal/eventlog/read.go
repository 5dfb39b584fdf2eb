package eventlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/eventcodec"
)

// ErrStreamNotFound reports a stream that has no events (or never existed).
var ErrStreamNotFound = errors.New("stream not found")

// Read returns up to max decoded events of stream, forwards from revision
// from (max 0 means all of them). A missing stream is ErrStreamNotFound; an
// event that cannot be decoded fails the read.
func Read(ctx context.Context, c *esdb.Client, reg *eventcodec.Registry, stream string, from, max uint64) ([]Recorded, error) {
	raw, err := ReadRaw(ctx, c, stream, from, max)
	if err != nil {
		return nil, err
	}
	out := make([]Recorded, len(raw))
	for i, re := range raw {
		if out[i], err = Decode(reg, re); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ReadRaw is Read without decoding, for readers that show what they cannot
// decode rather than fail.
func ReadRaw(ctx context.Context, c *esdb.Client, stream string, from, max uint64) ([]*esdb.RecordedEvent, error) {
	count := max
	if count == 0 {
		count = ^uint64(0)
	}
	rs, err := c.ReadStream(ctx, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(from)}, count)
	return drain(stream, rs, err)
}

// ReadRawBackwards reads up to n events of stream, or of $all when stream
// is AllStream, newest first, from before (0: the end; a revision + 1 of a
// stream, a commit position of $all) toward the start, without decoding.
func ReadRawBackwards(ctx context.Context, c *esdb.Client, stream string, before, n uint64) ([]*esdb.RecordedEvent, error) {
	if stream == AllStream {
		var from esdb.AllPosition = esdb.End{}
		if before > 0 {
			from = esdb.Position{Commit: before, Prepare: before}
		}
		rs, err := c.ReadAll(ctx, esdb.ReadAllOptions{Direction: esdb.Backwards, From: from}, n)
		return drain(stream, rs, err)
	}
	var from esdb.StreamPosition = esdb.End{}
	if before > 0 {
		from = esdb.Revision(before - 1)
	}
	rs, err := c.ReadStream(ctx, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: from}, n)
	return drain(stream, rs, err)
}

// AllStream names $all for the readers that take it in place of a stream.
const AllStream = "$all"

// drain collects what a read opened with err returns, to its end.
func drain(stream string, rs *esdb.ReadStream, err error) ([]*esdb.RecordedEvent, error) {
	if err != nil {
		return nil, readErr(stream, err)
	}
	defer rs.Close()
	var out []*esdb.RecordedEvent
	for {
		re, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, readErr(stream, err)
		}
		out = append(out, re.Event)
	}
}

func readErr(stream string, err error) error {
	var esErr *esdb.Error
	if errors.As(err, &esErr) && esErr.Code() == esdb.ErrorCodeResourceNotFound {
		return fmt.Errorf("read %s: %w", stream, ErrStreamNotFound)
	}
	return fmt.Errorf("read %s: %w", stream, err)
}

// AllHead returns the position of the last event in the store; ok is false
// when the store is empty.
func AllHead(ctx context.Context, c *esdb.Client) (pos esdb.Position, ok bool, err error) {
	return lastBefore(ctx, c, esdb.End{})
}

// lastBefore returns the position of the last event of $all before from
// (reading backwards excludes a position); ok is false when there is none.
func lastBefore(ctx context.Context, c *esdb.Client, from esdb.AllPosition) (pos esdb.Position, ok bool, err error) {
	rs, err := c.ReadAll(ctx, esdb.ReadAllOptions{Direction: esdb.Backwards, From: from}, 1)
	if err != nil {
		return esdb.Position{}, false, fmt.Errorf("read $all: %w", err)
	}
	defer rs.Close()
	ev, err := rs.Recv()
	if errors.Is(err, io.EOF) {
		return esdb.Position{}, false, nil
	}
	if err != nil {
		return esdb.Position{}, false, fmt.Errorf("read $all: %w", err)
	}
	return ev.OriginalEvent().Position, true, nil
}

// Head returns the commit position of stream's last event. A missing stream
// is ErrStreamNotFound.
func Head(ctx context.Context, c *esdb.Client, stream string) (uint64, error) {
	rs, err := c.ReadStream(ctx, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if err != nil {
		return 0, readErr(stream, err)
	}
	defer rs.Close()
	ev, err := rs.Recv()
	if errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("read %s: %w", stream, ErrStreamNotFound)
	}
	if err != nil {
		return 0, readErr(stream, err)
	}
	return ev.OriginalEvent().Position.Commit, nil
}

// ResumePoint is where to subscribe to $all to go on from checkpoint cp
// inclusively: the position of the last event before cp, so that an event
// at cp itself is delivered. A checkpoint may be a position the server
// reported as scanned past (a filtered subscription's checkpoint), and
// EventStoreDB can report one that a later event is then written at
// (KurrentDB issue 4970): subscribing from cp, which is exclusive, would
// skip that event. What is delivered again is absorbed by the revision
// guards and idempotent steps. The zero position, or none before it, is
// the start.
func ResumePoint(ctx context.Context, c *Conn, timeout time.Duration, cp esdb.Position) (esdb.AllPosition, error) {
	if cp == (esdb.Position{}) {
		return esdb.Start{}, nil
	}
	at, err := CallWithin(ctx, c, timeout, Op{Method: "ReadAll", Stream: AllStream}, func(ctx context.Context, client *esdb.Client) (esdb.AllPosition, error) {
		pos, ok, err := lastBefore(ctx, client, cp)
		if err != nil || !ok {
			return esdb.Start{}, err
		}
		return pos, nil
	})
	if err != nil {
		return nil, fmt.Errorf("where to resume before %d: %w", cp.Commit, err)
	}
	return at, nil
}
