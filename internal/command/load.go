package command

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
)

// readChunk is how many events one read returns while an entry loads or
// catches up: the whole history of a large aggregate is never held at once,
// and each read has a store deadline of its own.
const readChunk = 4096

// errStale reports a cached entry whose stream no longer holds the event the
// entry was folded to: the stream was deleted and recreated (or truncated).
var errStale = errors.New("the stream is not the one cached")

// reset empties e onto agg, an aggregate with no events.
func (s *Service) reset(e *entry, agg aggregate) {
	e.loaded, e.agg, e.rev, e.pos = false, agg, -1, 0
	e.lastID, e.lastMeta = [16]byte{}, eventcodec.Metadata{}
	e.ids = newCmdIndex()
	e.snap, e.lazy = nil, nil
	e.profile.Store(nil)
	if e.snapshotted && s.opts.SnapshotEvents > 0 {
		e.snap = &pageTracker{}
	}
}

// load builds e from its snapshot, if any, and the events after it. A
// snapshot that does not lead to the stream as it is now is discarded, and
// e is folded from the first event.
func (s *Service) load(ctx context.Context, e *entry) error { return s.loadWith(ctx, e, true) }

// loadWith is load; with lazy, from the keys of the pages when they reach
// far enough (see pagekeys.go), else from the pages in full.
func (s *Service) loadWith(ctx context.Context, e *entry, lazy bool) error {
	s.reset(e, e.fresh())
	var pages pageLog
	if e.snap != nil {
		var err error
		if pages, err = s.loadSnapshot(ctx, e, lazy); err != nil {
			return err
		}
	}
	_, err := s.catchUp(ctx, e)
	if errors.Is(err, errStale) && pages.used > 0 {
		s.metrics.pagesDiscarded.Add(float64(pages.used))
		s.log.Warn("snapshot pages do not match their stream; folding it from the start", "stream", e.stream, "pages", pages.used)
		s.dropSnapshot(ctx, snapshotStream(e.stream), pages.lastRev)
		s.dropSnapshot(ctx, keysStream(e.stream), pages.keysRev)
		s.reset(e, e.fresh())
		_, err = s.catchUp(ctx, e)
	}
	if err != nil {
		return err
	}
	if pages.used > 0 {
		s.compact(e)
	}
	e.noteProfile()
	e.loaded = true
	return nil
}

// loadSnapshot sets e, fresh from reset, from its page keys (with lazy,
// when they reach the pages written) or else from its pages, whose missing
// keys it then has written.
//
// A lazy load reads the last page first, as it needs it to tell whether the
// keys reach the pages: a customer with no pages — every customer until
// its history fills one, most of them — then costs no read of its keys or
// its pages, one store call where it took two.
func (s *Service) loadSnapshot(ctx context.Context, e *entry, lazy bool) (pageLog, error) {
	keys := keyChain{lastRev: -1}
	if lazy {
		last, err := s.lastPage(ctx, e)
		if err != nil || last.rev < 0 {
			return pageLog{lastRev: -1, keysRev: -1}, err
		}
		if keys, err = s.readKeys(ctx, e); err != nil {
			return pageLog{}, err
		}
		if last.reaches(keys, s.lazyReach()) {
			s.loadLazily(e, keys)
			return pageLog{used: len(keys.keys), lastRev: last.rev, keysRev: keys.lastRev}, nil
		}
	}
	found, applied, err := s.loadPages(ctx, e)
	if err != nil {
		return found, err
	}
	found.keysRev = keys.lastRev
	s.healKeys(e.stream, applied, keys.end())
	return found, nil
}

// refresh folds into e whatever was appended since it was folded (reloading
// it if the stream was recreated); moved reports whether there was any.
func (s *Service) refresh(ctx context.Context, e *entry) (moved bool, err error) {
	n, err := s.catchUp(ctx, e)
	if errors.Is(err, errStale) {
		return true, s.load(ctx, e)
	}
	return n > 0, err
}

// catchUp folds the events after e.rev into e, and returns how many. It reads
// from e.rev itself, to check the event there is still the one folded.
func (s *Service) catchUp(ctx context.Context, e *entry) (int, error) {
	from, check := uint64(0), e.rev >= 0
	if check {
		from = uint64(e.rev)
	}
	n := 0
	for {
		recs, err := s.read(ctx, e.stream, from, readChunk)
		if errors.Is(err, eventlog.ErrStreamNotFound) && !check {
			return n, nil
		}
		if errors.Is(err, eventlog.ErrStreamNotFound) {
			return n, fmt.Errorf("%s: %w", e.stream, errStale)
		}
		if err != nil {
			return n, err
		}
		full := len(recs) == readChunk
		if check {
			if len(recs) == 0 || recs[0].Revision != uint64(e.rev) || recs[0].EventID != e.lastID {
				return n, fmt.Errorf("%s@%d: %w", e.stream, e.rev, errStale)
			}
			e.pos = recs[0].Position // unknown after snapshot pages
			recs, check = recs[1:], false
		}
		for _, r := range recs {
			s.fold(e, r)
		}
		n += len(recs)
		if !full {
			return n, nil
		}
		from = uint64(e.rev) + 1
	}
}

