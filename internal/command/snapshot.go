package command

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"sync"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/domain/runs"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
)

// Snapshot pages: a customer's state, persisted so that loading it costs
// O(state), not O(history), and never a fold of a million events.
//
// A customer's state grows with its history (its credit book keeps every
// order ever decided), so one snapshot of all of it would outgrow the store's
// event size limit and cost O(state) to rewrite. Instead each page covers a
// run of SnapshotEvents events and holds only what changed in it: the head
// (scalars) as it stands at the run's end, the credit lines its events
// touched, and its idempotency index entries. Those two are sorted runs of
// fixed-width entries (domain.CreditSeal, cmdIndex), sealed in memory at the
// page's end and loaded back as they are: loading a million lines pushes a
// thousand runs, it inserts nothing in a map. Pages go to the stream
// "snapshot-<stream>", as binary events of a type outside "orderly.", so
// the projector's and the saga's type filters never see them.
//
// A load first tries the pages' keys, which spare it reading the pages (see
// pagekeys.go); without keys that reach the last page, it reads the pages
// forwards and applies each that continues the chain
// (a page starting where the last applied one ended): repeats written by
// another replica, and pages past a gap left by a failed write, are passed
// over. Then the stream is read from the last covered revision on: the event
// there must be the one the page names, or the stream was deleted and
// recreated, and the pages are dropped. Every page carries the fold key
// (page format, domain.FoldVersion, and each event type's current schema):
// pages of another key are never applied.
//
// Pages are written in the background, never on a command's path, through a
// queue bounded in bytes; a page that cannot be queued or written is logged
// and counted, and its entry writes no more pages (later ones would follow a
// gap) until it is loaded again.
const (
	// pageFormat 3: credit lines and index entries as sorted runs; 2: index
	// entries hash command IDs with SHA-256 (idHash), not FNV-1a. Pages of
	// another format are discarded.
	pageFormat    = 3
	pageEventType = "snapshot.page"
	pagePrefix    = "snapshot-"
	// pageChunk is how many pages one read returns while loading.
	pageChunk = 64
	// pageReads is how many page chunks a load reads at once.
	pageReads = 4
	// maxPageEvents keeps the largest page (every event touching its own
	// credit line) well within the store's 1 MiB event limit.
	maxPageEvents = 4096
	maxPageBytes  = 900 << 10
)

func snapshotStream(stream string) string { return pagePrefix + stream }

// foldKey names what a fold of stored events means to this build.
func foldKey(reg *eventcodec.Registry) uint64 { return foldKeyOf(pageFormat, reg) }

// foldKeyOf is the fold key of a build writing pages of format.
func foldKeyOf(format int, reg *eventcodec.Registry) uint64 {
	h := fnv.New64a()
	_, _ = fmt.Fprintf(h, "format %d fold %d", format, domain.FoldVersion)
	for _, t := range reg.Types() {
		_, _ = fmt.Fprintf(h, " %s:%d", t, reg.Current(t))
	}
	return h.Sum64()
}

// pageTracker follows the page being built.
type pageTracker struct {
	from   uint64 // first revision of the page
	broken bool
}

// pageHeader says what a page covers, under which fold key: the revisions
// from and to, and the ID of the event at to. A page's keys carry it too.
type pageHeader struct {
	foldKey  uint64
	from, to uint64
	lastID   uuid.UUID
}

// page is one decoded snapshot page.
type page struct {
	pageHeader
	head    domain.CustomerHead
	credits domain.CreditSeal
	ids     string // the index run (cmdIndex)
}

