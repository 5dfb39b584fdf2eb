package command

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync/atomic"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/domain/runs"
	"github.com/orderly/orderly/internal/eventlog"
)

// Page keys: lazy loads of customers with long histories.
//
// A customer that decided a million orders has a thousand snapshot pages,
// 40 MB; reading them all was most of the first command's time after a
// restart. So each page has a companion event, its keys, in the stream
// "snapshot-keys-<stream>": where the page is (its revision), the head it
// ends with, and 32-bit fingerprints of the orders it holds credit lines of
// and of the command IDs it indexes — a fifth of the page. A load reads the
// keys alone, takes the head of the last, and leaves the credit book and the
// command index of the pages in the store (domain.Customer.DeferCredits).
// An order or command ID not found in memory is then looked up through the
// fingerprints of the pages, newest first, and the pages they point to are
// read one at a time, until one holds it; a fingerprint shared by another
// key costs a page read, never a wrong answer. Before a decision on an
// order's credit line, that line is resolved so (resolveCredit); a decision
// on a line nobody resolved is refused by the domain, not decided blind.
//
// Keys follow their page: the page writer appends them once the page is
// stored, so they never name a page that was not written. They chain as
// pages do (each starting where the last one used ended, under this build's
// fold key). A load uses them when they reach the last page written, or come
// within lazyReach events of it (events past the keys are folded from the
// stream); otherwise it reads the pages in full, as before keys existed, and
// writes the keys the pages miss in the background, so a store written by
// an earlier build gains them on its first load. A page the keys name but
// the store no longer holds where they say (its stream was deleted or
// rewritten) makes the customer load again in full, its keys dropped.
const (
	keysFormat    = 1
	keysEventType = "snapshot.keys"
	keysPrefix    = "snapshot-keys-"
	fpLen         = 4
	// keysFixedBytes estimates a page key's memory beside its fingerprints.
	keysFixedBytes = 256
)

func keysStream(stream string) string { return keysPrefix + stream }

// lazyReach is how many events the last page may end past the keys' end for
// a load still to use the keys, folding those events from the stream: two
// pages, as when the keys of the last were lost to a crash.
func (s *Service) lazyReach() uint64 { return 2 * uint64(s.opts.SnapshotEvents) }

// pageKeys are the keys of one snapshot page.
type pageKeys struct {
	pageHeader        // the page's
	pageRev    uint64 // the page's revision in its snapshot stream
	reset      bool   // the page's credit lines start from an empty book
	head       domain.CustomerHead
	credits    fingerprints // of the orders the page holds lines of
	ids        fingerprints // of the command ID hashes the page indexes
}

// fingerprints is a sorted set of 32-bit fingerprints, big-endian, as
// stored: lookups search it where it lies.
type fingerprints string

func fingerprintsOf(fps []uint32) fingerprints {
	slices.Sort(fps)
	fps = slices.Compact(fps)
	b := make([]byte, 0, fpLen*len(fps))
	for _, fp := range fps {
		b = binary.BigEndian.AppendUint32(b, fp)
	}
	return fingerprints(b)
}

func (f fingerprints) at(i int) uint32 {
	s := f[i*fpLen:]
	return uint32(s[0])<<24 | uint32(s[1])<<16 | uint32(s[2])<<8 | uint32(s[3])
}

func (f fingerprints) has(fp uint32) bool {
	n := len(f) / fpLen
	j := sort.Search(n, func(j int) bool { return f.at(j) >= fp })
	return j < n && f.at(j) == fp
}

// idFingerprint is the fingerprint of a command ID's hash (idHash).
func idFingerprint(hash uint64) uint32 { return uint32(hash >> 32) }

// pageKeysOf are the keys of p, stored at pageRev.
func pageKeysOf(p *page, pageRev uint64) pageKeys {
	ids := make([]uint32, 0, len(p.ids)/indexEntryLen)
	for off := 0; off < len(p.ids); off += indexEntryLen {
		ids = append(ids, idFingerprint(binary.BigEndian.Uint64([]byte(p.ids[off:off+indexKeyLen]))))
	}
	return pageKeys{
		pageHeader: p.pageHeader, pageRev: pageRev, reset: p.credits.Reset, head: p.head,
		credits: fingerprintsOf(p.credits.Fingerprints()), ids: fingerprintsOf(ids),
	}
}

// keysID names a page's keys, so keys written twice for one stored page are
// stored once.
func keysID(stream string, k pageKeys) uuid.UUID {
	return derive("snapshot-keys", stream, strconv.FormatUint(k.from, 10), strconv.FormatUint(k.to, 10),
		strconv.FormatUint(k.foldKey, 16), strconv.FormatUint(k.pageRev, 10))
}

