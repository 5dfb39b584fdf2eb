// Package apijson writes API messages as JSON for the REST gateway.
//
// The output is protojson's with EmitUnpopulated (lowerCamel names, every
// field present, enums by name, 64-bit integers as strings, RFC 3339
// timestamps), at a fraction of the cost: protojson sorts each message's
// fields and goes through a general-purpose JSON writer, and on a page of
// orders that was half of a REST read. It handles the shapes the API uses —
// proto3 messages of scalars, enums, bytes, nested and repeated messages and
// Timestamps. Anything else (maps, floats, Any and the other well-known types
// with special JSON forms) reports false from Supports and is left to
// protojson by Marshaler.
package apijson

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Marshaler is the gateway's JSON marshaler: JSONPb with EmitUnpopulated
// (and strict decoding) for everything, except that the messages this
// package supports are written by Marshal. Make one with NewMarshaler.
type Marshaler struct {
	*runtime.JSONPb
}

// NewMarshaler returns a Marshaler whose JSONPb writes what Marshal writes.
func NewMarshaler() Marshaler {
	return Marshaler{JSONPb: &runtime.JSONPb{MarshalOptions: protojson.MarshalOptions{EmitUnpopulated: true}}}
}

// Marshal writes v as JSON.
func (m Marshaler) Marshal(v any) ([]byte, error) {
	if msg, ok := v.(proto.Message); ok && Supports(msg.ProtoReflect().Descriptor()) {
		return Marshal(msg)
	}
	return m.JSONPb.Marshal(v)
}

// Marshal writes msg as JSON; its type must be one Supports accepts.
func Marshal(msg proto.Message) ([]byte, error) {
	return appendMessage(make([]byte, 0, 512), msg.ProtoReflect())
}

var timestampName = (&timestamppb.Timestamp{}).ProtoReflect().Descriptor().FullName()

var supported sync.Map // protoreflect.FullName → bool

// Supports reports whether Marshal writes messages of type md exactly as
// protojson would.
func Supports(md protoreflect.MessageDescriptor) bool {
	if ok, known := supported.Load(md.FullName()); known {
		return ok.(bool)
	}
	ok := supports(md, map[protoreflect.FullName]bool{})
	supported.Store(md.FullName(), ok)
	return ok
}

func supports(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	switch {
	case md.FullName() == timestampName:
		return true
	case md.ParentFile().Package() == "google.protobuf":
		return false // well-known types with JSON forms of their own
	case md.ParentFile().Syntax() != protoreflect.Proto3:
		return false // proto2 defaults and groups, editions' JSON options
	case seen[md.FullName()]:
		return true
	}
	seen[md.FullName()] = true
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch {
		case fd.IsMap(), fd.Kind() == protoreflect.FloatKind:
			return false
		case fd.Kind() == protoreflect.EnumKind && fd.Enum().ParentFile().Package() == "google.protobuf":
			return false // NullValue is written as null
		case fd.Kind() == protoreflect.MessageKind && !supports(fd.Message(), seen):
			return false
		}
	}
	return true
}

func appendMessage(b []byte, m protoreflect.Message) ([]byte, error) {
	md := m.Descriptor()
	if md.FullName() == timestampName {
		return appendTimestamp(b, m)
	}
	b = append(b, '{')
	fields := md.Fields()
	first := true
	for i := range fields.Len() {
		fd := fields.Get(i)
		has := m.Has(fd)
		if !has && fd.ContainingOneof() != nil {
			continue // protojson leaves out unset oneof members and optional fields
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, fd.JSONName()...) // lowerCamel of an identifier: nothing to escape
		b = append(b, '"', ':')
		var err error
		switch {
		case !has && fd.HasPresence():
			b = append(b, "null"...)
		case fd.IsList():
			b, err = appendList(b, m.Get(fd).List(), fd)
		default:
			b, err = appendSingular(b, m.Get(fd), fd)
		}
		if err != nil {
			return b, err
		}
	}
	return append(b, '}'), nil
}

func appendList(b []byte, list protoreflect.List, fd protoreflect.FieldDescriptor) ([]byte, error) {
	b = append(b, '[')
	for i := range list.Len() {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendSingular(b, list.Get(i), fd); err != nil {
			return b, err
		}
	}
	return append(b, ']'), nil
}