// track, at the end of a page's run, seals the changes of the run (the
// customer's credit lines and the command index) and queues them as a page.
// It runs inside fold, so within a command only when a page ends: sorting
// and encoding a few thousand entries is the only cost on that path. An
// entry whose pages broke still seals, to keep its maps small.
func (s *Service) track(e *entry, r eventlog.Recorded) {
	t := e.snap
	if r.Revision+1-t.from < uint64(s.opts.SnapshotEvents) {
		return
	}
	c := e.agg.(*domain.Customer)
	p := page{
		pageHeader: pageHeader{foldKey: s.foldKey, from: t.from, to: r.Revision, lastID: r.EventID},
		head:       c.Head(), credits: c.SealCredits(), ids: e.ids.seal(),
	}
	t.from = r.Revision + 1
	s.compact(e)
	if t.broken {
		return
	}
	data := p.encode()
	if len(data) > maxPageBytes || !s.pages.enqueue(pageJob{stream: e.stream, id: pageID(e.stream, p), data: data, page: &p}) {
		t.broken = true
		s.metrics.pagesDropped.Inc()
		s.log.Warn("snapshot page not queued; this aggregate writes no more pages until it is loaded again",
			"stream", e.stream, "from", p.from, "to", p.to, "bytes", len(data))
	}
}

// compact merges e's runs in the background once they are many: the
// thousand a load pushes, or the pages sealed since. Lookups go on while it
// runs (runs.Stack is safe for concurrent use); a compaction of an entry
// evicted meanwhile only costs its CPU.
func (s *Service) compact(e *entry) {
	stacks := []*runs.Stack{e.ids.runs}
	if c, ok := e.agg.(*domain.Customer); ok && c.CreditRuns() != nil {
		stacks = append(stacks, c.CreditRuns())
	}
	stacks = slices.DeleteFunc(stacks, func(st *runs.Stack) bool { return !st.NeedsCompaction() })
	if len(stacks) == 0 {
		return
	}
	s.pages.background.Add(1)
	go func() {
		defer s.pages.background.Done()
		for _, st := range stacks {
			st.Compact()
		}
	}()
}

// pageID names a page, so a page written twice by one writer is stored once.
func pageID(stream string, p page) uuid.UUID {
	return derive("snapshot", stream, strconv.FormatUint(p.from, 10), strconv.FormatUint(p.to, 10), strconv.FormatUint(p.foldKey, 16))
}

// pageLog is what a load found of e's snapshot.
type pageLog struct {
	used    int   // pages applied, or deferred to their keys
	lastRev int64 // revision of the last page read, -1 if none
	keysRev int64 // revision of the last page keys read, -1 if none
}

// storedPage is a page applied by a load, and its revision.
type storedPage struct {
	p   page
	rev uint64
}

// loadPages applies e's snapshot pages to e (fresh from reset), leaving it
// at the last revision they cover. It returns the pages applied.
func (s *Service) loadPages(ctx context.Context, e *entry) (pageLog, []storedPage, error) {
	stream := snapshotStream(e.stream)
	found := pageLog{lastRev: -1, keysRev: -1}
	var chain []string // the pages to apply, as read
	var revs []uint64  // their revisions
	var last page      // the last page's header
	next, stale := uint64(0), 0
	err := s.readPages(ctx, stream, func(raw []*esdb.RecordedEvent) {
		for _, re := range raw {
			found.lastRev = int64(re.EventNumber)
			if re.EventType != pageEventType {
				continue
			}
			data := string(re.Data)
			var h page
			if err := h.decode(data, false); err != nil || h.foldKey != s.foldKey {
				stale++
				continue
			}
			if h.from != next {
				continue // a repeat, or past a gap
			}
			chain, revs, last, next = append(chain, data), append(revs, re.EventNumber), h, h.to+1
		}
	})
	if err != nil {
		return found, nil, err
	}
	if stale > 0 {
		s.metrics.pagesDiscarded.Add(float64(stale))
		if len(chain) == 0 {
			s.log.Info("snapshot pages of another fold version discarded", "stream", e.stream, "pages", stale)
			s.dropSnapshot(ctx, stream, found.lastRev)
		}
	}
	if len(chain) == 0 {
		return found, nil, nil
	}
	c := e.agg.(*domain.Customer)
	applied := make([]storedPage, len(chain))
	for i, data := range chain {
		p := &applied[i].p
		applied[i].rev = revs[i]
		err := p.decode(data, true)
		if err == nil {
			c.Restore(p.head)
			err = errors.Join(c.RestoreCredits(p.credits), e.ids.restore(p.ids))
		}
		if err != nil {
			return found, nil, fmt.Errorf("snapshot page %d-%d of %s: %w", p.from, p.to, e.stream, err)
		}
	}
	e.rev, e.lastID = int64(last.to), last.lastID
	e.snap.from = last.to + 1
	found.used = len(chain)
	s.metrics.pagesLoaded.Add(float64(len(chain)))
	return found, applied, nil
}