func (k *pageKeys) encode() []byte {
	b := make([]byte, 0, 128+len(k.credits)+len(k.ids))
	b = k.pageHeader.append(b, keysFormat)
	b = binary.AppendUvarint(b, k.pageRev)
	b = appendBool(b, k.reset)
	b = appendHead(b, k.head)
	b = appendString(b, string(k.credits))
	return appendString(b, string(k.ids))
}

// decode reads keys from data; the fingerprints are slices of it.
func (k *pageKeys) decode(data string) error {
	r := pageReader{s: data}
	if err := r.header(&k.pageHeader, keysFormat); err != nil {
		return err
	}
	k.pageRev = r.uvarint()
	k.reset = r.byte() == 1
	k.head = r.head()
	k.credits, k.ids = fingerprints(r.string()), fingerprints(r.string())
	if r.err != nil || r.s != "" || len(k.credits)%fpLen != 0 || len(k.ids)%fpLen != 0 {
		return errBadPage
	}
	return nil
}

// keyChain is what readKeys found: the keys a load may use, in order.
type keyChain struct {
	keys    []pageKeys
	lastRev int64 // of the keys stream, -1 if none
}

// end is the last revision the keys cover, -1 if none.
func (c keyChain) end() int64 {
	if len(c.keys) == 0 {
		return -1
	}
	return int64(c.keys[len(c.keys)-1].to)
}

// readKeys reads e's page keys and chains them as loadPages chains pages,
// but in the order of the pages they describe, not the order they were
// written in: the keys a full load writes for old pages (healKeys) may land
// after those of a page written since. Keys all of another fold key are
// deleted, as their pages are.
func (s *Service) readKeys(ctx context.Context, e *entry) (keyChain, error) {
	chain := keyChain{lastRev: -1}
	var all []pageKeys
	stale := 0
	err := s.readPages(ctx, keysStream(e.stream), func(raw []*esdb.RecordedEvent) {
		for _, re := range raw {
			chain.lastRev = int64(re.EventNumber)
			if re.EventType != keysEventType {
				continue
			}
			var k pageKeys
			if err := k.decode(string(re.Data)); err != nil || k.foldKey != s.foldKey {
				stale++
				continue
			}
			all = append(all, k)
		}
	})
	if err != nil {
		return keyChain{}, err
	}
	slices.SortStableFunc(all, func(a, b pageKeys) int { return cmp.Compare(a.from, b.from) })
	next := uint64(0)
	for _, k := range all {
		if k.from == next { // else a repeat, or past a gap
			chain.keys, next = append(chain.keys, k), k.to+1
		}
	}
	if len(chain.keys) == 0 && stale > 0 {
		s.dropSnapshot(ctx, keysStream(e.stream), chain.lastRev)
		chain.lastRev = -1
	}
	return chain, nil
}

// lastPageRead is the last snapshot page of a customer: rev is its
// revision, -1 when there are no pages; to is where it ends, valid when
// current (it decodes, under this build's fold key).
type lastPageRead struct {
	rev     int64
	to      uint64
	current bool
}

// lastPage reads the last snapshot page of e.
func (s *Service) lastPage(ctx context.Context, e *entry) (lastPageRead, error) {
	stream := snapshotStream(e.stream)
	raw, err := storeCall(ctx, s, eventlog.Op{Method: "ReadStream", Stream: stream}, func(ctx context.Context, c *esdb.Client) ([]*esdb.RecordedEvent, error) {
		return eventlog.ReadRawBackwards(ctx, c, stream, 0, 1)
	})
	if errors.Is(err, eventlog.ErrStreamNotFound) || (err == nil && len(raw) == 0) {
		return lastPageRead{rev: -1}, nil
	}
	if err != nil {
		return lastPageRead{rev: -1}, err
	}
	var last page
	current := last.decode(string(raw[0].Data), false) == nil && last.foldKey == s.foldKey
	return lastPageRead{rev: int64(raw[0].EventNumber), to: last.to, current: current}, nil
}

// reaches reports whether chain reaches the last page, or comes within
// reach events of it (see lazyReach).
func (l lastPageRead) reaches(chain keyChain, reach uint64) bool {
	if len(chain.keys) == 0 || !l.current {
		return false
	}
	end := uint64(chain.end())
	return l.to >= end && l.to-end <= reach
}