func appendSingular(b []byte, v protoreflect.Value, fd protoreflect.FieldDescriptor) ([]byte, error) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return strconv.AppendBool(b, v.Bool()), nil
	case protoreflect.StringKind:
		out, err := appendString(b, v.String())
		if err != nil {
			return out, fmt.Errorf("field %s: %w", fd.FullName(), err)
		}
		return out, nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return strconv.AppendInt(b, v.Int(), 10), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return strconv.AppendUint(b, v.Uint(), 10), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		b = append(b, '"')
		return append(strconv.AppendInt(b, v.Int(), 10), '"'), nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		b = append(b, '"')
		return append(strconv.AppendUint(b, v.Uint(), 10), '"'), nil
	case protoreflect.DoubleKind:
		return appendDouble(b, v.Float()), nil
	case protoreflect.BytesKind:
		b = append(b, '"')
		return append(base64.StdEncoding.AppendEncode(b, v.Bytes()), '"'), nil
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			b = append(b, '"')
			return append(append(b, ev.Name()...), '"'), nil
		}
		return strconv.AppendInt(b, int64(v.Enum()), 10), nil // a number this build does not know
	case protoreflect.MessageKind:
		return appendMessage(b, v.Message())
	}
	return b, fmt.Errorf("field %s: kind %v is not supported", fd.FullName(), fd.Kind())
}

// Timestamp bounds: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z, as protojson.
const (
	minTimestamp = -62135596800
	maxTimestamp = 253402300799
)

// appendTimestamp writes RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits.
func appendTimestamp(b []byte, m protoreflect.Message) ([]byte, error) {
	fields := m.Descriptor().Fields()
	secs := m.Get(fields.ByNumber(1)).Int()
	nanos := m.Get(fields.ByNumber(2)).Int()
	if secs < minTimestamp || secs > maxTimestamp {
		return b, fmt.Errorf("%s: seconds out of range %d", timestampName, secs)
	}
	if nanos < 0 || nanos > 999_999_999 {
		return b, fmt.Errorf("%s: nanos out of range %d", timestampName, nanos)
	}
	b = append(b, '"')
	t := time.Unix(secs, 0).UTC()
	year, month, day := t.Date()
	hour, minute, second := t.Clock()
	b = appendDigits(b, year, 4)
	b = appendDigits(append(b, '-'), int(month), 2)
	b = appendDigits(append(b, '-'), day, 2)
	b = appendDigits(append(b, 'T'), hour, 2)
	b = appendDigits(append(b, ':'), minute, 2)
	b = appendDigits(append(b, ':'), second, 2)
	if nanos != 0 {
		b = append(b, '.')
		switch {
		case nanos%1_000_000 == 0:
			b = appendDigits(b, int(nanos/1_000_000), 3)
		case nanos%1_000 == 0:
			b = appendDigits(b, int(nanos/1_000), 6)
		default:
			b = appendDigits(b, int(nanos), 9)
		}
	}
	return append(b, 'Z', '"'), nil
}

// appendDigits writes n (0 <= n < 10^width) in exactly width digits.
func appendDigits(b []byte, n, width int) []byte {
	start := len(b)
	for range width {
		b = append(b, '0')
	}
	for i := len(b) - 1; i >= start && n > 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return b
}

var errInvalidUTF8 = errors.New("invalid UTF-8")

// appendString quotes s as protojson does: only '"', '\\' and control
// characters are escaped, and invalid UTF-8 is an error.
func appendString(b []byte, s string) ([]byte, error) {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				return b, errInvalidUTF8
			}
			i += n
			continue
		}
		if c >= ' ' && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"'), nil
}

const hex = "0123456789abcdef"

// appendDouble writes a double as protojson does: NaN and the infinities
// as strings, others as the shortest decimal that reads back the same, in
// exponent form below 1e-6 and from 1e21 (encoding/json's rule), with a
// two-digit exponent shortened to one ("1e-07" is written "1e-7").
func appendDouble(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if n := len(b); format == 'e' && n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
		b[n-2] = b[n-1]
		b = b[:n-1]
	}
	return b
}
