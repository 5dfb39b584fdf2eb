package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// A scavenge removes from disk what readers no longer see (retire.go says
// what): it walks every stream's state in the durable view, picks the events
// the stream's metadata retires, and has the sequencer delete them in slices
// (scavenge_apply.go), rechecked against the current state. Then it compacts
// the log and index ranges, so Pebble drops the deleted entries and the disk
// space is freed.
//
// It is online: it holds a durable view only while it reads one slice or
// one batch of stream names (a long-held snapshot would also keep Pebble
// from dropping what it deleted), each slice is one small part of a group
// commit, and it rests between slices and compactions so that it uses at
// most about scavengeDuty of one core. A crash mid-way loses nothing live:
// every slice is committed whole or not at all, and a later scavenge picks
// up what is left.

// scavengeStreamsPerPass is how many stream names one durable view is held for.
const scavengeStreamsPerPass = 256

// scavengeDuty is the share of wall time a scavenge works; it rests the rest.
// On two cores under 16 writers (BenchmarkScavenge), working half the time
// kept 61 % of the writers' rate, a quarter 82 %, for a scavenge half as fast.
const scavengeDuty = 0.25

// scavengeCompactPieces is how many parts the log is compacted in, resting
// between them, so one compaction does not hold a core for long.
const scavengeCompactPieces = 16

// scavengeStats is what a scavenge has done so far.
type scavengeStats struct {
	Streams      uint64 `json:"streamsScanned"`
	Scanned      uint64 `json:"eventsScanned"`
	Removed      uint64 `json:"eventsRemoved"`
	BytesRemoved int64  `json:"bytesRemoved"`
	DiskBefore   uint64 `json:"diskBytesBefore"`
	DiskAfter    uint64 `json:"diskBytesAfter,omitempty"`
}

// scavenger is one run.
type scavenger struct {
	db      *pebble.DB
	durable *durable
	seq     *sequencer
	head    func() uint64 // the published head
	metrics *metrics
	// progress is called now and then with the stats so far.
	progress func(context.Context, scavengeStats)
	// beforeSlice runs before each slice is deleted (a test hook).
	beforeSlice func(context.Context)

	stats        scavengeStats
	lastProgress time.Time
}

// run scavenges every stream, then compacts. It returns ctx's error when
// stopped; what it removed until then stays removed.
func (sc *scavenger) run(ctx context.Context) error {
	sc.stats.DiskBefore = sc.db.Metrics().DiskSpaceUsage()
	sc.lastProgress = time.Now()
	lower := []byte{prefixIndex}
	for {
		names, err := sc.streamNames(lower)
		if err != nil {
			return err
		}
		if len(names) == 0 {
			break
		}
		for _, name := range names {
			if err := sc.stream(ctx, name); err != nil {
				return err
			}
			sc.stats.Streams++
		}
		lower = afterStream(names[len(names)-1])
	}
	if err := sc.compact(ctx); err != nil {
		return err
	}
	sc.stats.DiskAfter = sc.db.Metrics().DiskSpaceUsage()
	return nil
}

// streamNames returns up to scavengeStreamsPerPass names of streams with a
// state, from key lower on. Each stream's index entries follow its state
// key, and are sought past, not read.
func (sc *scavenger) streamNames(lower []byte) ([]string, error) {
	var names []string
	err := sc.durable.read(func(r pebble.Reader) error {
		it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: []byte{prefixIndex + 1}})
		if err != nil {
			return fmt.Errorf("open iterator: %w", err)
		}
		for valid := it.First(); valid && len(names) < scavengeStreamsPerPass; {
			name, state, ok := streamOfKey(it.Key())
			if !ok {
				_ = it.Close()
				return fmt.Errorf("key %q in the index range is neither a state nor an index entry", it.Key())
			}
			// (An index entry with no state before it has nothing to scavenge.)
			if state {
				names = append(names, name)
			}
			valid = it.SeekGE(afterStream(name))
		}
		return errors.Join(it.Error(), it.Close())
	})
	if err != nil {
		return nil, fmt.Errorf("scavenge: list streams: %w", err)
	}
	return names, nil
}