// lazyPages are the snapshot pages a lazy load left in the store, by their
// keys.
type lazyPages struct {
	keys []pageKeys // the chain, oldest first
	// credits is the first page whose credit lines count: the newest that
	// started from an empty book (a registration); earlier lines are gone.
	// The command index has no such start.
	credits int
	bytes   int64
	keysRev int64 // of the keys stream, as the load read it
	// at is the page read last, and last that page: the lookups of one
	// command (its ID, its order) often meet in one page.
	at   int
	last *page
	// merged, once built in the background (see mergeKeys), holds every
	// page's fingerprints in one sorted array per kind, so that a lookup
	// costs one binary search, not one per page: without it, a lookup in a
	// customer of a million events searched a thousand pages (~0.1 ms).
	merged atomic.Pointer[mergedKeys]
}

// mergedKeys are the fingerprints of lazy pages as fingerprint<<32 | page
// index, sorted: the entries of one fingerprint lie together, newest page
// last.
type mergedKeys struct {
	credits, ids []uint64
}

// mergeFrom is how many lazy pages make a merge of their keys worth its
// CPU (a few ms for a thousand pages, once per load).
const mergeFrom = 16

// mergeKeys merges lz's fingerprints in the background.
func (s *Service) mergeKeys(lz *lazyPages) {
	if len(lz.keys) < mergeFrom {
		return
	}
	s.pages.background.Add(1)
	go func() {
		defer s.pages.background.Done()
		var m mergedKeys
		for i := range lz.keys {
			k := &lz.keys[i]
			if i >= lz.credits {
				m.credits = appendTagged(m.credits, k.credits, i)
			}
			m.ids = appendTagged(m.ids, k.ids, i)
		}
		sortByFingerprint(m.credits)
		sortByFingerprint(m.ids)
		lz.merged.Store(&m)
	}()
}

// sortByFingerprint sorts tagged fingerprints appended page by page: a
// stable radix sort of their upper 32 bits, two passes of 16, keeps each
// fingerprint's pages in order, at a tenth of a comparison sort's CPU.
func sortByFingerprint(a []uint64) {
	tmp := make([]uint64, len(a))
	at := make([]int, 1<<16)
	for shift := 32; shift < 64; shift += 16 {
		clear(at)
		for _, v := range a {
			at[v>>shift&0xffff]++
		}
		sum := 0
		for i, n := range at {
			at[i], sum = sum, sum+n
		}
		for _, v := range a {
			b := v >> shift & 0xffff
			tmp[at[b]] = v
			at[b]++
		}
		a, tmp = tmp, a // after the second pass, back in the caller's slice
	}
}

func appendTagged(to []uint64, f fingerprints, page int) []uint64 {
	for j := range len(f) / fpLen {
		to = append(to, uint64(f.at(j))<<32|uint64(page))
	}
	return to
}

// size estimates lz's memory.
func (lz *lazyPages) size() int64 {
	n := lz.bytes
	if m := lz.merged.Load(); m != nil {
		n += 8 * int64(len(m.credits)+len(m.ids))
	}
	return n
}

// candidates are the lazy pages that may hold a key of fingerprint fp,
// newest first: of its credit lines (credits) or of its index entries.
func (lz *lazyPages) candidates(credits bool, fp uint32) []int {
	if m := lz.merged.Load(); m != nil {
		all := m.ids
		if credits {
			all = m.credits
		}
		lo := uint64(fp) << 32
		j := sort.Search(len(all), func(j int) bool { return all[j] >= lo })
		var out []int
		for ; j < len(all) && all[j]>>32 == uint64(fp); j++ {
			out = append(out, int(uint32(all[j])))
		}
		slices.Reverse(out)
		return out
	}
	var out []int
	for i := len(lz.keys) - 1; i >= 0; i-- {
		switch k := &lz.keys[i]; {
		case credits && i >= lz.credits && k.credits.has(fp), !credits && k.ids.has(fp):
			out = append(out, i)
		}
	}
	return out
}

// loadLazily sets e, fresh from reset, from the keys of its pages: the head
// of the last, the rest left in the store.
func (s *Service) loadLazily(e *entry, chain keyChain) {
	lz := &lazyPages{keys: chain.keys, keysRev: chain.lastRev, at: -1}
	for i, k := range chain.keys {
		if k.reset {
			lz.credits = i
		}
		lz.bytes += int64(keysFixedBytes + len(k.credits) + len(k.ids))
	}
	last := chain.keys[len(chain.keys)-1]
	c := e.agg.(*domain.Customer)
	c.Restore(last.head)
	c.DeferCredits()
	e.lazy = lz
	e.rev, e.lastID = int64(last.to), last.lastID
	e.snap.from = last.to + 1
	s.metrics.pagesDeferred.Add(float64(len(chain.keys)))
	s.mergeKeys(lz)
}

// errPageMissing reports a page its keys name that is not where they say.
var errPageMissing = errors.New("snapshot page not where its keys say")

