package eventstore

import (
	"bytes"
	"encoding/binary"
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
	if lo > hi {
		return nil
	}
	upper := append(indexPrefix(stream), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	if hi < math.MaxUint64 {
		upper = indexKey(stream, hi+1)
	}
	return scan(r, indexKey(stream, lo), upper, backwards, func(_, v []byte) (bool, error) {
		e, err := readEntry(r, binary.BigEndian.Uint64(v))
		if err != nil {
			return false, err
		}
		return fn(e)
	})
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
