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

// TestStreamOfKey: a state key and index keys are told apart, whatever
// bytes the revision holds (revision 0 ends in NULs, like a state key).
func TestStreamOfKey(t *testing.T) {
	for _, tc := range []struct {
		key         []byte
		stream      string
		state, isOK bool
	}{
		{metaKey("order-1"), "order-1", true, true},
		{indexKey("order-1", 0), "order-1", false, true},
		{indexKey("order-1", 256), "order-1", false, true},
		{indexKey("a\x01b", 7), "a\x01b", false, true},
		{metaKey("a\x01b"), "a\x01b", true, true},
		{append(metaKey("x"), 1, 2), "", false, false},
		{[]byte("sno-nul"), "", false, false},
		{logKey(5), "", false, false},
	} {
		stream, state, ok := streamOfKey(tc.key)
		if stream != tc.stream || state != tc.state || ok != tc.isOK {
			t.Errorf("streamOfKey(%q) = %q, %v, %v; want %q, %v, %v", tc.key, stream, state, ok, tc.stream, tc.state, tc.isOK)
		}
	}
}