// fetchPage reads the i-th page of e's lazy pages, and checks it is the one
// its keys describe.
func (s *Service) fetchPage(ctx context.Context, e *entry, i int) (*page, error) {
	lz := e.lazy
	if lz.at == i {
		return lz.last, nil
	}
	k := &lz.keys[i]
	stream := snapshotStream(e.stream)
	raw, err := storeCall(ctx, s, eventlog.Op{Method: "ReadStream", Stream: stream}, func(ctx context.Context, c *esdb.Client) ([]*esdb.RecordedEvent, error) {
		return eventlog.ReadRaw(ctx, c, stream, k.pageRev, 1)
	})
	if errors.Is(err, eventlog.ErrStreamNotFound) {
		raw, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	p := &page{}
	if len(raw) != 1 || raw[0].EventNumber != k.pageRev || raw[0].EventType != pageEventType ||
		p.decode(string(raw[0].Data), true) != nil || p.pageHeader != k.pageHeader {
		return nil, fmt.Errorf("%s: page %d-%d at %d: %w", stream, k.from, k.to, k.pageRev, errPageMissing)
	}
	s.metrics.pagesFetched.Inc()
	lz.at, lz.last = i, p
	return p, nil
}

// resolveCredit makes sure e's customer can decide on orderID's credit line:
// a line left in the store by a lazy load is looked up there.
func (s *Service) resolveCredit(ctx context.Context, e *entry, orderID string) error {
	c, ok := e.agg.(*domain.Customer)
	if !ok || e.lazy == nil || c.CreditResolved(orderID) {
		return nil
	}
	err := s.inPages(ctx, e, e.lazy.candidates(true, domain.CreditFingerprint(orderID)), func(p *page) bool {
		l, found := p.credits.Line(orderID)
		if found {
			c.ResolveCredit(orderID, l, true)
		}
		return found
	})
	if err != nil || e.lazy == nil { // failed, or loaded in full meanwhile
		return err
	}
	if !c.CreditResolved(orderID) {
		c.ResolveCredit(orderID, domain.Credit{}, false)
	}
	return nil
}

// indexed looks a command ID's hash up in e's index, and in the pages a lazy
// load left in the store.
func (s *Service) indexed(ctx context.Context, e *entry, hash uint64) (rev uint64, ok bool, err error) {
	if rev, ok := e.ids.get(hash); ok || e.lazy == nil {
		return rev, ok, nil
	}
	key := string(binary.BigEndian.AppendUint64(nil, hash))
	err = s.inPages(ctx, e, e.lazy.candidates(false, idFingerprint(hash)), func(p *page) bool {
		var v string
		if v, ok = runs.Find(p.ids, key, indexKeyLen, indexEntryLen); ok {
			rev = binary.BigEndian.Uint64([]byte(v))
		}
		return ok
	})
	if err != nil || ok || e.lazy != nil {
		return rev, ok, err
	}
	rev, ok = e.ids.get(hash) // loaded in full meanwhile
	return rev, ok, nil
}

// inPages reads the lazy pages of e that may hold a key (candidates, newest
// first) until found says one does. A page missing from where its keys say
// makes e load again in full (see loadWith), and e.lazy is then nil.
func (s *Service) inPages(ctx context.Context, e *entry, candidates []int, found func(*page) bool) error {
	lz := e.lazy
	for _, i := range candidates {
		p, err := s.fetchPage(ctx, e, i)
		if errors.Is(err, errPageMissing) {
			s.metrics.pagesDiscarded.Add(float64(len(lz.keys)))
			s.log.Warn("snapshot page keys name a page the store does not hold there; loading the customer in full", "stream", e.stream, "err", err)
			s.dropSnapshot(ctx, keysStream(e.stream), lz.keysRev)
			return s.loadWith(ctx, e, false)
		}
		if err != nil {
			return err
		}
		if found(p) {
			return nil
		}
	}
	return nil
}

// healKeys writes, in the background, the keys of the pages of chain after
// the revision keysEnd: pages a load read in full because their keys were
// missing.
func (s *Service) healKeys(stream string, chain []storedPage, keysEnd int64) {
	if len(chain) == 0 || int64(chain[len(chain)-1].p.to) <= keysEnd {
		return
	}
	s.pages.background.Add(1)
	go func() {
		defer s.pages.background.Done()
		for _, sp := range chain {
			if int64(sp.p.from) <= keysEnd {
				continue
			}
			k := pageKeysOf(&sp.p, sp.rev)
			if !s.pages.enqueue(pageJob{stream: stream, id: keysID(stream, k), data: k.encode()}) {
				s.metrics.pagesDropped.Inc()
				s.log.Warn("snapshot page keys not queued; the next load reads the pages in full", "stream", stream, "from", k.from)
				return
			}
		}
	}()
}
