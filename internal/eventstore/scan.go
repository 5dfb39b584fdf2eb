package eventstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// visit receives scanned events in order; returning false stops the scan.
type visit func(e *entry) (more bool, err error)

// scanLog visits the events at positions lo..hi (inclusive).
func scanLog(r pebble.Reader, lo, hi uint64, backwards bool, fn visit) error {
	if lo > hi {
		return nil
	}
	upper := []byte{prefixLog + 1}
	if hi < math.MaxUint64 {
		upper = logKey(hi + 1)
	}
	return scan(r, logKey(lo), upper, backwards, func(k, v []byte) (bool, error) {
		return fn(&entry{pos: binary.BigEndian.Uint64(k[1:]), raw: bytes.Clone(v)})
	})
}

// scanStream visits a stream's events at revisions lo..hi (inclusive).
func scanStream(r pebble.Reader, stream string, lo, hi uint64, backwards bool, fn visit) error {
	return scanIndexed(r, stream, lo, hi, backwards, func(_ uint64, e *entry) (bool, error) { return fn(e) })
}

// scanIndexed is scanStream, also giving each event's revision. The index
// gives each event's position; one log iterator, sought from one position
// to the next, reads the events: a point Get per event builds and tears
// down an iterator every time (a 1M-event stream took a minute).
func scanIndexed(r pebble.Reader, stream string, lo, hi uint64, backwards bool, fn func(rev uint64, e *entry) (bool, error)) error {
	if lo > hi {
		return nil
	}
	upper := append(indexPrefix(stream), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	if hi < math.MaxUint64 {
		upper = indexKey(stream, hi+1)
	}
	// The log iterator opens after the index iterator (lazily, on the
	// first index entry): on a live DB each iterator reads its own
	// point-in-time view, and a batch writes an event and its index entry
	// together, so a log view no older than the index view holds every
	// event the index names.
	var events *pebble.Iterator
	err := scan(r, indexKey(stream, lo), upper, backwards, func(k, v []byte) (bool, error) {
		if events == nil {
			var err error
			if events, err = r.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixLog}, UpperBound: []byte{prefixLog + 1}}); err != nil {
				return false, fmt.Errorf("open iterator: %w", err)
			}
		}
		pos := binary.BigEndian.Uint64(v)
		key := logKey(pos)
		if !events.SeekGE(key) || !bytes.Equal(events.Key(), key) {
			return false, fmt.Errorf("indexed event at position %d is missing: %w", pos, errors.Join(events.Error(), pebble.ErrNotFound))
		}
		return fn(binary.BigEndian.Uint64(k[len(k)-8:]), &entry{pos: pos, raw: bytes.Clone(events.Value())})
	})
	if events != nil {
		if cerr := events.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("iterate: %w", cerr)
		}
	}
	return err
}

func scan(r pebble.Reader, lower, upper []byte, backwards bool, fn func(key, value []byte) (bool, error)) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("open iterator: %w", err)
	}
	step, valid := it.Next, it.First()
	if backwards {
		step, valid = it.Prev, it.Last()
	}
	for ; valid; valid = step() {
		more, err := fn(it.Key(), it.Value())
		if err != nil || !more {
			_ = it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("iterate: %w", err)
	}
	return nil
}
