package eventstore

import (
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// wireMessage is a response already in protobuf wire form.
type wireMessage []byte

// wireCodec is gRPC's proto codec, except that a wireMessage is sent as is
// and append requests are decoded by hand (decodeAppendReq). Events are
// stored in their wire form, so a read wraps the stored bytes in a response
// instead of decoding and re-encoding every event: that halves the server's
// cost per delivered event.
type wireCodec struct{ encoding.CodecV2 }

func newWireCodec() wireCodec {
	return wireCodec{encoding.GetCodecV2("proto")}
}

func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	if w, ok := v.(wireMessage); ok {
		return mem.BufferSlice{mem.SliceBuffer(w)}, nil
	}
	return c.CodecV2.Marshal(v)
}

func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if m, ok := v.(*streams.AppendReq); ok {
		// Materialize copies the request out of gRPC's pooled buffers,
		// so the decoded message may alias it.
		return decodeAppendReq(data.Materialize(), m)
	}
	return c.CodecV2.Unmarshal(data, v)
}

// eventResponse encodes ReadResp{event: ReadEvent{event: <raw>, commit_position: pos}}
// around a stored RecordedEvent.
func eventResponse(raw []byte, pos uint64) wireMessage {
	const readRespEvent, readEventEvent, readEventCommitPosition = 1, 1, 3
	inner := protowire.SizeTag(readEventEvent) + protowire.SizeBytes(len(raw)) +
		protowire.SizeTag(readEventCommitPosition) + protowire.SizeVarint(pos)
	b := make([]byte, 0, protowire.SizeTag(readRespEvent)+protowire.SizeBytes(inner))
	b = protowire.AppendTag(b, readRespEvent, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(inner))
	b = protowire.AppendTag(b, readEventEvent, protowire.BytesType)
	b = protowire.AppendBytes(b, raw)
	b = protowire.AppendTag(b, readEventCommitPosition, protowire.VarintType)
	return protowire.AppendVarint(b, pos)
}
