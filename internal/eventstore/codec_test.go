package eventstore

import (
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/protobuf/proto"
)

// The hand-built response must decode to what proto would have encoded.
func TestEventResponseMatchesProto(t *testing.T) {
	rec := newRecord("order-1", newEventID(), "orderly.OrderPlaced", "application/json", []byte("meta"), []byte(`{"a":1}`))
	rec.StreamRevision, rec.CommitPosition, rec.PreparePosition = 7, 1<<40, 1<<40
	raw, err := proto.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	want := &streams.ReadResp{Content: &streams.ReadResp_Event{Event: &streams.ReadResp_ReadEvent{
		Event:    rec,
		Position: &streams.ReadResp_ReadEvent_CommitPosition{CommitPosition: rec.CommitPosition},
	}}}
	got := &streams.ReadResp{}
	if err := proto.Unmarshal(eventResponse(raw, rec.CommitPosition), got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("decoded %v, want %v", got, want)
	}
}
