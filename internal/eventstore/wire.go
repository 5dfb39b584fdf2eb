package eventstore

import (
	"errors"
	"slices"
	"unicode/utf8"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/protobuf/encoding/protowire"
)

// field is one field of a message's wire form: a length-delimited value in
// bytes, a varint in varint; other types carry neither.
type field struct {
	num    protowire.Number
	typ    protowire.Type
	bytes  []byte
	varint uint64
}

// eachField calls fn with every field of the message b, in order, until fn
// returns false or an error.
func eachField(b []byte, fn func(field) (more bool, err error)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		if num > protowire.MaxValidNumber {
			return errFieldNumber
		}
		b = b[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.BytesType:
			f.bytes, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			f.varint, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if more, err := fn(f); !more || err != nil {
			return err
		}
	}
	return nil
}

// bytesField returns the last length-delimited value of field num in
// message b, if any.
func bytesField(b []byte, num protowire.Number) (value string, ok bool) {
	_ = eachField(b, func(f field) (bool, error) {
		if f.num == num && f.typ == protowire.BytesType {
			value, ok = string(f.bytes), true
		}
		return true, nil
	})
	return value, ok
}

// decodeAppendReq decodes an append request as proto.Unmarshal does, less
// unknown fields (FuzzDecodeAppendReq holds it to that), into a message
// that aliases b. Decoding by reflection, metadata map and all, cost a
// twentieth of the CPU of an append.
func decodeAppendReq(b []byte, m *streams.AppendReq) error {
	m.Reset()
	return eachField(b, func(f field) (bool, error) {
		if f.typ != protowire.BytesType {
			return true, nil
		}
		switch f.num { // oneof content: 1 options, 2 proposed_message
		case 1:
			c := oneof(&m.Content, func() *streams.AppendReq_Options_ {
				return &streams.AppendReq_Options_{Options: &streams.AppendReq_Options{}}
			})
			return true, decodeOptions(f.bytes, c.Options)
		case 2:
			c := oneof(&m.Content, func() *streams.AppendReq_ProposedMessage_ {
				return &streams.AppendReq_ProposedMessage_{ProposedMessage: &streams.AppendReq_ProposedMessage{}}
			})
			return true, decodeProposed(f.bytes, c.ProposedMessage)
		}
		return true, nil
	})
}

// decodeOptions merges b into o: a message field that comes again is
// merged into, as proto.Unmarshal does. Fields: 1 stream_identifier, then
// the oneof expected_stream_revision: 2 revision, 3 no_stream, 4 any,
// 5 stream_exists.
func decodeOptions(b []byte, o *streams.AppendReq_Options) error {
	return eachField(b, func(f field) (bool, error) {
		if f.num == 2 && f.typ == protowire.VarintType {
			o.ExpectedStreamRevision = &streams.AppendReq_Options_Revision{Revision: f.varint}
			return true, nil
		}
		if f.typ != protowire.BytesType {
			return true, nil
		}
		switch f.num {
		case 1:
			if o.StreamIdentifier == nil {
				o.StreamIdentifier = &shared.StreamIdentifier{}
			}
			return true, eachField(f.bytes, func(f field) (bool, error) {
				if f.num == streamName && f.typ == protowire.BytesType {
					o.StreamIdentifier.StreamName = f.bytes
				}
				return true, nil
			})
		case 3:
			oneof(&o.ExpectedStreamRevision, func() *streams.AppendReq_Options_NoStream {
				return &streams.AppendReq_Options_NoStream{NoStream: &shared.Empty{}}
			})
		case 4:
			oneof(&o.ExpectedStreamRevision, func() *streams.AppendReq_Options_Any {
				return &streams.AppendReq_Options_Any{Any: &shared.Empty{}}
			})
		case 5:
			oneof(&o.ExpectedStreamRevision, func() *streams.AppendReq_Options_StreamExists {
				return &streams.AppendReq_Options_StreamExists{StreamExists: &shared.Empty{}}
			})
		default:
			return true, nil
		}
		return true, skipMessage(f.bytes) // an Empty: its fields are unknown, but must parse
	})
}

// decodeProposed merges b into p. Fields: 1 id, 2 metadata, 3 custom_metadata,
// 4 data.
func decodeProposed(b []byte, p *streams.AppendReq_ProposedMessage) error {
	return eachField(b, func(f field) (bool, error) {
		if f.typ != protowire.BytesType {
			return true, nil
		}
		switch f.num {
		case 1:
			if p.Id == nil {
				p.Id = &shared.UUID{}
			}
			return true, decodeUUID(f.bytes, p.Id)
		case 2:
			if p.Metadata == nil {
				p.Metadata = make(map[string]string, 2)
			}
			return true, decodeMapEntry(f.bytes, p.Metadata)
		case 3:
			p.CustomMetadata = f.bytes
		case 4:
			p.Data = f.bytes
		}
		return true, nil
	})
}

