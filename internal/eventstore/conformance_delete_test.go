package eventstore_test

import (
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"google.golang.org/grpc/codes"
)

func TestSoftDelete(t *testing.T) {
	stream := streamName(t, "soft")
	c := newClient(t)
	mustAppend(t, c, stream, esdb.NoStream{}, events(3, "e")...)
	res, err := c.DeleteStream(testCtx(t), stream, esdb.DeleteStreamOptions{ExpectedRevision: esdb.Revision(2)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Position.Commit == 0 {
		t.Fatalf("delete position = %v, want > 0", res.Position)
	}
	_, err = readStream(t, c, stream, esdb.ReadStreamOptions{}, 10)
	wantCode(t, err, esdb.ErrorCodeResourceNotFound)

	// A deleted stream does not exist for expectations...
	_, err = c.AppendToStream(testCtx(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.StreamExists{}}, events(1, "e")...)
	wantCode(t, err, esdb.ErrorCodeWrongExpectedVersion)
	// ...and appending recreates it, continuing the revisions.
	w := mustAppend(t, c, stream, esdb.NoStream{}, events(1, "again")...)
	if w.NextExpectedVersion != 3 {
		t.Fatalf("recreated stream: next = %d, want 3", w.NextExpectedVersion)
	}
	evs, err := readStream(t, c, stream, esdb.ReadStreamOptions{}, 10)
	if err != nil || len(evs) != 1 || evs[0].Event.EventNumber != 3 || evs[0].Event.EventType != "again" {
		t.Fatalf("recreated stream reads %v, %v; want only revision 3", ids(evs), err)
	}
	back, _ := readStream(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 10)
	if len(back) != 1 {
		t.Fatalf("backwards read of recreated stream: %v", ids(back))
	}

	// Expected revision is checked on delete too.
	_, err = c.DeleteStream(testCtx(t), stream, esdb.DeleteStreamOptions{ExpectedRevision: esdb.Revision(0)})
	if err == nil || !strings.Contains(err.Error(), "wrong expected version") {
		t.Fatalf("delete at a stale revision: %v, want a wrong expected version error", err)
	}
}

func TestTombstone(t *testing.T) {
	stream := streamName(t, "hard")
	c := newClient(t)
	mustAppend(t, c, stream, esdb.NoStream{}, events(2, "e")...)
	res, err := c.TombstoneStream(testCtx(t), stream, esdb.TombstoneStreamOptions{ExpectedRevision: esdb.StreamExists{}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Position.Commit == 0 {
		t.Fatalf("tombstone position = %v, want > 0", res.Position)
	}
	_, err = readStream(t, c, stream, esdb.ReadStreamOptions{}, 10)
	wantCode(t, err, esdb.ErrorCodeStreamDeleted)
	for _, exp := range []esdb.ExpectedRevision{esdb.Any{}, esdb.NoStream{}, esdb.Revision(1)} {
		_, err = c.AppendToStream(testCtx(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, events(1, "e")...)
		wantCode(t, err, esdb.ErrorCodeStreamDeleted)
	}
	_, err = c.DeleteStream(testCtx(t), stream, esdb.DeleteStreamOptions{})
	if err == nil || !strings.Contains(err.Error(), "deleted") {
		t.Fatalf("soft delete after tombstone: %v", err)
	}
	_, err = c.SubscribeToStream(testCtx(t), stream, esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	wantCode(t, err, esdb.ErrorCodeStreamDeleted)
	// The tombstone is in $all, as in EventStoreDB: the last event there,
	// unless others write to the same server.
	if estest.Real() {
		return
	}
	last := readAll(t, c, esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if len(last) != 1 || last[0].Event.EventType != "$streamDeleted" || last[0].Event.Position != res.Position {
		t.Fatalf("last $all event = %v, want the tombstone at %v", ids(last), res.Position)
	}
}

func TestTombstoneReachesLiveStreamSubscriber(t *testing.T) {
	stream := streamName(t, "doomed")
	c := newClient(t)
	mustAppend(t, c, stream, esdb.NoStream{}, events(1, "e")...)
	sub := subscribeFromStart(t, c, stream)
	if _, err := c.TombstoneStream(testCtx(t), stream, esdb.TombstoneStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	r := collect(t, sub, 2, 10*time.Second)
	if len(r.events) != 2 || r.events[1].EventType != "$streamDeleted" {
		t.Fatalf("got %v, want the event then the tombstone", revisionsOf(r.events))
	}
}

// A soft delete of a stream with neither events nor metadata is refused
// whatever the expectation, as EventStoreDB's writer does; a tombstone is not.
func TestDeleteMissingStream_LikeEventStoreDB(t *testing.T) {
	stream, withMeta := streamName(t, "ghost"), streamName(t, "ghost-meta")
	c := newClient(t)
	for _, exp := range []esdb.ExpectedRevision{esdb.NoStream{}, esdb.Any{}, esdb.StreamExists{}} {
		_, err := c.DeleteStream(testCtx(t), stream, esdb.DeleteStreamOptions{ExpectedRevision: exp})
		if err == nil || !strings.Contains(err.Error(), "wrong expected version") {
			t.Fatalf("soft delete of a missing stream, expecting %T: %v, want a wrong expected version error", exp, err)
		}
	}
	// With metadata, the stream can be soft-deleted before its first event.
	if _, err := c.SetStreamMetadata(testCtx(t), withMeta, esdb.AppendToStreamOptions{}, esdb.StreamMetadata{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteStream(testCtx(t), withMeta, esdb.DeleteStreamOptions{ExpectedRevision: esdb.NoStream{}}); err != nil {
		t.Fatalf("soft delete of a stream with only metadata: %v", err)
	}
	if _, err := c.TombstoneStream(testCtx(t), stream, esdb.TombstoneStreamOptions{ExpectedRevision: esdb.NoStream{}}); err != nil {
		t.Fatalf("tombstone missing stream: %v", err)
	}
	_, err := c.AppendToStream(testCtx(t), stream, esdb.AppendToStreamOptions{}, events(1, "e")...)
	wantCode(t, err, esdb.ErrorCodeStreamDeleted)
}

func TestLimitsAndBadInput(t *testing.T) {
	c := newClient(t, estest.WithConfig(func(cfg *eventstore.Config) {
		cfg.MaxEventSize = 1 << 10
		cfg.MaxAppendSize = 4 << 10
	}))
	big := events(1, "e")
	big[0].Data = make([]byte, 2<<10)
	_, err := c.AppendToStream(testCtx(t), "limits", esdb.AppendToStreamOptions{}, big...)
	wantStatus(t, err, codes.InvalidArgument)
	if !strings.Contains(err.Error(), "MaxEventSize") {
		t.Fatalf("error %q does not name the limit", err)
	}

	many := events(10, "e")
	for i := range many {
		many[i].Data = make([]byte, 900)
	}
	_, err = c.AppendToStream(testCtx(t), "limits", esdb.AppendToStreamOptions{}, many...)
	wantStatus(t, err, codes.InvalidArgument)
	if !strings.Contains(err.Error(), "MaxAppendSize") {
		t.Fatalf("error %q does not name the limit", err)
	}
	// Nothing of a rejected append was written.
	_, err = readStream(t, c, "limits", esdb.ReadStreamOptions{}, 10)
	wantCode(t, err, esdb.ErrorCodeResourceNotFound)

	_, err = c.AppendToStream(testCtx(t), "", esdb.AppendToStreamOptions{}, events(1, "e")...)
	wantStatus(t, err, codes.InvalidArgument)
	_, err = c.AppendToStream(testCtx(t), "bad\x00name", esdb.AppendToStreamOptions{}, events(1, "e")...)
	wantStatus(t, err, codes.InvalidArgument)
	_, err = c.AppendToStream(testCtx(t), "no-type", esdb.AppendToStreamOptions{}, esdb.EventData{ContentType: esdb.ContentTypeJson})
	wantStatus(t, err, codes.InvalidArgument)

	// The store still works after all that.
	mustAppend(t, c, "limits", esdb.NoStream{}, events(1, "e")...)
}

func TestOutsideTheSubsetIsUnimplemented(t *testing.T) {
	if estest.Real() {
		t.Skip("asserts what only the embedded store leaves unimplemented")
	}
	c := newClient(t)
	_, err := c.AppendToStream(testCtx(t), "$system", esdb.AppendToStreamOptions{}, events(1, "e")...)
	wantCode(t, err, esdb.ErrorCodeUnsupportedFeature)
	_, err = c.AppendToStream(testCtx(t), "$$$system", esdb.AppendToStreamOptions{}, events(1, "$metadata")...)
	wantCode(t, err, esdb.ErrorCodeUnsupportedFeature)
	err = c.CreatePersistentSubscription(testCtx(t), "order-1", "group", esdb.PersistentStreamSubscriptionOptions{})
	wantCode(t, err, esdb.ErrorCodeUnsupportedFeature)
	if !strings.Contains(err.Error(), "not supported by the embedded event store") {
		t.Fatalf("error %q does not say why", err)
	}
	// The client is still usable afterwards.
	mustAppend(t, c, "order-1", esdb.NoStream{}, events(1, "e")...)
}
