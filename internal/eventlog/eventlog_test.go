package eventlog_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
)

func TestStreamID(t *testing.T) {
	for _, tt := range []struct {
		stream, prefix, id string
		ok                 bool
	}{
		{eventlog.CustomerStream("abc"), eventlog.CustomerPrefix, "abc", true},
		{eventlog.OrderStream("xyz"), eventlog.OrderPrefix, "xyz", true},
		{"order-", "", "", false},
		{"$stats", "", "", false},
		{"shipment-1", "", "", false},
	} {
		prefix, id, ok := eventlog.StreamID(tt.stream)
		if prefix != tt.prefix || id != tt.id || ok != tt.ok {
			t.Errorf("StreamID(%q) = %q, %q, %v", tt.stream, prefix, id, ok)
		}
	}
}

// Encode then Decode (as the store hands a record back) preserves the event
// and its metadata.
func TestEncodeDecode(t *testing.T) {
	reg := eventcodec.Default()
	ev := domain.OrderApproved{OrderID: "o", CustomerID: "c"}
	id := uuid.New()
	data, err := eventlog.Encode(reg, id, ev, eventcodec.Metadata{CorrelationID: "corr", CommandID: "cmd"})
	if err != nil {
		t.Fatal(err)
	}
	if data.EventType != domain.TypeOrderApproved || data.ContentType != esdb.ContentTypeJson || data.EventID != id {
		t.Fatalf("encoded = %+v", data)
	}
	now := time.Now().UTC()
	rec := &esdb.RecordedEvent{
		EventID: id, EventType: data.EventType, StreamID: eventlog.OrderStream("o"), EventNumber: 3,
		Position: esdb.Position{Commit: 99, Prepare: 99}, CreatedDate: now, Data: data.Data, UserMetadata: data.Metadata,
	}
	got, err := eventlog.Decode(reg, rec)
	if err != nil {
		t.Fatal(err)
	}
	want := eventlog.Recorded{
		Stream: "order-o", EventID: id, Type: domain.TypeOrderApproved, Revision: 3, Position: 99, RecordedAt: now,
		Meta:  eventcodec.Metadata{Schema: 1, CorrelationID: "corr", CommandID: "cmd"},
		Event: ev,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded:\n got %+v\nwant %+v", got, want)
	}

	rec.Data = []byte("not json")
	if _, err := eventlog.Decode(reg, rec); err == nil {
		t.Fatal("poison payload decoded")
	}
}
