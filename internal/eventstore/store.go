package eventstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"syscall"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// record is a committed event in the form readers receive.
type record = streams.ReadResp_ReadEvent_RecordedEvent

// entry is a committed event: its position, its wire encoding (stored, and
// sent to readers as is) and, once needed, its decoded form. Entries shared
// with live subscribers are always decoded, so record never writes to them.
type entry struct {
	pos uint64
	raw []byte
	rec *record
}

func (e *entry) record() (*record, error) {
	if e.rec == nil {
		rec := &record{}
		if err := proto.Unmarshal(e.raw, rec); err != nil {
			return nil, fmt.Errorf("decode event at position %d: %w", e.pos, err)
		}
		e.rec = rec
	}
	return e.rec, nil
}

// blockCacheBytes is Pebble's block cache.
const blockCacheBytes = 32 << 20

func openPebble(dir string, fs vfs.FS, logger *slog.Logger) (*pebble.DB, error) {
	opts := &pebble.Options{Logger: pebbleLogger{logger}, FS: fs}
	// Stream states are read on a cache miss, and a new stream's is looked
	// up before its first write: filters answer most misses without
	// reading a block.
	opts.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	// Those lookups also read index and filter blocks; with the default
	// 8 MB cache, event blocks pushed them out and a million-stream store
	// spent half its writer's time re-reading them from files.
	opts.CacheSize = blockCacheBytes
	if fs == nil && dir == "" {
		opts.FS = vfs.NewMem()
	}
	db, err := pebble.Open(dir, opts)
	if errors.Is(err, syscall.EAGAIN) {
		// Pebble's lock file is held: the kernel's word for it is "resource
		// temporarily unavailable", which sends people looking at the disk.
		return nil, fmt.Errorf("open event store at %q: the directory is in use by another process: %w", dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open pebble at %q: %w", dir, err)
	}
	return db, nil
}

// loadHead recovers the last position. Pebble has already replayed its WAL,
// so only whole batches are visible here. Stream states are read when
// needed (see streamCache), so opening does not grow with the streams.
func loadHead(db *pebble.DB) (uint64, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixLog}, UpperBound: []byte{prefixLog + 1}})
	if err != nil {
		return 0, fmt.Errorf("scan log: %w", err)
	}
	var head uint64
	if it.Last() {
		head = binary.BigEndian.Uint64(it.Key()[1:])
	}
	if err := it.Close(); err != nil {
		return 0, fmt.Errorf("scan log: %w", err)
	}
	return head, nil
}

// readMeta returns a stream's committed state; an unknown stream is the zero state.
func readMeta(r pebble.Reader, stream string) (streamMeta, error) {
	v, closer, err := r.Get(metaKey(stream))
	if errors.Is(err, pebble.ErrNotFound) {
		return streamMeta{}, nil
	}
	if err != nil {
		return streamMeta{}, fmt.Errorf("read state of stream %q: %w", stream, err)
	}
	defer closer.Close()
	return decodeStreamMeta(v)
}

// pebbleLogger sends Pebble's own logs to slog instead of stderr.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf is only called by Pebble on unrecoverable corruption; Pebble expects
// it not to return.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
	panic(fmt.Sprintf(format, args...))
}

// subject returns the event's stream name, or with onType its type, for a
// filter. It reads just those fields from the stored wire form: filtered
// subscriptions mostly skip what they scan, and a full decode of every
// skipped event was a tenth of a rebuild's cost.
func (e *entry) subject(onType bool) (string, error) {
	if e.rec != nil {
		if onType {
			return e.rec.GetMetadata()[metaType], nil
		}
		return string(e.rec.GetStreamIdentifier().GetStreamName()), nil
	}
	want := protowire.Number(recStream)
	if onType {
		want = recMetadata
	}
	var found string
	err := eachField(e.raw, func(f field) (bool, error) {
		switch {
		case f.num != want || f.typ != protowire.BytesType:
			return true, nil
		case !onType:
			found, _ = bytesField(f.bytes, streamName)
			return false, nil
		}
		if key, _ := bytesField(f.bytes, mapKey); key == metaType {
			found, _ = bytesField(f.bytes, mapValue)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return "", fmt.Errorf("decode event at position %d: %w", e.pos, err)
	}
	return found, nil
}
