package eventstore

import (
	"encoding/binary"
	"testing"
	"time"
)

// TestStreamMetaDecodesFirstFormat: stores written before metadata kept a
// 17-byte stream state, with a soft delete as $tb at the end of the stream.
// They still open, and their soft deletes read as EventStoreDB's.
func TestStreamMetaDecodesFirstFormat(t *testing.T) {
	v1 := func(next, tb uint64, tombstoned byte) []byte {
		b := binary.BigEndian.AppendUint64(nil, next)
		return append(binary.BigEndian.AppendUint64(b, tb), tombstoned)
	}
	for _, tc := range []struct {
		name string
		raw  []byte
		want streamMeta
	}{
		{"live", v1(3, 0, 0), streamMeta{next: 3}},
		{"soft-deleted", v1(3, 3, 0), streamMeta{next: 3, truncateBefore: softDeletedTB}},
		{"recreated", v1(5, 3, 0), streamMeta{next: 5, truncateBefore: 3}},
		{"tombstoned", v1(2, 0, 1), streamMeta{next: 2, tombstoned: true}},
		{"never written", v1(0, 0, 0), streamMeta{}},
	} {
		got, err := decodeStreamMeta(tc.raw)
		if err != nil || got != tc.want {
			t.Errorf("%s: decoded %+v (%v), want %+v", tc.name, got, err, tc.want)
		}
	}
	m := streamMeta{next: 9, truncateBefore: 4, maxCount: 3, maxAge: time.Hour, tombstoned: true}
	if got, err := decodeStreamMeta(m.encode()); err != nil || got != m {
		t.Errorf("round trip: %+v (%v), want %+v", got, err, m)
	}
}
