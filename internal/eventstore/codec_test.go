package eventstore

import (
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
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

// subject reads the stream name and type from the stored wire form exactly
// as a full decode would, and refuses a malformed record.
func TestEntrySubject(t *testing.T) {
	rec := &record{
		StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte("order-42")},
		StreamRevision:   7,
		Metadata:         map[string]string{"content-type": "application/json", metaType: "orderly.OrderPlaced", "created": "1"},
		Data:             []byte(`{"x":1}`),
	}
	raw, err := proto.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []*entry{{raw: raw}, {raw: raw, rec: rec}} {
		if got, err := e.subject(false); err != nil || got != "order-42" {
			t.Errorf("stream (decoded %v) = %q, %v", e.rec != nil, got, err)
		}
		if got, err := e.subject(true); err != nil || got != "orderly.OrderPlaced" {
			t.Errorf("type (decoded %v) = %q, %v", e.rec != nil, got, err)
		}
	}
	if _, err := (&entry{raw: []byte{0x12, 0x7f}}).subject(false); err == nil {
		t.Error("truncated record: no error")
	}
}
