package command

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/eventstore/estest"
)

// creditHistory is a customer registered through s with a limit of 1,000
// USD and n orders of 1 USD each reserved through it, the i-th under the
// command ID "reserve-i"; with pages of 10 events, most of them sealed in
// pages that are written when it returns.
type creditHistory struct {
	id      string
	orders  []string
	results []Result // of each reservation
}

// storeWithReservations starts a store with reserveMany's customer, its
// pages of 10 events written: the options to run services on it with.
func storeWithReservations(t *testing.T, n int) (string, *esdb.Client, Options, creditHistory) {
	t.Helper()
	connString := estest.Start(t)
	opts := Options{SnapshotEvents: 10}
	return connString, estest.Client(t, connString), opts, reserveMany(t, serviceOn(t, connString, opts), n)
}

func reserveMany(t *testing.T, s *Service, n int) creditHistory {
	t.Helper()
	h := creditHistory{id: uuid.NewString()}
	if _, err := s.registerCustomer(testCtx(t), domain.RegisterCustomer{CustomerID: h.id, Name: "Ada", Email: "ada@example.com", CreditLimit: usd(1000)},
		eventcodec.Metadata{CommandID: "register"}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		h.orders = append(h.orders, uuid.NewString())
		res, err := s.ReserveCredit(testCtx(t), h.reserve(i), h.meta(i))
		if err != nil {
			t.Fatal(err)
		}
		h.results = append(h.results, res)
	}
	if err := s.WaitSnapshots(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	return h
}

// keys are h's orders and command IDs, as sameAnswers takes them.
func (h creditHistory) keys() []stored {
	out := []stored{{nil, "register"}}
	for i, o := range h.orders {
		out = append(out, stored{domain.CreditReserved{OrderID: o}, h.meta(i).CommandID})
	}
	return out
}

func (h creditHistory) reserve(i int) domain.ReserveCredit {
	return domain.ReserveCredit{CustomerID: h.id, OrderID: h.orders[i], Amount: usd(1)}
}

func (h creditHistory) meta(i int) eventcodec.Metadata {
	return eventcodec.Metadata{CommandID: fmt.Sprintf("reserve-%d", i)}
}

// TestLazyLoadDecidesAsAFullLoad: a customer loaded after a restart from its
// pages' keys alone (no page read in full) decides on orders and command
// IDs sealed in old pages as a full load would: a resent old command is
// answered with its first result, an old order is not reserved twice, an
// old reservation is released by its amount, and a new order is reserved.
func TestLazyLoadDecidesAsAFullLoad(t *testing.T) {
	t.Parallel()
	connString, client, opts, h := storeWithReservations(t, 100)
	stream := eventlog.CustomerStream(h.id)

	s := serviceOn(t, connString, opts)
	ctx := testCtx(t)
	again, err := s.ReserveCredit(ctx, h.reserve(3), h.meta(3))
	if err != nil || !replayOf(again, h.results[3]) {
		t.Fatalf("resent old reservation = %+v, %v; want its first result %+v", again, err, h.results[3])
	}
	if l, d := value(s.metrics.pagesLoaded), value(s.metrics.pagesDeferred); l != 0 || d < 9 {
		t.Fatalf("restart: %v pages loaded, %v deferred to their keys; want 0 and at least 9", l, d)
	}
	_, err = s.ReserveCredit(ctx, h.reserve(5), eventcodec.Metadata{CommandID: "reserve-5-again"})
	if domain.ReasonOf(err) != domain.ReasonCreditAlreadyDecided {
		t.Fatalf("a second reservation of an order decided in an old page: %v; want %s", err, domain.ReasonCreditAlreadyDecided)
	}
	if _, err := s.ReleaseCredit(ctx, domain.ReleaseCredit{CustomerID: h.id, OrderID: h.orders[7]}, eventcodec.Metadata{CommandID: "release-7"}); err != nil {
		t.Fatal(err)
	}
	fresh := uuid.NewString()
	if _, err := s.ReserveCredit(ctx, domain.ReserveCredit{CustomerID: h.id, OrderID: fresh, Amount: usd(5)}, eventcodec.Metadata{CommandID: "reserve-fresh"}); err != nil {
		t.Fatal(err)
	}
	if value(s.metrics.pagesFetched) == 0 {
		t.Fatal("no page read for a lookup: the old orders were not looked up where they are")
	}
	inStore := customerAt(t, s, h.id)
	if inStore.Reserved.Minor != 100-1+5 || !inStore.HasReservation(fresh) || inStore.HasReservation(h.orders[7]) || !inStore.HasReservation(h.orders[5]) {
		t.Fatalf("stream folds to %d reserved (fresh %v, released %v, old %v); want 104, true, false, true",
			inStore.Reserved.Minor, inStore.HasReservation(fresh), inStore.HasReservation(h.orders[7]), inStore.HasReservation(h.orders[5]))
	}
	later := []stored{{domain.CreditReserved{OrderID: fresh}, "reserve-fresh"}, {nil, "release-7"}}
	sameAnswers(t, "loaded from keys", loaded(t, s, h.id), fromZero(t, client, h.id), h.keys(), later)
	if c := loaded(t, s, h.id).head; c.Reserved.Minor != inStore.Reserved.Minor {
		t.Fatalf("cached customer holds %d reserved; the stream %d", c.Reserved.Minor, inStore.Reserved.Minor)
	}

	// What the keys cost: a fraction of the pages they stand for.
	pages, keys := streamBytes(t, client, snapshotStream(stream)), streamBytes(t, client, keysStream(stream))
	if keys == 0 || keys*2 > pages {
		t.Fatalf("page keys hold %d bytes against the pages' %d; want at most half", keys, pages)
	}
}

// lazyOf is what a lazy load of customer id into s's cache left in the
// store; nil if it was loaded otherwise.
func lazyOf(s *Service, id string) *lazyPages {
	e := acquire(s, customers, id)
	defer s.cache.release(e)
	return e.lazy
}

// streamBytes is the data a stream holds.
func streamBytes(t *testing.T, c *esdb.Client, stream string) int {
	t.Helper()
	raw, err := eventlog.ReadRaw(testCtx(t), c, stream, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, re := range raw {
		n += len(re.Data)
	}
	return n
}

// TestPagesWithoutKeysGainThem: a store written before page keys existed
// (here: its keys deleted) loads from the pages in full, and that load
// writes the keys, so the next restart loads from them.
func TestPagesWithoutKeysGainThem(t *testing.T) {
	t.Parallel()
	connString, client, opts, h := storeWithReservations(t, 50)
	stream := eventlog.CustomerStream(h.id)
	if _, err := client.DeleteStream(testCtx(t), keysStream(stream), esdb.DeleteStreamOptions{}); err != nil {
		t.Fatal(err)
	}

	full := serviceOn(t, connString, opts)
	want := fromZero(t, client, h.id)
	sameAnswers(t, "without keys", loaded(t, full, h.id), want, h.keys())
	if l, d := value(full.metrics.pagesLoaded), value(full.metrics.pagesDeferred); l < 5 || d != 0 {
		t.Fatalf("without keys: %v pages loaded, %v deferred; want 5 or more, and 0", l, d)
	}
	full.pages.waitBackground()
	if err := full.WaitSnapshots(testCtx(t)); err != nil {
		t.Fatal(err)
	}

	lazy := serviceOn(t, connString, opts)
	again, err := lazy.ReserveCredit(testCtx(t), h.reserve(0), h.meta(0))
	if err != nil || !replayOf(again, h.results[0]) {
		t.Fatalf("resent first reservation = %+v, %v; want %+v", again, err, h.results[0])
	}
	if l, d := value(lazy.metrics.pagesLoaded), value(lazy.metrics.pagesDeferred); l != 0 || d < 5 {
		t.Fatalf("after the keys were written: %v pages loaded, %v deferred; want 0, and 5 or more", l, d)
	}
}

// TestKeysOfMovedPagesLoadInFull: keys naming pages that are no longer at
// the revisions they say (the page stream was deleted and written anew)
// are caught when a lookup reads a page: the customer is loaded again in
// full and decides right, and its keys are written anew.
func TestKeysOfMovedPagesLoadInFull(t *testing.T) {
	t.Parallel()
	connString, client, opts, h := storeWithReservations(t, 50)
	pages := snapshotStream(eventlog.CustomerStream(h.id))
	raw, err := eventlog.ReadRaw(testCtx(t), client, pages, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.DeleteStream(testCtx(t), pages, esdb.DeleteStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, re := range raw { // the same pages, now past the deleted ones
		if _, err := client.AppendToStream(testCtx(t), pages, esdb.AppendToStreamOptions{},
			esdb.EventData{EventID: uuid.New(), EventType: re.EventType, ContentType: esdb.ContentTypeBinary, Data: re.Data}); err != nil {
			t.Fatal(err)
		}
	}

	s := serviceOn(t, connString, opts)
	_, err = s.ReserveCredit(testCtx(t), h.reserve(2), eventcodec.Metadata{CommandID: "reserve-2-again"})
	if domain.ReasonOf(err) != domain.ReasonCreditAlreadyDecided {
		t.Fatalf("a second reservation of an order of a moved page: %v; want %s", err, domain.ReasonCreditAlreadyDecided)
	}
	if l, d := value(s.metrics.pagesLoaded), value(s.metrics.pagesDiscarded); l == 0 || d == 0 {
		t.Fatalf("%v pages loaded, %v discarded; want the keys discarded and the pages loaded", l, d)
	}
	s.pages.waitBackground()
	if err := s.WaitSnapshots(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	next := serviceOn(t, connString, opts)
	_, err = next.ReserveCredit(testCtx(t), h.reserve(2), eventcodec.Metadata{CommandID: "reserve-2-third"})
	if domain.ReasonOf(err) != domain.ReasonCreditAlreadyDecided {
		t.Fatalf("after the keys were written anew: %v; want %s", err, domain.ReasonCreditAlreadyDecided)
	}
	if l, d, f := value(next.metrics.pagesLoaded), value(next.metrics.pagesDeferred), value(next.metrics.pagesFetched); l != 0 || d == 0 || f == 0 {
		t.Fatalf("after the keys were written anew: %v pages loaded, %v deferred, %v fetched; want 0, some, some", l, d, f)
	}
}

// rewriteKeys replaces the page keys of customer id by what change makes
// of them, as written in order.
func rewriteKeys(t *testing.T, client *esdb.Client, id string, change func([]pageKeys) []pageKeys) {
	t.Helper()
	stream := keysStream(eventlog.CustomerStream(id))
	raw, err := eventlog.ReadRaw(testCtx(t), client, stream, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]pageKeys, len(raw))
	for i, re := range raw {
		if err := keys[i].decode(string(re.Data)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.DeleteStream(testCtx(t), stream, esdb.DeleteStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, k := range change(keys) {
		if _, err := client.AppendToStream(testCtx(t), stream, esdb.AppendToStreamOptions{},
			esdb.EventData{EventID: uuid.New(), EventType: keysEventType, ContentType: esdb.ContentTypeBinary, Data: k.encode()}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestKeysNamingAnotherPageLoadInFull: keys whose revision holds another
// page than the one they describe (here: each shifted onto its neighbour)
// are caught by the page's own header, and the customer loads in full.
func TestKeysNamingAnotherPageLoadInFull(t *testing.T) {
	t.Parallel()
	connString, client, opts, h := storeWithReservations(t, 50)
	rewriteKeys(t, client, h.id, func(keys []pageKeys) []pageKeys {
		for i := range keys {
			keys[i].pageRev = (keys[i].pageRev + 1) % uint64(len(keys))
		}
		return keys
	})
	s := serviceOn(t, connString, opts)
	for i := range h.orders {
		_, err := s.ReserveCredit(testCtx(t), h.reserve(i), eventcodec.Metadata{CommandID: fmt.Sprintf("reserve-%d-again", i)})
		if domain.ReasonOf(err) != domain.ReasonCreditAlreadyDecided {
			t.Fatalf("a second reservation of order %d: %v; want %s", i, err, domain.ReasonCreditAlreadyDecided)
		}
	}
	if l, d := value(s.metrics.pagesLoaded), value(s.metrics.pagesDiscarded); l == 0 || d == 0 {
		t.Fatalf("%v pages loaded, %v discarded; want the keys discarded and the pages loaded", l, d)
	}
}

// TestKeysChainInPageOrder: keys written out of their pages' order (as
// those a full load writes for old pages may land after a new page's) still
// chain, and a load uses them all.
func TestKeysChainInPageOrder(t *testing.T) {
	t.Parallel()
	connString, client, opts, h := storeWithReservations(t, 50)
	rewriteKeys(t, client, h.id, func(keys []pageKeys) []pageKeys {
		slices.Reverse(keys)
		return keys
	})
	s := serviceOn(t, connString, opts)
	sameAnswers(t, "keys in reverse", loaded(t, s, h.id), fromZero(t, client, h.id), h.keys())
	if l, d := value(s.metrics.pagesLoaded), value(s.metrics.pagesDeferred); l != 0 || d != 5 {
		t.Fatalf("%v pages loaded, %v deferred; want 0 and 5", l, d)
	}
}

// TestPageKeysRoundTrip: keys decode to what was encoded, and a truncated
// or padded encoding is refused, not misread.
func TestPageKeysRoundTrip(t *testing.T) {
	k := pageKeys{
		pageHeader: pageHeader{foldKey: 0xfeed, from: 10, to: 19, lastID: uuid.New()}, pageRev: 7, reset: true,
		head:    domain.CustomerHead{Registered: true, Name: "Ada", Email: "ada@example.com", CreditLimit: usd(100), Reserved: usd(3)},
		credits: fingerprintsOf([]uint32{9, 3, 3, 1 << 31}), ids: fingerprintsOf([]uint32{5}),
	}
	data := string(k.encode())
	var got pageKeys
	if err := got.decode(data); err != nil || got != k {
		t.Fatalf("decoded %+v, %v; want %+v", got, err, k)
	}
	for _, fp := range []uint32{1, 3, 9, 1 << 31} {
		if got.credits.has(fp) != (fp != 1) {
			t.Errorf("credits.has(%d) = %v", fp, got.credits.has(fp))
		}
	}
	for _, bad := range []string{data[:len(data)-1], data + "x", "\x02" + data[1:], ""} {
		if err := new(pageKeys).decode(bad); err == nil {
			t.Errorf("decoded a malformed encoding of %d bytes", len(bad))
		}
	}
}

// TestMergedKeysAnswerAsPages: once a lazy load's fingerprints are merged
// in the background, lookups go through the merged arrays and answer as the
// customer folded from zero; for every key, the merged arrays name the
// same pages, in the same order, as a search of each page's keys.
func TestMergedKeysAnswerAsPages(t *testing.T) {
	t.Parallel()
	connString, client, id, history := storeWithCustomer(t, 21, 600)
	opts := Options{SnapshotEvents: 7}
	w := serviceOn(t, connString, opts)
	loaded(t, w, id)
	if err := w.WaitSnapshots(testCtx(t)); err != nil {
		t.Fatal(err)
	}

	s := serviceOn(t, connString, opts)
	loaded(t, s, id)
	s.pages.waitBackground()
	lz := lazyOf(s, id)
	if lz == nil || lz.merged.Load() == nil {
		t.Fatal("no merged keys after a lazy load of many pages")
	}
	orders, commands := keysOf(history)
	scan := &lazyPages{keys: lz.keys, credits: lz.credits}
	for _, o := range orders {
		fp := domain.CreditFingerprint(o)
		if got, want := lz.candidates(true, fp), scan.candidates(true, fp); !slices.Equal(got, want) {
			t.Fatalf("order %s: merged keys name pages %v; the pages' own keys %v", o, got, want)
		}
	}
	for _, c := range commands {
		fp := idFingerprint(idHash(c))
		if got, want := lz.candidates(false, fp), scan.candidates(false, fp); !slices.Equal(got, want) {
			t.Fatalf("command %s: merged keys name pages %v; the pages' own keys %v", c, got, want)
		}
	}
	sameAnswers(t, "merged keys", loaded(t, s, id), fromZero(t, client, id), history)
}

// TestSortByFingerprint: the radix sort of tagged fingerprints, appended
// page by page, orders them as a comparison sort does; among equal
// fingerprints (many, over a small range), by page.
func TestSortByFingerprint(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ perPage, fpRange uint32 }{{0, 1}, {1, 1 << 31}, {100, 1000}, {100, 1<<32 - 1}} {
		var a []uint64
		for page := range 50 {
			for range c.perPage {
				a = append(a, uint64(rand.Uint32N(c.fpRange))<<32|uint64(page))
			}
		}
		want := slices.Clone(a)
		slices.Sort(want)
		sortByFingerprint(a)
		if !slices.Equal(a, want) {
			t.Fatalf("%d a page, fingerprints under %d: radix order differs from sort order", c.perPage, c.fpRange)
		}
	}
}
