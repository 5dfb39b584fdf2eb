package eventstore

import (
	"encoding/binary"
	"errors"
	"math"
)

// Key prefixes. Stream names cannot contain NUL (see validateStreamName), so
// the 0x00 after the name keeps "a" and "ab" from sharing an index range.
const (
	prefixLog   = 'l'
	prefixIndex = 's'
	prefixMeta  = 'm'
)

func logKey(pos uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixLog}, pos)
}

func indexPrefix(stream string) []byte {
	k := make([]byte, 0, len(stream)+10)
	k = append(k, prefixIndex)
	k = append(k, stream...)
	return append(k, 0)
}

func indexKey(stream string, rev uint64) []byte {
	return binary.BigEndian.AppendUint64(indexPrefix(stream), rev)
}

func metaKey(stream string) []byte {
	return append([]byte{prefixMeta}, stream...)
}

// streamMeta is what the store knows about a stream besides its events.
type streamMeta struct {
	next           uint64 // revisions written so far: the last revision + 1
	truncateBefore uint64 // soft delete: revisions below this are gone
	tombstoned     bool
}

// exists reports whether the stream has readable events, which is what
// EventStoreDB's expected-revision checks and reads mean by "exists".
func (m streamMeta) exists() bool { return m.next > m.truncateBefore }

// lastRevision is the revision of the newest event; only meaningful when next > 0.
func (m streamMeta) lastRevision() uint64 { return m.next - 1 }

// tombstoneRevision is the revision EventStoreDB gives a tombstone event.
const tombstoneRevision = math.MaxInt64

func (m streamMeta) encode() []byte {
	b := make([]byte, 0, 17)
	b = binary.BigEndian.AppendUint64(b, m.next)
	b = binary.BigEndian.AppendUint64(b, m.truncateBefore)
	if m.tombstoned {
		return append(b, 1)
	}
	return append(b, 0)
}

func decodeStreamMeta(b []byte) (streamMeta, error) {
	if len(b) != 17 {
		return streamMeta{}, errors.New("corrupt stream state: bad length")
	}
	return streamMeta{
		next:           binary.BigEndian.Uint64(b),
		truncateBefore: binary.BigEndian.Uint64(b[8:]),
		tombstoned:     b[16] == 1,
	}, nil
}
