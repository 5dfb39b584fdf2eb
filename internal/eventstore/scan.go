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
// gives each event's position; one log iterator reads the events. Index
// entries are taken in batches (growing from one, so a read of the newest
// event reads one), and each run of consecutive positions in a batch is read
// with the iterator bounded to it. Unbounded, an iterator sought to ever
// later positions steps to each from the last (Pebble's TrySeekUsingNext),
// loading every block in between: a read of a stream whose events lie among
// others' large ones, as snapshot page keys lie beside their 40 KB pages,
// read five times the bytes it returned. Within a run the iterator steps,
// which costs less than a seek per event; a point Get per event builds and
// tears down an iterator every time.
func scanIndexed(r pebble.Reader, stream string, lo, hi uint64, backwards bool, fn func(rev uint64, e *entry) (bool, error)) error {
	if lo > hi {
		return nil
	}
	upper := append(indexPrefix(stream), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	if hi < math.MaxUint64 {
		upper = indexKey(stream, hi+1)
	}
	// The log iterator opens after the index iterator (lazily, on the
	// first batch): on a live DB each iterator reads its own point-in-time
	// view, and a batch writes an event and its index entry together, so a
	// log view no older than the index view holds every event the index
	// names.
	var events *pebble.Iterator
	var batch []indexed
	limit := 1
	more := true
	flush := func() error {
		if events == nil {
			var err error
			if events, err = r.NewIter(&pebble.IterOptions{}); err != nil {
				return fmt.Errorf("open iterator: %w", err)
			}
		}
		for run := batch; len(run) > 0 && more; {
			n := runLength(run, backwards)
			var err error
			if more, err = readRun(events, run[:n], backwards, fn); err != nil {
				return err
			}
			run = run[n:]
		}
		batch, limit = batch[:0], min(2*limit, maxIndexBatch)
		return nil
	}
	err := scan(r, indexKey(stream, lo), upper, backwards, func(k, v []byte) (bool, error) {
		batch = append(batch, indexed{rev: binary.BigEndian.Uint64(k[len(k)-8:]), pos: binary.BigEndian.Uint64(v)})
		if len(batch) < limit {
			return true, nil
		}
		err := flush()
		return more, err
	})
	if err == nil && len(batch) > 0 {
		err = flush()
	}
	if events != nil {
		if cerr := events.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("iterate: %w", cerr)
		}
	}
	return err
}

// maxIndexBatch is the most index entries scanIndexed holds at once.
const maxIndexBatch = 128

// indexed is an index entry: an event's revision and its position.
type indexed struct{ rev, pos uint64 }

// runLength is how many of batch's first entries have consecutive
// positions, in the direction of the scan.
func runLength(batch []indexed, backwards bool) int {
	n := 1
	for n < len(batch) && (!backwards && batch[n].pos == batch[n-1].pos+1 || backwards && batch[n].pos+1 == batch[n-1].pos) {
		n++
	}
	return n
}

// backwardPart is how many events of a backward run readRun holds at once.
const backwardPart = 8

// readRun visits the events of run, whose positions are consecutive in the
// direction of the scan. Backwards it reads a part of the run at a time,
// from the top, each forwards and then visited in reverse: a bounded Last
// loads the block before the one sought, as an unbounded seek loads the
// next; the parts bound what it holds.
func readRun(events *pebble.Iterator, run []indexed, backwards bool, fn func(rev uint64, e *entry) (bool, error)) (more bool, err error) {
	if !backwards {
		return readRange(events, run[0].pos, len(run), func(i int, raw []byte) (bool, error) {
			return fn(run[i].rev, &entry{pos: run[i].pos, raw: raw})
		})
	}
	for len(run) > 0 {
		part := run[:min(len(run), backwardPart)]
		raws := make([][]byte, len(part))
		if _, err := readRange(events, part[len(part)-1].pos, len(part), func(i int, raw []byte) (bool, error) {
			raws[len(part)-1-i] = raw
			return true, nil
		}); err != nil {
			return false, err
		}
		for i, ix := range part {
			if more, err := fn(ix.rev, &entry{pos: ix.pos, raw: raws[i]}); err != nil || !more {
				return false, err
			}
		}
		run = run[len(part):]
	}
	return true, nil
}

// readRange reads the n events from position lo on, with events bounded to
// them, and gives them to use in order.
func readRange(events *pebble.Iterator, lo uint64, n int, use func(i int, raw []byte) (bool, error)) (more bool, err error) {
	events.SetBounds(logKey(lo), logKey(lo+uint64(n)))
	valid := events.First()
	for i := range n {
		if i > 0 {
			valid = events.Next()
		}
		if pos := lo + uint64(i); !valid || binary.BigEndian.Uint64(events.Key()[1:]) != pos {
			return false, fmt.Errorf("indexed event at position %d is missing: %w", pos, errors.Join(events.Error(), pebble.ErrNotFound))
		}
		if more, err := use(i, bytes.Clone(events.Value())); err != nil || !more {
			return false, err
		}
	}
	return true, nil
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
