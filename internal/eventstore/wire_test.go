package eventstore

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// FuzzDecodeAppendReq holds decodeAppendReq to proto.Unmarshal: on any
// input both fail, or both succeed with the same message (unknown fields
// aside, which decodeAppendReq drops).
func FuzzDecodeAppendReq(f *testing.F) {
	for _, m := range []*streams.AppendReq{
		{Content: &streams.AppendReq_Options_{Options: &streams.AppendReq_Options{
			StreamIdentifier:       &shared.StreamIdentifier{StreamName: []byte("order-1")},
			ExpectedStreamRevision: &streams.AppendReq_Options_Revision{Revision: 41},
		}}},
		{Content: &streams.AppendReq_Options_{Options: &streams.AppendReq_Options{
			StreamIdentifier:       &shared.StreamIdentifier{StreamName: []byte("s")},
			ExpectedStreamRevision: &streams.AppendReq_Options_NoStream{NoStream: &shared.Empty{}},
		}}},
		{Content: &streams.AppendReq_Options_{Options: &streams.AppendReq_Options{
			ExpectedStreamRevision: &streams.AppendReq_Options_Any{Any: &shared.Empty{}},
		}}},
		{Content: &streams.AppendReq_Options_{Options: &streams.AppendReq_Options{
			ExpectedStreamRevision: &streams.AppendReq_Options_StreamExists{StreamExists: &shared.Empty{}},
		}}},
		{Content: &streams.AppendReq_ProposedMessage_{ProposedMessage: &streams.AppendReq_ProposedMessage{
			Id:             structuredUUID([]byte("0123456789abcdef")),
			Metadata:       map[string]string{metaType: "OrderPlaced", metaContentType: "application/json"},
			CustomMetadata: []byte(`{"correlationId":"c"}`),
			Data:           []byte(`{"orderId":"o"}`),
		}}},
		{Content: &streams.AppendReq_ProposedMessage_{ProposedMessage: &streams.AppendReq_ProposedMessage{
			Id:       &shared.UUID{Value: &shared.UUID_String_{String_: "7f1e8a4c-0b6d-4c1e-9a55-3d2b1f0e9c87"}},
			Metadata: map[string]string{"": "", "é": "\u2028"},
		}}},
		{},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	tag := func(b []byte, num protowire.Number, typ protowire.Type) []byte {
		return protowire.AppendTag(b, num, typ)
	}
	msg := func(num protowire.Number, inner []byte) []byte {
		return protowire.AppendBytes(tag(nil, num, protowire.BytesType), inner)
	}
	cat := func(parts ...[]byte) (b []byte) {
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	structured := msg(1, protowire.AppendVarint(tag(nil, 1, protowire.VarintType), 7))
	for _, b := range [][]byte{
		// Options twice: merged; oneof cases replacing each other.
		cat(msg(1, msg(1, msg(3, []byte("a")))), msg(1, cat(msg(3, nil), protowire.AppendVarint(tag(nil, 2, protowire.VarintType), 9)))),
		// Options, then a proposed message: the last case wins.
		cat(msg(1, msg(4, nil)), msg(2, msg(4, []byte("d")))),
		// A structured ID in two parts, then a string one; a map key twice.
		msg(2, cat(msg(1, structured), msg(1, msg(1, protowire.AppendVarint(tag(nil, 2, protowire.VarintType), 1<<63))),
			msg(2, cat(msg(1, []byte("k")), msg(2, []byte("v")))), msg(2, msg(1, []byte("k"))))),
		msg(2, cat(msg(1, structured), msg(1, msg(2, []byte("x"))))),
		// Known numbers with the wrong wire type, unknown fields, a group.
		cat(protowire.AppendVarint(tag(nil, 1, protowire.VarintType), 1), msg(9, []byte("zz")),
			tag(nil, 7, protowire.StartGroupType), tag(nil, 7, protowire.EndGroupType), msg(1, tag(nil, 3, protowire.Fixed32Type))),
		// Invalid UTF-8 in a map key, a map value, a string ID.
		msg(2, msg(2, msg(1, []byte{0xff}))),
		msg(2, msg(2, msg(2, []byte{0xc3}))),
		msg(2, msg(1, msg(2, []byte{0xed, 0xa0, 0x80}))),
		// Truncated and malformed.
		msg(2, msg(4, []byte("data")))[:5],
		{0x0a, 0x80},
		{0x00},
		msg(1, msg(3, []byte{0x0c})), // an Empty holding a stray end-group
	} {
		f.Add(b)
	}

	f.Fuzz(func(t *testing.T, b []byte) {
		want := &streams.AppendReq{}
		wantErr := proto.Unmarshal(b, want)
		got := &streams.AppendReq{}
		gotErr := decodeAppendReq(b, got)
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("proto.Unmarshal: %v; decodeAppendReq: %v", wantErr, gotErr)
		}
		if wantErr != nil {
			return
		}
		dropUnknown(want.ProtoReflect())
		if !proto.Equal(want, got) {
			t.Fatalf("decoded differently:\nproto.Unmarshal: %v\ndecodeAppendReq: %v", want, got)
		}
	})
}

func dropUnknown(m protoreflect.Message) {
	m.SetUnknown(nil)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() != nil && !fd.IsMap() && !fd.IsList() {
			dropUnknown(v.Message())
		}
		return true
	})
}

// TestEncodeRecord holds encodeRecord to deterministic proto.Marshal, byte
// for byte, on records with every field at its zero value, set, and at
// the awkward values in between.
func TestEncodeRecord(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(vs ...[]byte) []byte { return vs[rng.IntN(len(vs))] }
	str := func() string {
		return string(pick(nil, []byte("type"), []byte("é\u2028"), []byte{0}, bytes.Repeat([]byte("x"), 200)))
	}
	u64 := func() uint64 { return []uint64{0, 1, 127, 128, 1<<63 + 5, math.MaxUint64}[rng.IntN(6)] }
	for i := range 2000 {
		rec := &record{StreamRevision: u64(), PreparePosition: u64(), CommitPosition: u64()}
		switch rng.IntN(4) {
		case 1:
			rec.Id = &shared.UUID{}
		case 2:
			rec.Id = &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
				MostSignificantBits: int64(u64()), LeastSignificantBits: int64(u64()),
			}}}
		case 3:
			rec.Id = &shared.UUID{Value: &shared.UUID_String_{String_: str()}}
		}
		if rng.IntN(3) > 0 {
			rec.StreamIdentifier = &shared.StreamIdentifier{StreamName: pick(nil, []byte{}, []byte("order-1"))}
		}
		if n := rng.IntN(4); n > 0 {
			rec.Metadata = map[string]string{}
			for range n {
				rec.Metadata[str()] = str()
			}
		}
		rec.CustomMetadata = pick(nil, []byte{}, []byte(`{"a":1}`))
		rec.Data = pick(nil, []byte{}, bytes.Repeat([]byte{0xff}, 300))

		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if got := encodeRecord(rec); !bytes.Equal(got, want) {
			t.Fatalf("record %d: %v\nencodeRecord: %x\nproto.Marshal: %x", i, rec, got, want)
		}
	}
}