// readPages hands each event of a snapshot stream to use, in order. A
// customer with a million events has a thousand pages of ~40 KB: read one
// chunk after another, the transfer was most of a first command's time
// after a restart. So the first chunk is read alone (most customers have
// no more, and it says where the stream starts), and the chunks after it
// pageReads at a time (the store serves them on as many gRPC streams),
// used in order, up to the first that is short: the end, as the stream
// stood when that chunk was read. The few read past it come back empty.
func (s *Service) readPages(ctx context.Context, stream string, use func([]*esdb.RecordedEvent)) error {
	read := func(ctx context.Context, from uint64) ([]*esdb.RecordedEvent, error) {
		return storeCall(ctx, s, eventlog.Op{Method: "ReadStream", Stream: stream}, func(ctx context.Context, c *esdb.Client) ([]*esdb.RecordedEvent, error) {
			return eventlog.ReadRaw(ctx, c, stream, from, pageChunk)
		})
	}
	raw, err := read(ctx, 0)
	if errors.Is(err, eventlog.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	use(raw)
	if len(raw) < pageChunk {
		return nil
	}
	next := raw[len(raw)-1].EventNumber + 1

	// A failed read ends the load (the command fails, and its retry loads
	// again); the reads still in flight are cancelled and waited for.
	type chunk struct {
		raw  []*esdb.RecordedEvent
		err  error
		done chan struct{}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var queue []*chunk // started, in order, not used yet
	for {
		for len(queue) < pageReads {
			c, from := &chunk{done: make(chan struct{})}, next
			next += pageChunk
			queue = append(queue, c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(c.done)
				c.raw, c.err = read(ctx, from)
				// Only this chunk's range: had the stream been deleted
				// and written anew meanwhile, a read from below its new
				// first event would return later ones.
				c.raw = slices.DeleteFunc(c.raw, func(re *esdb.RecordedEvent) bool {
					return re.EventNumber < from || re.EventNumber >= from+pageChunk
				})
			}()
		}
		c := queue[0]
		queue = queue[1:]
		<-c.done
		if errors.Is(c.err, eventlog.ErrStreamNotFound) {
			return nil // deleted meanwhile: what was read stands
		}
		if c.err != nil {
			return c.err
		}
		use(c.raw)
		if len(c.raw) < pageChunk {
			return nil
		}
	}
}

// dropSnapshot deletes a snapshot stream (of pages or of their keys) whose
// events are of no use, so loads stop reading them; new pages recreate it.
// Expecting the revision read keeps an event another replica wrote
// meanwhile.
func (s *Service) dropSnapshot(ctx context.Context, stream string, lastRev int64) {
	if lastRev < 0 {
		return
	}
	_, err := storeCall(ctx, s, eventlog.Op{Method: "DeleteStream", Stream: stream}, func(ctx context.Context, c *esdb.Client) (*esdb.DeleteResult, error) {
		return c.DeleteStream(ctx, stream, esdb.DeleteStreamOptions{ExpectedRevision: esdb.Revision(uint64(lastRev))})
	})
	if err != nil {
		s.log.Warn("snapshot stream not deleted", "stream", stream, "err", err)
	}
}

// pageJob is a page waiting to be written, then its keys; or keys alone.
type pageJob struct {
	stream string    // the customer's stream
	id     uuid.UUID // of the page, or of the keys when page is nil
	data   []byte    // the encoded page, or keys
	page   *page     // the page data encodes; nil for keys alone
}

// pageWriter appends pages in the order queued, from one goroutine that runs
// while there are pages to write.
type pageWriter struct {
	s        *Service
	maxBytes int
	// background counts the work on loaded state under way: merges of runs
	// (see compact), keys of pages loaded without them (see healKeys).
	background sync.WaitGroup

	mu    sync.Mutex
	queue []pageJob
	bytes int
	done  chan struct{} // closed when the running drain ends; nil when idle
}

// enqueue queues j unless that would pass the queue's bound.
func (w *pageWriter) enqueue(j pageJob) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.bytes+len(j.data) > w.maxBytes {
		return false
	}
	w.queue = append(w.queue, j)
	w.bytes += len(j.data)
	if w.done == nil {
		w.done = make(chan struct{})
		go w.drain(w.done)
	}
	return true
}

func (w *pageWriter) drain(done chan struct{}) {
	defer close(done)
	for {
		w.mu.Lock()
		if len(w.queue) == 0 {
			w.queue, w.done = nil, nil
			w.mu.Unlock()
			return
		}
		j := w.queue[0]
		// Cleared, or the backing array keeps the page alive until the
		// queue next empties.
		w.queue[0] = pageJob{}
		w.queue = w.queue[1:]
		w.mu.Unlock()

		w.write(j)
		w.mu.Lock()
		w.bytes -= len(j.data)
		w.mu.Unlock()
	}
}

// write appends j's page, if any, then its keys, which name the revision
// the store gave the page.
func (w *pageWriter) write(j pageJob) {
	data, id := j.data, j.id
	if j.page != nil {
		wr, err := w.append(snapshotStream(j.stream), pageEventType, id, data)
		if err != nil {
			w.s.metrics.pagesDropped.Inc()
			w.s.log.Warn("snapshot page not written", "stream", j.stream, "err", err)
			return
		}
		w.s.metrics.pagesWritten.Inc()
		k := pageKeysOf(j.page, wr.NextExpectedVersion)
		data, id = k.encode(), keysID(j.stream, k)
	}
	if _, err := w.append(keysStream(j.stream), keysEventType, id, data); err != nil {
		w.s.metrics.pagesDropped.Inc()
		w.s.log.Warn("snapshot page keys not written; loads read the pages in full until they are", "stream", j.stream, "err", err)
	}
}

func (w *pageWriter) append(stream, eventType string, id uuid.UUID, data []byte) (*esdb.WriteResult, error) {
	return storeCall(context.Background(), w.s, eventlog.Op{Method: "AppendToStream", Stream: stream}, func(ctx context.Context, c *esdb.Client) (*esdb.WriteResult, error) {
		return c.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}},
			esdb.EventData{EventID: id, EventType: eventType, ContentType: esdb.ContentTypeBinary, Data: data})
	})
}

