package eventstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Key prefixes. Stream names cannot contain NUL (see validateStreamName), so
// the 0x00 after the name keeps "a" and "ab" from sharing an index range.
//
// A stream's state is stored under its index prefix itself, just before its
// first index entry: a read of a stream nobody read lately looks up its
// state and then seeks its index, and both are found in one block. (Stores
// written before kept states under prefixLegacyState, in a range of their
// own, which cost such a read one more block from the files; Open moves
// them, see upgradeLayout.)
const (
	prefixLayout      = 'f'
	prefixLog         = 'l'
	prefixIndex       = 's'
	prefixLegacyState = 'm'
)

// layoutKey holds the version of the key layout the store is written in;
// stores of the first layout have none. A build refuses a store of a
// layout newer than its own: it would misread it.
var layoutKey = []byte{prefixLayout}

// layoutVersion 2: stream states in the index range.
const layoutVersion = 2

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

func metaKey(stream string) []byte { return indexPrefix(stream) }

// streamOfKey returns the stream a key of the index range belongs to, and
// whether the key is the stream's state rather than one of its index
// entries. Names hold no NUL, so the first one ends the name; a state key
// ends there, an index key eight bytes later.
func streamOfKey(k []byte) (stream string, state, ok bool) {
	if len(k) < 2 || k[0] != prefixIndex {
		return "", false, false
	}
	end := bytes.IndexByte(k[1:], 0) + 1
	switch {
	case end == 0:
		return "", false, false
	case len(k) == end+1:
		return string(k[1:end]), true, true
	case len(k) == end+9:
		return string(k[1:end]), false, true
	}
	return "", false, false
}

// afterStream is the first key past every key of stream: its state and
// its index entries.
func afterStream(stream string) []byte {
	k := indexPrefix(stream)
	k[len(k)-1] = 1
	return k
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

// upgradeLayout brings the store to layoutVersion before anything reads
// it, and refuses a store written by a newer build.
func upgradeLayout(db *pebble.DB, log *slog.Logger) error {
	v, closer, err := db.Get(layoutKey)
	version := uint64(1)
	switch {
	case err == nil:
		if len(v) != 8 {
			_ = closer.Close()
			return fmt.Errorf("event store key layout: %d bytes, want 8", len(v))
		}
		version = binary.BigEndian.Uint64(v)
		_ = closer.Close()
	case !errors.Is(err, pebble.ErrNotFound):
		return fmt.Errorf("read the event store's key layout: %w", err)
	}
	switch {
	case version > layoutVersion:
		return fmt.Errorf("the event store was written by a newer build (key layout %d; this build reads layouts up to %d)", version, layoutVersion)
	case version == layoutVersion:
		return nil
	}
	if err := migrateStateKeys(db, log); err != nil {
		return err
	}
	if err := db.Set(layoutKey, binary.BigEndian.AppendUint64(nil, layoutVersion), pebble.Sync); err != nil {
		return fmt.Errorf("record the event store's key layout: %w", err)
	}
	return nil
}

// migrateStateKeys moves the stream states of a store written before they
// lived in the index range (prefixLegacyState) to their keys there, before
// anything reads them. Each batch moves its states whole and is synced, so
// an Open cut short by a crash finds the rest still to move and moves them.
func migrateStateKeys(db *pebble.DB, log *slog.Logger) error {
	const perBatch = 4096
	moved := 0
	// Each pass starts after the last key moved, not over the deletions
	// of the passes before.
	lower := []byte{prefixLegacyState}
	for {
		b := db.NewBatch()
		n := 0
		err := scan(db, lower, []byte{prefixLegacyState + 1}, false, func(k, v []byte) (bool, error) {
			lower = append(bytes.Clone(k), 0)
			if err := b.Set(metaKey(string(k[1:])), v, nil); err != nil {
				return false, err
			}
			if err := b.Delete(k, nil); err != nil {
				return false, err
			}
			n++
			return n < perBatch, nil
		})
		if err == nil && n > 0 {
			err = b.Commit(pebble.Sync)
		}
		_ = b.Close()
		if err != nil {
			return fmt.Errorf("move stream states into the index range: %w", err)
		}
		if n == 0 {
			if moved == 0 {
				return nil
			}
			log.Info("moved stream states into the index range", "streams", moved)
			// Flushed, so that the next Open does not replay the move
			// from the write-ahead log.
			if err := db.Flush(); err != nil {
				return fmt.Errorf("flush the moved stream states: %w", err)
			}
			return nil
		}
		moved += n
	}
}
