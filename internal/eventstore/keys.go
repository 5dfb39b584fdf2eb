package eventstore

import (
	"encoding/binary"
	"errors"
	"math"
	"time"
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

// streamMeta is what the store knows about a stream besides its events. The
// retention fields mirror the stream's latest metadata ($$stream, see
// metadata.go), so readers need not parse JSON.
type streamMeta struct {
	next           uint64 // revisions written so far: the last revision + 1
	truncateBefore uint64 // $tb: revisions below this are retired; softDeletedTB = soft-deleted
	tombstoned     bool
	maxCount       uint64        // $maxCount; 0 = none
	maxAge         time.Duration // $maxAge; 0 = none
}

// exists reports whether the stream exists for EventStoreDB's expected-revision
// checks and reads: it has events and is not soft-deleted. Events retired by
// metadata still count, as there.
func (m streamMeta) exists() bool { return m.next > 0 && !m.softDeleted() }

// softDeleted is EventStoreDB's test for a soft delete: $tb at its maximum.
func (m streamMeta) softDeleted() bool { return m.truncateBefore == softDeletedTB }

// lastRevision is the revision of the newest event; only meaningful when next > 0.
func (m streamMeta) lastRevision() uint64 { return m.next - 1 }

// tombstoneRevision is the revision EventStoreDB gives a tombstone event.
const tombstoneRevision = math.MaxInt64

// streamMetaLen is the encoded size; streamMetaLenV1 the size before
// retention was stored, still read.
const (
	streamMetaLenV1 = 17
	streamMetaLen   = 33
)

func (m streamMeta) encode() []byte {
	b := make([]byte, 0, streamMetaLen)
	b = binary.BigEndian.AppendUint64(b, m.next)
	b = binary.BigEndian.AppendUint64(b, m.truncateBefore)
	if m.tombstoned {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint64(b, m.maxCount)
	return binary.BigEndian.AppendUint64(b, uint64(m.maxAge))
}

func decodeStreamMeta(b []byte) (streamMeta, error) {
	if len(b) != streamMetaLen && len(b) != streamMetaLenV1 {
		return streamMeta{}, errors.New("corrupt stream state: bad length")
	}
	m := streamMeta{
		next:           binary.BigEndian.Uint64(b),
		truncateBefore: binary.BigEndian.Uint64(b[8:]),
		tombstoned:     b[16] == 1,
	}
	if len(b) == streamMetaLenV1 {
		// The first format marked a soft delete with $tb at the end of
		// the stream, where EventStoreDB (and now this store) puts it
		// at its maximum.
		if m.next > 0 && m.truncateBefore == m.next {
			m.truncateBefore = softDeletedTB
		}
		return m, nil
	}
	m.maxCount = binary.BigEndian.Uint64(b[17:])
	m.maxAge = time.Duration(binary.BigEndian.Uint64(b[25:]))
	return m, nil
}