func decodeUUID(b []byte, id *shared.UUID) error {
	return eachField(b, func(f field) (bool, error) {
		if f.typ != protowire.BytesType {
			return true, nil
		}
		switch f.num {
		case uuidStructured:
			v := oneof(&id.Value, func() *shared.UUID_Structured_ {
				return &shared.UUID_Structured_{Structured: &shared.UUID_Structured{}}
			})
			return true, eachField(f.bytes, func(f field) (bool, error) {
				switch {
				case f.typ != protowire.VarintType:
				case f.num == 1:
					v.Structured.MostSignificantBits = int64(f.varint)
				case f.num == 2:
					v.Structured.LeastSignificantBits = int64(f.varint)
				}
				return true, nil
			})
		case uuidString:
			s, err := utf8String(f.bytes)
			id.Value = &shared.UUID_String_{String_: s}
			return true, err
		}
		return true, nil
	})
}

// decodeMapEntry adds a map<string, string> entry {1: key, 2: value} to m.
func decodeMapEntry(b []byte, m map[string]string) error {
	var key, value string
	err := eachField(b, func(f field) (bool, error) {
		var err error
		switch {
		case f.typ != protowire.BytesType:
		case f.num == mapKey:
			key, err = utf8String(f.bytes)
		case f.num == mapValue:
			value, err = utf8String(f.bytes)
		}
		return true, err
	})
	if err != nil {
		return err
	}
	m[key] = value
	return nil
}

// oneof returns the oneof's case if it is a T, which a field coming again
// merges into as proto.Unmarshal does; otherwise it sets the case to a
// fresh T, replacing whatever case was there.
func oneof[T, C any](c *C, fresh func() T) T {
	if v, ok := any(*c).(T); ok {
		return v
	}
	v := fresh()
	*c = any(v).(C)
	return v
}

func skipMessage(b []byte) error {
	return eachField(b, func(field) (bool, error) { return true, nil })
}

var (
	errFieldNumber = errors.New("field number out of range")
	errInvalidUTF8 = errors.New("string field contains invalid UTF-8")
)

// utf8String checks a proto3 string field as proto.Unmarshal does.
func utf8String(b []byte) (string, error) {
	if !utf8.Valid(b) {
		return "", errInvalidUTF8
	}
	return string(b), nil
}

// Field numbers of the stored RecordedEvent, as the client's streams.proto
// and shared.proto number them.
const (
	recID              = 1
	recStream          = 2 // a StreamIdentifier
	recRevision        = 3
	recPreparePosition = 4
	recCommitPosition  = 5
	recMetadata        = 6 // map<string, string>
	recCustomMetadata  = 7
	recData            = 8

	streamName = 3 // StreamIdentifier.stream_name

	uuidStructured = 1 // UUID.structured: {1: most, 2: least significant bits}
	uuidString     = 2

	mapKey   = 1 // a map entry's fields
	mapValue = 2
)

// encodeRecord is proto.Marshal with Deterministic set, for the one message
// every append writes (TestEncodeRecord holds it to that): by reflection,
// the metadata map made it a thirtieth of an append's CPU.
func encodeRecord(rec *record) []byte {
	b := make([]byte, 0, 128+len(rec.CustomMetadata)+len(rec.Data))
	if rec.Id != nil {
		var id []byte
		switch v := rec.Id.Value.(type) {
		case *shared.UUID_Structured_:
			var bits []byte
			bits = appendVarintField(bits, 1, uint64(v.Structured.GetMostSignificantBits()))
			bits = appendVarintField(bits, 2, uint64(v.Structured.GetLeastSignificantBits()))
			id = appendBytesField(id, uuidStructured, bits)
		case *shared.UUID_String_:
			id = appendBytesField(id, uuidString, []byte(v.String_)) // a oneof member is written even when empty
		}
		b = appendBytesField(b, recID, id)
	}
	if rec.StreamIdentifier != nil {
		var name []byte
		if len(rec.StreamIdentifier.StreamName) > 0 {
			name = appendBytesField(nil, streamName, rec.StreamIdentifier.StreamName)
		}
		b = appendBytesField(b, recStream, name)
	}
	b = appendVarintField(b, recRevision, rec.StreamRevision)
	b = appendVarintField(b, recPreparePosition, rec.PreparePosition)
	b = appendVarintField(b, recCommitPosition, rec.CommitPosition)
	keys := make([]string, 0, len(rec.Metadata))
	for k := range rec.Metadata {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		entry := appendBytesField(nil, mapKey, []byte(k)) // key and value are written even when empty
		entry = appendBytesField(entry, mapValue, []byte(rec.Metadata[k]))
		b = appendBytesField(b, recMetadata, entry)
	}
	if len(rec.CustomMetadata) > 0 {
		b = appendBytesField(b, recCustomMetadata, rec.CustomMetadata)
	}
	if len(rec.Data) > 0 {
		b = appendBytesField(b, recData, rec.Data)
	}
	return b
}

// appendVarintField appends a proto3 scalar, which is not written at zero.
func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
}

func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
}