// stream removes the retired events of one stream, slice by slice.
func (sc *scavenger) stream(ctx context.Context, name string) error {
	for from := uint64(0); ; {
		if err := ctx.Err(); err != nil {
			return err
		}
		start := time.Now()
		sl, next, done, err := sc.collect(name, from)
		if err != nil {
			return fmt.Errorf("scavenge stream %q: %w", name, err)
		}
		if len(sl.events) > 0 {
			if err := sc.remove(ctx, name, sl); err != nil {
				return err
			}
		}
		if len(sl.events) > 0 || !done {
			// A stream with nothing to retire costs a lookup: no rest.
			if err := rest(ctx, time.Since(start)); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
		from = next
	}
}

// remove has the sequencer delete a slice of the stream's retired events.
func (sc *scavenger) remove(ctx context.Context, name string, sl *scavengeSlice) error {
	sc.beforeSlice(ctx)
	if err := ctx.Err(); err != nil {
		return err
	}
	res, err := sc.seq.submit(ctx, &op{kind: opScavenge, stream: name, scavenge: sl})
	if err == nil {
		err = res.err
	}
	if err != nil {
		return fmt.Errorf("scavenge stream %q: %w", name, err)
	}
	sc.stats.Removed += uint64(sl.removed)
	sc.stats.BytesRemoved += sl.freed
	sc.metrics.scavengeRemoved.Add(float64(sl.removed))
	sc.metrics.scavengeBytes.Add(float64(sl.freed))
	sc.report(ctx)
	return nil
}

// collect reads, in the current durable view, up to scavengeSliceEvents of
// the stream's retired events from revision from on, looking at no more
// than scavengeScanEvents; next is where the next slice starts, unless done.
func (sc *scavenger) collect(name string, from uint64) (sl *scavengeSlice, next uint64, done bool, err error) {
	sl = &scavengeSlice{}
	done = true
	now := time.Now()
	err = sc.durable.read(func(r pebble.Reader) error {
		view, err := readView(r, name)
		if err != nil {
			return err
		}
		hi, ok := view.retiredCeiling()
		if !ok {
			return nil
		}
		keyLen := len(indexPrefix(name)) + 8 + 8 + 1 + 8 // index key and value, log key
		scanned := 0
		return scanIndexed(r, name, from, hi, false, func(rev uint64, e *entry) (bool, error) {
			if len(sl.events) == scavengeSliceEvents || scanned == scavengeScanEvents {
				next, done = rev, false
				return false, nil
			}
			scanned++
			sc.stats.Scanned++
			sc.metrics.scavengeScanned.Inc()
			ret := retiree{rev: rev, pos: e.pos, size: keyLen + len(e.raw)}
			if view.maxAge > 0 {
				if ret.created, err = createdTicks(e); err != nil {
					return false, fmt.Errorf("event at position %d: created time: %w", e.pos, err)
				}
			}
			if view.retires(ret, now) {
				sl.events = append(sl.events, ret)
			}
			return true, nil
		})
	})
	return sl, next, done, err
}

// compact has Pebble rewrite the log and index ranges, dropping what the
// scavenge deleted, so its space is freed now rather than whenever Pebble
// would next compact there.
func (sc *scavenger) compact(ctx context.Context) error {
	head := sc.head()
	step := head/scavengeCompactPieces + 1
	ranges := [][2][]byte{{[]byte{prefixIndex}, []byte{prefixIndex + 1}}}
	for lo := uint64(0); lo <= head; lo += step {
		ranges = append(ranges, [2][]byte{logKey(lo), logKey(lo + step)})
	}
	ranges[len(ranges)-1][1] = []byte{prefixLog + 1}
	for _, r := range ranges {
		start := time.Now()
		if err := sc.db.Compact(ctx, r[0], r[1], false); err != nil {
			return fmt.Errorf("scavenge: compact %x..%x: %w", r[0], r[1], err)
		}
		if err := rest(ctx, time.Since(start)); err != nil {
			return err
		}
	}
	return nil
}

// report hands the stats to progress at most once a second.
func (sc *scavenger) report(ctx context.Context) {
	if time.Since(sc.lastProgress) < time.Second {
		return
	}
	sc.lastProgress = time.Now()
	sc.progress(ctx, sc.stats)
}

// rest waits long enough after work that took worked to keep a scavenge
// within scavengeDuty.
func rest(ctx context.Context, worked time.Duration) error {
	t := time.NewTimer(time.Duration(float64(worked) * (1 - scavengeDuty) / scavengeDuty))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
