package eventstore

import (
	"encoding/binary"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/google/uuid"
)

// System metadata keys the client reads from every event; "created" must be a
// decimal count of 100 ns ticks since the Unix epoch or the client exits.
const (
	metaType        = "type"
	metaContentType = "content-type"
	metaCreated     = "created"
)

const (
	contentTypeBinary      = "application/octet-stream"
	eventTypeStreamDeleted = "$streamDeleted"
)

func newRecord(stream string, id []byte, eventType, contentType string, customMetadata, data []byte) *record {
	return &record{
		Id:               structuredUUID(id),
		StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(stream)},
		Metadata:         map[string]string{metaType: eventType, metaContentType: contentType},
		CustomMetadata:   customMetadata,
		Data:             data,
	}
}

func newEventID() []byte {
	id := uuid.New()
	return id[:]
}

// structuredUUID is the client's wire form of an event ID: the 16 bytes as two
// big-endian int64 halves.
func structuredUUID(id []byte) *shared.UUID {
	return &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
		MostSignificantBits:  int64(binary.BigEndian.Uint64(id[:8])),
		LeastSignificantBits: int64(binary.BigEndian.Uint64(id[8:])),
	}}}
}

// eventID returns the 16 bytes of a stored event's ID.
func eventID(rec *record) []byte {
	id, _ := parseEventID(rec.GetId())
	return id
}

// parseEventID accepts both forms a client may send.
func parseEventID(id *shared.UUID) ([]byte, bool) {
	switch v := id.GetValue().(type) {
	case *shared.UUID_Structured_:
		b := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(v.Structured.GetMostSignificantBits()))
		return binary.BigEndian.AppendUint64(b, uint64(v.Structured.GetLeastSignificantBits())), true
	case *shared.UUID_String_:
		u, err := uuid.Parse(v.String_)
		if err != nil {
			return nil, false
		}
		return u[:], true
	}
	return nil, false
}

// withStringID is rec with its ID in string form, for readers that ask for it.
func withStringID(rec *record) *record {
	id, _ := uuid.FromBytes(eventID(rec))
	return &record{
		Id:               &shared.UUID{Value: &shared.UUID_String_{String_: id.String()}},
		StreamIdentifier: rec.StreamIdentifier,
		StreamRevision:   rec.StreamRevision,
		PreparePosition:  rec.PreparePosition,
		CommitPosition:   rec.CommitPosition,
		Metadata:         rec.Metadata,
		CustomMetadata:   rec.CustomMetadata,
		Data:             rec.Data,
	}
}
