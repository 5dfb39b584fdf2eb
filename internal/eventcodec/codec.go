// Package eventcodec turns domain events into stored payloads and back.
//
// Payloads are JSON, not protobuf: EventStoreDB's UI, projections and any
// operator with jq can read them, the audit history serves them as they are,
// and an upcaster is a small function over a JSON document. The schema version
// travels in the event's metadata, beside the correlation, causation and
// command IDs, so a payload never has to be parsed to learn how to parse it.
package eventcodec

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"

	"github.com/orderly/orderly/internal/domain"
)

// ContentType is the content type of every payload and metadata document.
const ContentType = "application/json"

// Metadata is stored with every event.
type Metadata struct {
	// Schema is the version of the payload's shape.
	Schema int `json:"schema"`
	// CorrelationID ties together everything one client request caused,
	// across aggregates and saga steps.
	CorrelationID string `json:"correlation_id,omitempty"`
	// CausationID is the ID of the command or event that directly caused this
	// event.
	CausationID string `json:"causation_id,omitempty"`
	// CommandID is the idempotency key of the command that wrote the event.
	CommandID string `json:"command_id,omitempty"`
	// Command names that command (PlaceOrder, ReserveCredit, ...): a command
	// ID stands for one command, and a different one reusing it is refused.
	// Events written before it was recorded have none.
	Command string `json:"command,omitempty"`
	// Fingerprint is a digest of that command's request: a command ID stands
	// for one request, and the same command with other parameters under it
	// is refused. Events written before it was recorded have none.
	Fingerprint string `json:"fingerprint,omitempty"`
	// Actor identifies the authenticated caller, when there is one.
	Actor string `json:"actor,omitempty"`
	// TraceID and SpanID are the OpenTelemetry trace and span (hex) that
	// appended the event, under the keys the official .NET client and
	// Eventuous use: a reader continues the trace from them. Events
	// written before tracing have none.
	TraceID string `json:"$traceId,omitempty"`
	SpanID  string `json:"$spanId,omitempty"`
}

// ErrNewerSchema is in the chain of a decode error when the payload's schema
// is newer than this build knows: a newer release wrote it (mid-upgrade). It
// is not malformed, and an upgraded build will read it, so readers that must
// not lose it wait rather than set it aside.
var ErrNewerSchema = errors.New("schema newer than this build")

// Upcaster rewrites a payload of one schema version into the next version.
type Upcaster func(payload []byte) ([]byte, error)

type entry struct {
	current  int
	goType   reflect.Type
	upcaster map[int]Upcaster // from version v to v+1
}

// Registry maps event types to Go types and schema versions.
type Registry struct {
	entries map[string]entry
}

// NewRegistry returns an empty registry; Default has Orderly's events.
func NewRegistry() *Registry { return &Registry{entries: map[string]entry{}} }

// Register declares ev's type at schema version current, with upcasters from
// every older version: upcasters[v] turns version v into v+1.
func (r *Registry) Register(ev domain.Event, current int, upcasters map[int]Upcaster) {
	for v := 1; v < current; v++ {
		if upcasters[v] == nil {
			panic(fmt.Sprintf("eventcodec: %s v%d has no upcaster from v%d", ev.EventType(), current, v))
		}
	}
	r.entries[ev.EventType()] = entry{current: current, goType: reflect.TypeOf(ev), upcaster: upcasters}
}

// Types lists the registered event types, sorted; subscribers filter on them.
func (r *Registry) Types() []string {
	types := make([]string, 0, len(r.entries))
	for t := range r.entries {
		types = append(types, t)
	}
	sort.Strings(types)
	return types
}

// Current returns the schema version typ is decoded to (0 if unregistered):
// a fold of stored events depends on it, so snapshots record it.
func (r *Registry) Current(typ string) int { return r.entries[typ].current }

// Known reports whether typ is a registered event type.
func (r *Registry) Known(typ string) bool {
	_, ok := r.entries[typ]
	return ok
}

// Encode returns ev's type, current schema version and JSON payload.
func (r *Registry) Encode(ev domain.Event) (typ string, schema int, payload []byte, err error) {
	typ = ev.EventType()
	e, ok := r.entries[typ]
	if !ok {
		return "", 0, nil, fmt.Errorf("encode %s: unregistered event type", typ)
	}
	payload, err = json.Marshal(ev)
	if err != nil {
		return "", 0, nil, fmt.Errorf("encode %s: %w", typ, err)
	}
	return typ, e.current, payload, nil
}

// Upcast brings a stored payload to the current schema of its type and
// returns it with that version. A payload from a newer schema than this
// binary knows is refused rather than misread.
func (r *Registry) Upcast(typ string, schema int, payload []byte) ([]byte, int, error) {
	e, ok := r.entries[typ]
	if !ok {
		return nil, 0, fmt.Errorf("upcast %s: unregistered event type", typ)
	}
	if schema > e.current {
		return nil, 0, fmt.Errorf("upcast %s: schema v%d unknown: %w (it knows v1-v%d)", typ, schema, ErrNewerSchema, e.current)
	}
	if schema < 1 {
		return nil, 0, fmt.Errorf("upcast %s: schema v%d unknown (this build knows v1-v%d)", typ, schema, e.current)
	}
	for v := schema; v < e.current; v++ {
		var err error
		if payload, err = e.upcaster[v](payload); err != nil {
			return nil, 0, fmt.Errorf("upcast %s v%d to v%d: %w", typ, v, v+1, err)
		}
	}
	return payload, e.current, nil
}

// Decode upcasts a stored payload and unmarshals it into its domain event.
func (r *Registry) Decode(typ string, schema int, payload []byte) (domain.Event, error) {
	current, _, err := r.Upcast(typ, schema, payload)
	if err != nil {
		return nil, err
	}
	ptr := reflect.New(r.entries[typ].goType)
	if err := json.Unmarshal(current, ptr.Interface()); err != nil {
		return nil, fmt.Errorf("decode %s: %w", typ, err)
	}
	return ptr.Elem().Interface().(domain.Event), nil
}

// EncodeMetadata returns the stored metadata document.
func EncodeMetadata(m Metadata) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode metadata: %w", err)
	}
	return b, nil
}

// DecodeMetadata reads a stored metadata document. Events written by other
// tools may carry none; they read as schema version 1.
func DecodeMetadata(b []byte) (Metadata, error) {
	var m Metadata
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			return Metadata{}, fmt.Errorf("decode metadata: %w", err)
		}
	}
	if m.Schema == 0 {
		m.Schema = 1
	}
	return m, nil
}
