package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/protobuf/types/known/timestamppb"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/apierr"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventlog"
)

// Bounds of ReadEvents: a page's events, and the bytes of each event's
// data and metadata shown (events may be up to the store's 1 MiB).
const (
	defaultEventsPage = 20
	maxEventsPage     = 100
	maxShownBytes     = 16 << 10
	maxStreamName     = 1024
)

// ReadEvents reads a stream or $all, newest first, for the console's
// stream browser. It answers whatever the process runs: it reads the
// event store, which every process reaches.
func (s *Service) ReadEvents(ctx context.Context, req *orderlyv1.ReadEventsRequest) (*orderlyv1.ReadEventsResponse, error) {
	stream, limit := req.GetStream(), int(req.GetLimit())
	var bad []apierr.FieldViolation
	if len(stream) > maxStreamName || !utf8.ValidString(stream) {
		bad = append(bad, apierr.FieldViolation{Field: "stream", Description: fmt.Sprintf("a stream name of at most %d bytes of UTF-8", maxStreamName)})
	}
	if limit < 0 || limit > maxEventsPage {
		bad = append(bad, apierr.FieldViolation{Field: "limit", Description: fmt.Sprintf("1-%d (0: %d)", maxEventsPage, defaultEventsPage)})
	}
	if err := invalid("ReadEvents", bad); err != nil {
		return nil, err
	}
	if limit == 0 {
		limit = defaultEventsPage
	}
	if stream == "" {
		stream = eventlog.AllStream
	}
	before := req.GetBefore()
	events, err := eventlog.CallWithin(ctx, s.opts.Conn, s.opts.StoreTimeout, eventlog.Op{Method: "ReadStream", Stream: stream}, func(ctx context.Context, c *esdb.Client) ([]*esdb.RecordedEvent, error) {
		return eventlog.ReadRawBackwards(ctx, c, stream, before, uint64(limit+1))
	})
	if errors.Is(err, eventlog.ErrStreamNotFound) {
		return nil, refuse(domain.KindNotFound, "STREAM_NOT_FOUND", "stream %.64q does not exist", stream)
	}
	if err != nil {
		return nil, s.failed(ctx, err, "read events")
	}
	resp := &orderlyv1.ReadEventsResponse{}
	var last *esdb.RecordedEvent
	for _, e := range events {
		if before > 0 && cursor(stream, e) >= before {
			continue // a start the store counts in: the previous page's last
		}
		if len(resp.Events) == limit {
			resp.NextBefore = cursor(stream, last)
			break
		}
		resp.Events = append(resp.Events, storedEvent(e))
		last = e
	}
	return resp, nil
}

// cursor is where e is in stream: its revision, or its commit position in $all.
func cursor(stream string, e *esdb.RecordedEvent) uint64 {
	if stream == eventlog.AllStream {
		return e.Position.Commit
	}
	return e.EventNumber
}

func storedEvent(e *esdb.RecordedEvent) *orderlyv1.StoredEvent {
	data, cut1 := shown(e.Data)
	meta, cut2 := shown(e.UserMetadata)
	return &orderlyv1.StoredEvent{
		Stream: e.StreamID, Revision: e.EventNumber, Position: e.Position.Commit, EventId: e.EventID.String(),
		Type: e.EventType, RecordedAt: timestamppb.New(e.CreatedDate), Data: data, Metadata: meta, Truncated: cut1 || cut2,
	}
}

// shown is b as text (invalid UTF-8, as in binary events, replaced),
// cut to maxShownBytes.
func shown(b []byte) (string, bool) {
	cut := len(b) > maxShownBytes
	if cut {
		b = b[:maxShownBytes]
	}
	return strings.ToValidUTF8(string(b), "\uFFFD"), cut
}