// waitBackground returns once the work on loaded state under way is done.
func (w *pageWriter) waitBackground() { w.background.Wait() }

// wait returns once the queued pages are written (or failed).
func (w *pageWriter) wait(ctx context.Context) error {
	for {
		w.mu.Lock()
		done := w.done
		w.mu.Unlock()
		if done == nil {
			return nil
		}
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// The page encoding: a little-endian fixed 64-bit fold key, varints
// elsewhere, strings (runs included) as a length and bytes.
func (p *page) encode() []byte {
	c := &p.credits
	b := make([]byte, 0, 128+len(c.Run)+len(c.Odd)*64+len(p.ids))
	b = p.pageHeader.append(b, pageFormat)
	b = appendHead(b, p.head)
	b = appendBool(b, c.Reset)
	b = appendString(b, c.Run)
	b = binary.AppendUvarint(b, uint64(len(c.Odd)))
	for _, l := range c.Odd {
		b = appendString(b, l.OrderID)
		b = append(b, l.Credit.State)
		b = appendMoney(b, l.Credit.Amount)
	}
	return appendString(b, p.ids)
}

// append encodes h after the format byte of what it heads.
func (h *pageHeader) append(b []byte, format byte) []byte {
	b = append(b, format)
	b = binary.LittleEndian.AppendUint64(b, h.foldKey)
	b = binary.AppendUvarint(b, h.from)
	b = binary.AppendUvarint(b, h.to)
	return append(b, h.lastID[:]...)
}

func appendHead(b []byte, h domain.CustomerHead) []byte {
	b = appendBool(b, h.Registered)
	b = appendString(b, h.Name)
	b = appendString(b, h.Email)
	b = appendMoney(b, h.CreditLimit)
	return appendMoney(b, h.Reserved)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendMoney(b []byte, m domain.Money) []byte {
	return binary.AppendVarint(appendString(b, m.Currency), m.Minor)
}

var errBadPage = errors.New("malformed snapshot page")

// decode reads a page from data; without body, only what precedes the head.
// Strings and runs are slices of data: decoding copies no entry.
func (p *page) decode(data string, body bool) error {
	r := pageReader{s: data}
	if err := r.header(&p.pageHeader, pageFormat); err != nil {
		return err
	}
	if !body {
		return nil
	}
	p.head = r.head()
	c := &p.credits
	c.Reset, c.Run = r.byte() == 1, r.string()
	c.Odd = make([]domain.CreditLine, r.count())
	for i := range c.Odd {
		c.Odd[i] = domain.CreditLine{OrderID: r.string(), Credit: domain.Credit{State: r.byte(), Amount: r.money()}}
	}
	p.ids = r.string()
	if r.err != nil || r.s != "" {
		return errBadPage
	}
	return nil
}

// pageReader consumes an encoded page; after the first error every read
// returns zero values and err stays set.
type pageReader struct {
	s   string
	err error
}

func (r *pageReader) take(n int) string {
	if r.err != nil || n < 0 || n > len(r.s) {
		r.err = errBadPage
		return ""
	}
	v := r.s[:n]
	r.s = r.s[n:]
	return v
}

func (r *pageReader) byte() byte {
	if v := r.take(1); v != "" {
		return v[0]
	}
	return 0
}

func (r *pageReader) fixed64() uint64 {
	v := r.take(8)
	if v == "" {
		return 0
	}
	return binary.LittleEndian.Uint64([]byte(v))
}

func (r *pageReader) uvarint() uint64 {
	var x uint64
	for shift := 0; shift < 64 && r.err == nil; shift += 7 {
		c := r.byte()
		x |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return x
		}
	}
	r.err = errBadPage
	return 0
}

func (r *pageReader) varint() int64 {
	u := r.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

// count reads a length and checks it against the bytes left (every element
// takes at least one), so a corrupt length cannot make decode allocate much.
func (r *pageReader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.s)) {
		r.err = errBadPage
		return 0
	}
	return int(n)
}

func (r *pageReader) string() string { return r.take(r.count()) }

// header reads a page header after the format byte, which must be format.
func (r *pageReader) header(h *pageHeader, format byte) error {
	if r.byte() != format {
		return errBadPage
	}
	h.foldKey = r.fixed64()
	h.from, h.to = r.uvarint(), r.uvarint()
	copy(h.lastID[:], r.take(16))
	if r.err != nil || h.to < h.from {
		return errBadPage
	}
	return nil
}

func (r *pageReader) head() domain.CustomerHead {
	return domain.CustomerHead{Registered: r.byte() == 1, Name: r.string(), Email: r.string(), CreditLimit: r.money(), Reserved: r.money()}
}

func (r *pageReader) money() domain.Money {
	return domain.Money{Currency: r.string(), Minor: r.varint()}
}
