// Package eventlog is where Orderly's domain meets the event store client:
// stream names, and the conversion between domain events and the official
// EventStoreDB client's records. Everything that talks to the store — the
// command side, the saga, the projector, the history reads — goes through it,
// so the stored shape is decided in one place.
package eventlog

import (
	"fmt"
	"strings"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
)

// Stream name prefixes: `customer-<id>` and `order-<id>`.
const (
	CustomerPrefix = "customer-"
	OrderPrefix    = "order-"
)

// CustomerStream names a customer's stream.
func CustomerStream(id string) string { return CustomerPrefix + id }

// OrderStream names an order's stream.
func OrderStream(id string) string { return OrderPrefix + id }

// StreamID splits a stream name into its prefix and aggregate ID; ok is false
// for streams that are not Orderly aggregates.
func StreamID(stream string) (prefix, id string, ok bool) {
	for _, p := range []string{CustomerPrefix, OrderPrefix} {
		if rest, found := strings.CutPrefix(stream, p); found && rest != "" {
			return p, rest, true
		}
	}
	return "", "", false
}

// Recorded is a stored event, decoded and upcast to its current schema.
type Recorded struct {
	Stream     string
	EventID    uuid.UUID
	Type       string
	Revision   uint64
	Position   uint64 // commit position in the global log
	RecordedAt time.Time
	Meta       eventcodec.Metadata // Meta.Schema is the version it was stored with
	// Event is nil when the type is one this build does not know (a newer
	// release wrote it): folds ignore it, so old binaries read new streams.
	// It is nil too beside Decode's error. Stored then keeps the payload as
	// written.
	Event  domain.Event
	Stored []byte
}

// Decode turns a client record into a domain event. The error names the
// stream, revision and position so a poison event can be found and parked.
func Decode(reg *eventcodec.Registry, rec *esdb.RecordedEvent) (Recorded, error) {
	out := Recorded{
		Stream:     rec.StreamID,
		EventID:    rec.EventID,
		Type:       rec.EventType,
		Revision:   rec.EventNumber,
		Position:   rec.Position.Commit,
		RecordedAt: rec.CreatedDate,
	}
	var err error
	if out.Meta, err = eventcodec.DecodeMetadata(rec.UserMetadata); err == nil && reg.Known(rec.EventType) {
		out.Event, err = reg.Decode(rec.EventType, out.Meta.Schema, rec.Data)
	}
	if out.Event == nil {
		out.Stored = rec.Data
	}
	if err != nil {
		return out, fmt.Errorf("event %s@%d (position %d): %w", rec.StreamID, rec.EventNumber, rec.Position.Commit, err)
	}
	return out, nil
}

// Encode turns a domain event into a client record to append, with its ID
// and metadata; meta.Schema is filled in from the registry.
func Encode(reg *eventcodec.Registry, id uuid.UUID, ev domain.Event, meta eventcodec.Metadata) (esdb.EventData, error) {
	typ, schema, payload, err := reg.Encode(ev)
	if err != nil {
		return esdb.EventData{}, err
	}
	meta.Schema = schema
	mb, err := eventcodec.EncodeMetadata(meta)
	if err != nil {
		return esdb.EventData{}, err
	}
	return esdb.EventData{
		EventID:     id,
		EventType:   typ,
		ContentType: esdb.ContentTypeJson,
		Data:        payload,
		Metadata:    mb,
	}, nil
}
