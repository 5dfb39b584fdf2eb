package projection

import (
	"context"
	"errors"
	"maps"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/views"
)

// pipeline turns a batch of recorded events into a batch of view documents
// for one kind of view.
//
// A batch is split into partitions by stream, so one stream's events stay in
// one partition, in log order; partitions decode, load and fold in parallel.
// Within a partition each document's events are folded one after the other
// into one document (coalescing), which is written once. The batch is
// written as a whole with its checkpoint, so the checkpoint never passes an
// event some partition has not applied.
type pipeline[D any] struct {
	kind       kind[D]
	codec      *eventcodec.Registry
	store      views.Writer
	partitions int
	cache      *docCache[D]
}

// part is one partition's share of a batch: its events decoded and grouped
// by document, in the order the documents first appear. A document's events
// are a list threaded through recs (one allocation for the partition rather
// than one per document).
type part struct {
	keys  []string
	spans map[string]span
	recs  []eventlog.Recorded
	next  []int // next[i] is the index in recs of the event after recs[i] of its document, or -1
	dead  []views.DeadLetter
}

// span is where a document's events start and end in part.recs.
type span struct{ first, last int }

func (pt *part) add(key string, rec eventlog.Recorded) {
	i := len(pt.recs)
	pt.recs, pt.next = append(pt.recs, rec), append(pt.next, -1)
	if sp, seen := pt.spans[key]; seen {
		pt.next[sp.last] = i
		pt.spans[key] = span{sp.first, i}
		return
	}
	pt.keys = append(pt.keys, key)
	pt.spans[key] = span{i, i}
}

// decoded is a batch after decoding.
type decoded struct {
	parts []part
	// events is how many events the batch had; own how many of them were
	// the view's (decoded or dead-lettered).
	events, own int
	// last is the commit position of the batch's last event, lastAt when
	// it was recorded.
	last   uint64
	lastAt time.Time
}

// decode partitions and decodes a batch. Events that cannot be decoded
// become dead letters.
func (p *pipeline[D]) decode(events []*esdb.RecordedEvent) decoded {
	n := max(1, min(p.partitions, len(events)))
	shares := make([][]*esdb.RecordedEvent, n)
	for _, e := range events {
		i := partition(e.StreamID, n)
		shares[i] = append(shares[i], e)
	}
	out := decoded{parts: make([]part, n), events: len(events)}
	if len(events) > 0 {
		out.last, out.lastAt = events[len(events)-1].Position.Commit, events[len(events)-1].CreatedDate
	}
	var wg sync.WaitGroup
	for i := range shares {
		wg.Go(func() { out.parts[i] = p.decodePart(shares[i]) })
	}
	wg.Wait()
	for _, pt := range out.parts {
		out.own += len(pt.recs) + len(pt.dead)
	}
	return out
}

func (p *pipeline[D]) decodePart(events []*esdb.RecordedEvent) part {
	pt := part{spans: map[string]span{}}
	for _, e := range events {
		prefix, key, ok := eventlog.StreamID(e.StreamID)
		if !ok || prefix != p.kind.prefix {
			continue // another view's event: skipped before the cost of decoding
		}
		rec, err := eventlog.Decode(p.codec, e)
		if err != nil {
			pt.dead = append(pt.dead, deadLetter(e, err))
			continue
		}
		pt.add(key, rec)
	}
	return pt
}

func deadLetter(e *esdb.RecordedEvent, err error) views.DeadLetter {
	return views.DeadLetter{
		EventID: e.EventID.String(), Stream: e.StreamID, Revision: e.EventNumber, Position: e.Position.Commit,
		Type: e.EventType, RecordedAt: e.CreatedDate, Error: err.Error(), Data: e.Data, Metadata: e.UserMetadata,
	}
}

// partition maps a stream to one of n partitions (FNV-1a, inlined: this
// runs for every event).
func partition(stream string, n int) int {
	h := uint32(2166136261)
	for i := 0; i < len(stream); i++ {
		h ^= uint32(stream[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}

// fold loads the documents the decoded batch changes from t and folds the
// events into them, returning the batch to write (without its checkpoint).
// It reads the store but writes nothing, so it can be retried.
func (p *pipeline[D]) fold(ctx context.Context, t views.Target, d decoded) (views.Batch, error) {
	docs := make([][]D, len(d.parts))
	errs := make([]error, len(d.parts))
	var wg sync.WaitGroup
	for i := range d.parts {
		wg.Go(func() { docs[i], errs[i] = p.foldPart(ctx, t, &d.parts[i]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return views.Batch{}, err
	}
	var all []D
	var dead []views.DeadLetter
	for i, pt := range d.parts {
		all = append(all, docs[i]...)
		dead = append(dead, pt.dead...)
	}
	var b views.Batch
	p.kind.put(&b, all)
	b.DeadLetters = dead
	return b, nil
}

func (p *pipeline[D]) foldPart(ctx context.Context, t views.Target, pt *part) ([]D, error) {
	// A document whose first event here creates it is folded from scratch:
	// it is then exactly the fold of its stream so far. Should it exist
	// already (a replay), the store's revision guard keeps the stored one.
	// One whose previous revision was written here is taken from the
	// cache; the others are read.
	var load []string
	stored := map[string]D{}
	for _, key := range pt.keys {
		first := pt.recs[pt.spans[key].first]
		if first.Type == p.kind.creates && first.Revision == 0 {
			continue
		}
		if doc, ok := p.cache.before(key, first.Revision); ok {
			stored[key] = doc
			continue
		}
		load = append(load, key)
	}
	if len(load) > 0 {
		read, err := p.kind.load(ctx, p.store, t, load)
		if err != nil {
			return nil, err
		}
		maps.Copy(stored, read)
	}
	out := make([]D, 0, len(pt.keys))
	for _, key := range pt.keys {
		doc := stored[key] // the zero D when new or missing
		changed := false
		for i := pt.spans[key].first; i >= 0; i = pt.next[i] {
			if p.kind.fold(&doc, key, pt.recs[i]) {
				changed = true
			}
		}
		if changed {
			out = append(out, doc)
		}
	}
	return out, nil
}