// read reads up to max events of stream from revision from, under the store
// timeout.
func (s *Service) read(ctx context.Context, stream string, from, max uint64) ([]eventlog.Recorded, error) {
	return storeCall(ctx, s, eventlog.Op{Method: "ReadStream", Stream: stream}, func(ctx context.Context, c *esdb.Client) ([]eventlog.Recorded, error) {
		return eventlog.Read(ctx, c, s.reg, stream, from, max)
	})
}

// fold applies one stored event to e.
func (s *Service) fold(e *entry, r eventlog.Recorded) {
	if r.Event != nil {
		e.agg.Apply(r.Event)
	}
	if r.Meta.CommandID != "" {
		e.ids.set(idHash(r.Meta.CommandID), r.Revision)
	}
	e.rev, e.pos, e.lastID = int64(r.Revision), r.Position, r.EventID
	e.lastMeta = eventcodec.Metadata{CommandID: r.Meta.CommandID, Command: r.Meta.Command, Fingerprint: r.Meta.Fingerprint}
	if e.snap != nil {
		s.track(e, r)
	}
	e.noteProfile()
}

// noteProfile publishes a customer's profile once it is registered.
func (e *entry) noteProfile() {
	if c, ok := e.agg.(*domain.Customer); ok && c.Registered && e.profile.Load() == nil {
		e.profile.Store(c.Profile())
	}
}

// recordedAppend is how the store recorded a command's events, as wr says:
// under ids, at consecutive revisions ending at wr's.
func recordedAppend(stream string, events []domain.Event, ids []uuid.UUID, meta eventcodec.Metadata, wr *esdb.WriteResult) []eventlog.Recorded {
	first := wr.NextExpectedVersion + 1 - uint64(len(events))
	out := make([]eventlog.Recorded, len(events))
	for i, ev := range events {
		out[i] = eventlog.Recorded{
			Stream: stream, EventID: ids[i], Type: ev.EventType(),
			Revision: first + uint64(i), Position: wr.CommitPosition, Meta: meta, Event: ev,
		}
	}
	return out
}

// foldAppended applies to e the events of a command the store accepted.
func (s *Service) foldAppended(e *entry, appended []eventlog.Recorded) {
	for _, rec := range appended {
		s.fold(e, rec)
	}
}

// recordedIn looks meta's command ID up in e's index and confirms a hit by
// reading the one event it points to — or, when that is the last event e
// folded, by the command ID e kept of it. If that event belongs to another
// command ID (two IDs share a hash), the stream is scanned as before the
// index existed.
func (s *Service) recordedIn(ctx context.Context, e *entry, meta eventcodec.Metadata) (Result, bool, error) {
	rev, ok, err := s.indexed(ctx, e, idHash(meta.CommandID))
	if !ok || err != nil {
		return Result{}, false, err
	}
	if int64(rev) == e.rev && e.lastMeta.CommandID == meta.CommandID {
		return s.replayed("cache")(recorded([]eventlog.Recorded{{Revision: rev, Position: e.pos, Meta: e.lastMeta}}, meta))
	}
	recs, err := s.read(ctx, e.stream, rev, 1)
	if err != nil {
		return Result{}, false, err
	}
	if len(recs) == 1 && recs[0].Revision == rev && recs[0].Meta.CommandID == meta.CommandID {
		return s.replayed("store")(recorded(recs, meta))
	}
	s.log.Warn("command ID hash collision; scanning the stream", "stream", e.stream, "revision", rev)
	var (
		res   Result
		found bool
	)
	for from := uint64(0); ; from += readChunk {
		if recs, err = s.read(ctx, e.stream, from, readChunk); err != nil {
			return Result{}, false, err
		}
		// The command's last event is the one that counts.
		if r, ok, err := recorded(recs, meta); ok {
			if err != nil {
				return r, ok, err
			}
			res, found = r, true
		}
		if len(recs) < readChunk {
			return s.replayed("store")(res, found, nil)
		}
	}
}

// replayed passes recordedIn's answer on, counting a replay confirmed as
// named.
func (s *Service) replayed(confirmed string) func(Result, bool, error) (Result, bool, error) {
	return func(res Result, ok bool, err error) (Result, bool, error) {
		if ok && err == nil {
			s.metrics.replays.WithLabelValues(confirmed).Inc()
		}
		return res, ok, err
	}
}

// tip is where e's stream stands.
func (e *entry) tip() Result {
	if e.rev < 0 {
		return Result{}
	}
	return Result{Position: e.pos, Revision: uint64(e.rev)}
}

// idHash is the index key of a command ID: the first 8 bytes of its SHA-256,
// little-endian. Stable across processes and releases, as snapshot pages
// store it (changing it takes a new page format). Not FNV: command IDs are
// chosen by clients, who could craft IDs sharing a cheap hash and make every
// command on a customer confirm its lookup by scanning the whole stream.
func idHash(commandID string) uint64 {
	sum := sha256.Sum256([]byte(commandID))
	return binary.LittleEndian.Uint64(sum[:8])
}
