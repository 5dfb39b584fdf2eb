package eventstore_test

// Stream metadata through the official client's SetStreamMetadata and
// GetStreamMetadata, and what it retires from reads and subscriptions. Where
// EventStoreDB's behaviour is subtle, the test name says "LikeEventStoreDB";
// the expectations follow its server's writer and the .NET client's tests.

import (
	"math"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"google.golang.org/grpc/codes"
)

func setMeta(t testing.TB, c *esdb.Client, stream string, exp esdb.ExpectedRevision, m esdb.StreamMetadata) *esdb.WriteResult {
	t.Helper()
	res, err := c.SetStreamMetadata(testCtx(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, m)
	if err != nil {
		t.Fatalf("set metadata of %s: %v", stream, err)
	}
	return res
}

func getMeta(t testing.TB, c *esdb.Client, stream string) *esdb.StreamMetadata {
	t.Helper()
	m, err := c.GetStreamMetadata(testCtx(t), stream, esdb.ReadStreamOptions{})
	if err != nil {
		t.Fatalf("get metadata of %s: %v", stream, err)
	}
	return m
}

func maxCount(n uint64) esdb.StreamMetadata {
	var m esdb.StreamMetadata
	m.SetMaxCount(n)
	return m
}

// wantRevisions reads stream (forwards from the start, or backwards from the
// end) and checks the revisions it returns.
func wantRevisions(t testing.TB, c *esdb.Client, stream string, backwards bool, want ...uint64) {
	t.Helper()
	opts := esdb.ReadStreamOptions{}
	if backwards {
		opts = esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}
	}
	evs, err := readStream(t, c, stream, opts, 100)
	if err != nil {
		t.Fatalf("read %s (backwards %v): %v", stream, backwards, err)
	}
	if got := revisions(evs); !slices.Equal(got, want) {
		t.Fatalf("read %s (backwards %v) = %v, want %v", stream, backwards, got, want)
	}
}

func TestMetadata_RoundTrip(t *testing.T) {
	estest.Fresh(t) // fixed stream names: not yet made unique per run
	c := newClient(t)
	mustAppend(t, c, "meta-rt", esdb.NoStream{}, events(1, "e")...)

	var acl esdb.Acl
	acl.AddReadRoles("$all")
	acl.AddWriteRoles("writer")
	acl.AddDeleteRoles("$admins")
	acl.AddMetaReadRoles("auditor")
	acl.AddMetaWriteRoles("ops")
	var m esdb.StreamMetadata
	m.SetMaxCount(17)
	m.SetMaxAge(48 * time.Hour)
	m.SetTruncateBefore(0)
	m.SetCacheControl(90 * time.Second)
	m.SetAcl(acl)
	m.AddCustomProperty("owner", "saga")
	m.AddCustomProperty("weight", 2.5)
	m.AddCustomProperty("enabled", true)
	m.AddCustomProperty("nested", map[string]any{"a": []any{"x", 1.0}})
	if res := setMeta(t, c, "meta-rt", esdb.NoStream{}, m); res.NextExpectedVersion != 0 {
		t.Fatalf("first metadata at revision %d, want 0", res.NextExpectedVersion)
	}
	if got := getMeta(t, c, "meta-rt"); !reflect.DeepEqual(*got, m) {
		t.Fatalf("metadata = %+v, want %+v", *got, m)
	}

	// The metadata is an event of $$stream, as the client wrote it.
	evs, err := readStream(t, c, "$$meta-rt", esdb.ReadStreamOptions{}, 10)
	if err != nil || len(evs) != 1 || evs[0].Event.EventType != "$metadata" || evs[0].Event.ContentType != "application/json" {
		t.Fatalf("$$meta-rt reads %v, %v; want one $metadata JSON event", ids(evs), err)
	}

	// The named ACLs, and metadata with nothing set.
	var named esdb.StreamMetadata
	named.SetAcl(esdb.UserStreamAcl)
	setMeta(t, c, "meta-rt", esdb.Revision(0), named)
	if got := getMeta(t, c, "meta-rt"); !got.IsUserStreamAcl() || got.MaxCount() != nil {
		t.Fatalf("metadata = %+v, want only $userStreamAcl", *got)
	}
	setMeta(t, c, "meta-rt", esdb.Revision(1), esdb.StreamMetadata{})
	if got := getMeta(t, c, "meta-rt"); !reflect.DeepEqual(*got, esdb.StreamMetadata{}) {
		t.Fatalf("metadata = %+v, want empty", *got)
	}
}

func TestMetadata_ExpectedRevisionOnMetastream(t *testing.T) {
	estest.Fresh(t) // fixed stream names: not yet made unique per run
	c := newClient(t)
	setMeta(t, c, "meta-exp", esdb.NoStream{}, maxCount(1))
	_, err := c.SetStreamMetadata(testCtx(t), "meta-exp", esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, maxCount(2))
	wantCode(t, err, esdb.ErrorCodeWrongExpectedVersion)
	if res := setMeta(t, c, "meta-exp", esdb.Revision(0), maxCount(3)); res.NextExpectedVersion != 1 {
		t.Fatalf("second metadata at revision %d, want 1", res.NextExpectedVersion)
	}
	for _, exp := range []esdb.ExpectedRevision{esdb.Revision(0), esdb.Revision(5), esdb.NoStream{}} {
		_, err = c.SetStreamMetadata(testCtx(t), "meta-exp", esdb.AppendToStreamOptions{ExpectedRevision: exp}, maxCount(4))
		wantCode(t, err, esdb.ErrorCodeWrongExpectedVersion)
	}
	setMeta(t, c, "meta-exp", esdb.StreamExists{}, maxCount(5))
	setMeta(t, c, "meta-exp", esdb.Any{}, maxCount(6))
	if got := getMeta(t, c, "meta-exp").MaxCount(); got == nil || *got != 6 {
		t.Fatalf("max count = %v, want the latest, 6", got)
	}
	// The stream itself was never written: metadata does not create it.
	_, err = readStream(t, c, "meta-exp", esdb.ReadStreamOptions{}, 10)
	wantCode(t, err, esdb.ErrorCodeResourceNotFound)
}

// EventStoreDB gives metadata streams $maxCount 1: only the latest metadata
// event reads, in either direction, while revisions go on.
func TestMetadata_MetastreamShowsOnlyLatest_LikeEventStoreDB(t *testing.T) {
	estest.Fresh(t) // fixed stream names: not yet made unique per run
	c := newClient(t)
	for i := range uint64(3) {
		setMeta(t, c, "meta-latest", esdb.Any{}, maxCount(i+1))
	}
	wantRevisions(t, c, "$$meta-latest", false, 2)
	wantRevisions(t, c, "$$meta-latest", true, 2)
}

// GetStreamMetadata of a stream with no metadata: the real server answers
// $$stream as not found, which the Go client (v4) returns as an error with
// ResourceNotFound (the .NET client turns it into "no metadata").
func TestMetadata_OfStreamThatDoesNotExistYet_LikeEventStoreDB(t *testing.T) {
	estest.Fresh(t) // fixed stream names: not yet made unique per run
	c := newClient(t)
	_, err := c.GetStreamMetadata(testCtx(t), "meta-new", esdb.ReadStreamOptions{})
	wantCode(t, err, esdb.ErrorCodeResourceNotFound)

	setMeta(t, c, "meta-new", esdb.NoStream{}, maxCount(2))
	_, err = readStream(t, c, "meta-new", esdb.ReadStreamOptions{}, 10)
	wantCode(t, err, esdb.ErrorCodeResourceNotFound)
	// The metadata applies to the stream once it is written.
	res := mustAppend(t, c, "meta-new", esdb.NoStream{}, events(3, "e")...)
	if res.NextExpectedVersion != 2 {
		t.Fatalf("first append: next %d, want 2", res.NextExpectedVersion)
	}
	wantRevisions(t, c, "meta-new", false, 1, 2)
}

func TestMetadata_MaxCountOnReads(t *testing.T) {
	estest.Fresh(t) // fixed stream names: not yet made unique per run
	c := newClient(t)
	setMeta(t, c, "mc", esdb.NoStream{}, maxCount(3))
	mustAppend(t, c, "mc", esdb.NoStream{}, events(5, "e")...)
	wantRevisions(t, c, "mc", false, 2, 3, 4)
	wantRevisions(t, c, "mc", true, 4, 3, 2)

	evs, err := readStream(t, c, "mc", esdb.ReadStreamOptions{From: esdb.Revision(0)}, 2)
	if err != nil || !slices.Equal(revisions(evs), []uint64{2, 3}) {
		t.Fatalf("forwards from 0, count 2 = %v, %v; want [2 3]", revisions(evs), err)
	}
	evs, err = readStream(t, c, "mc", esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.Revision(1)}, 10)
	if err != nil || len(evs) != 0 {
		t.Fatalf("backwards from a retired revision = %v, %v; want nothing", revisions(evs), err)
	}

	// Less strict brings events back (nothing is scavenged); stricter hides more.
	setMeta(t, c, "mc", esdb.Revision(0), maxCount(4))
	wantRevisions(t, c, "mc", false, 1, 2, 3, 4)
	setMeta(t, c, "mc", esdb.Revision(1), maxCount(2))
	wantRevisions(t, c, "mc", true, 4, 3)
}

// A $tb past the end leaves the stream existing and reading empty: only a
// soft delete's $tb (MaxInt64) makes it "not found".
func TestMetadata_TruncateBeforeOnReads_LikeEventStoreDB(t *testing.T) {
	estest.Fresh(t) // fixed stream names: not yet made unique per run
	c := newClient(t)
	mustAppend(t, c, "tb", esdb.NoStream{}, events(5, "e")...)
	var m esdb.StreamMetadata
	m.SetTruncateBefore(3)
	setMeta(t, c, "tb", esdb.NoStream{}, m)
	wantRevisions(t, c, "tb", false, 3, 4)
	wantRevisions(t, c, "tb", true, 4, 3)
	// Backwards from the start is backwards from revision 0, which $tb
	// hides: nothing, not the first event kept.
	if evs, err := readStream(t, c, "tb", esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.Start{}}, 10); err != nil || len(evs) != 0 {
		t.Fatalf("backwards from the start = %v, %v; want nothing", revisions(evs), err)
	}

	m.SetTruncateBefore(10)
	setMeta(t, c, "tb", esdb.Revision(0), m)
	wantRevisions(t, c, "tb", false)
	// Still there for expected revisions: the next append continues it.
	if res := mustAppend(t, c, "tb", esdb.Revision(4), events(1, "e")...); res.NextExpectedVersion != 5 {
		t.Fatalf("append after $tb: next %d, want 5", res.NextExpectedVersion)
	}
	_, err := c.AppendToStream(testCtx(t), "tb", esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, events(1, "e")...)
	wantCode(t, err, esdb.ErrorCodeWrongExpectedVersion)
	wantRevisions(t, c, "tb", true)
}

// agedStore serves a store whose clock the test moves: events written while
// it is an hour behind are an hour old when read.
func agedStore(t testing.TB, opts ...estest.Option) (*esdb.Client, *atomic.Int64) {
	srv, conn := estest.Serve(t, opts...)
	var behind atomic.Int64
	eventstore.SetClock(srv, func() time.Time { return time.Now().Add(-time.Duration(behind.Load())) })
	return estest.Client(t, conn), &behind
}

// agedStream writes old events an hour ago, then young ones now, and sets
// the stream's $maxAge to ten minutes.
func agedStream(t testing.TB, c *esdb.Client, behind *atomic.Int64, stream string, old, young int) esdb.StreamMetadata {
	t.Helper()
	behind.Store(int64(time.Hour))
	mustAppend(t, c, stream, esdb.NoStream{}, events(old, "old")...)
	behind.Store(0)
	mustAppend(t, c, stream, esdb.Revision(uint64(old-1)), events(young, "young")...)
	var m esdb.StreamMetadata
	m.SetMaxAge(10 * time.Minute)
	setMeta(t, c, stream, esdb.NoStream{}, m)
	return m
}

// subscribeFromStart subscribes to stream from its start, until the test ends.
func subscribeFromStart(t testing.TB, c *esdb.Client, stream string) *esdb.Subscription {
	t.Helper()
	sub, err := c.SubscribeToStream(testCtx(t), stream, esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	if err != nil {
		t.Fatalf("subscribe to %s: %v", stream, err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	return sub
}

func TestMetadata_MaxAgeOnReads(t *testing.T) {
	estest.Fresh(t) // fixed stream names: not yet made unique per run
	c, behind := agedStore(t)
	m := agedStream(t, c, behind, "age", 3, 2)
	wantRevisions(t, c, "age", false, 3, 4)
	wantRevisions(t, c, "age", true, 4, 3)
	// The count counts what is kept.
	evs, err := readStream(t, c, "age", esdb.ReadStreamOptions{}, 1)
	if err != nil || !slices.Equal(revisions(evs), []uint64{3}) {
		t.Fatalf("forwards, count 1 = %v, %v; want [3]", revisions(evs), err)
	}
	m.SetMaxAge(2 * time.Hour)
	setMeta(t, c, "age", esdb.Revision(0), m)
	wantRevisions(t, c, "age", false, 0, 1, 2, 3, 4)
}

// EventStoreDB hides retired events from stream reads only: $all shows them
// until a scavenge removes them, and shows the $metadata events too.
func TestMetadata_AllStillShowsRetiredEvents_LikeEventStoreDB(t *testing.T) {
	estest.Fresh(t) // fixed stream names: not yet made unique per run
	c := newClient(t)
	mustAppend(t, c, "retired", esdb.NoStream{}, events(4, "e")...)
	setMeta(t, c, "retired", esdb.NoStream{}, maxCount(1))
	all := readAll(t, c, esdb.ReadAllOptions{}, 100)
	want := []string{"retired@0", "retired@1", "retired@2", "retired@3", "$$retired@0"}
	if got := ids(all); !slices.Equal(got, want) {
		t.Fatalf("$all = %v, want %v", got, want)
	}
	sub, err := c.SubscribeToAll(testCtx(t), esdb.SubscribeToAllOptions{From: esdb.Start{}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if r := collect(t, sub, 5, 10*time.Second); len(r.events) != 5 || r.events[0].EventNumber != 0 {
		t.Fatalf("$all subscription got %v, want all 5 events", revisionsOf(r.events))
	}
}

func TestMetadata_RetentionOnStreamSubscriptions(t *testing.T) {
	estest.Fresh(t) // fixed stream names: not yet made unique per run
	c, behind := agedStore(t)
	agedStream(t, c, behind, "sub-age", 2, 1)

	mustAppend(t, c, "sub-mc", esdb.NoStream{}, events(5, "e")...)
	setMeta(t, c, "sub-mc", esdb.NoStream{}, maxCount(2))

	mustAppend(t, c, "sub-tb", esdb.NoStream{}, events(3, "e")...)
	var tb esdb.StreamMetadata
	tb.SetTruncateBefore(2)
	setMeta(t, c, "sub-tb", esdb.NoStream{}, tb)

	for stream, want := range map[string][]uint64{"sub-age": {2}, "sub-mc": {3, 4}, "sub-tb": {2}} {
		t.Run(stream, func(t *testing.T) {
			sub := subscribeFromStart(t, c, stream)
			r := collect(t, sub, len(want), 10*time.Second)
			if got := recordedRevisions(r.events); !slices.Equal(got, want) || r.caughtUpAt >= 0 {
				t.Fatalf("catch-up got %v (caught up at %d), want %v first", got, r.caughtUpAt, want)
			}
			waitCaughtUp(t, sub)
			// Live: new events come, even an append larger than $maxCount
			// gives only what a read would.
			res := mustAppend(t, c, stream, esdb.StreamExists{}, events(3, "live")...)
			wantLive := []uint64{res.NextExpectedVersion - 2, res.NextExpectedVersion - 1, res.NextExpectedVersion}
			if stream == "sub-mc" {
				wantLive = wantLive[1:]
			}
			r = collect(t, sub, len(wantLive), 10*time.Second)
			if got := recordedRevisions(r.events); !slices.Equal(got, wantLive) {
				t.Fatalf("live got %v, want %v", got, wantLive)
			}
		})
	}
}

// Live, the subscription follows metadata set while it runs, and hides what
// a read would hide. (Whether EventStoreDB's live feed applies a $tb set past
// the end is not documented; this store keeps reads and subscriptions in
// agreement.)
func TestMetadata_LiveSubscriptionFollowsNewMetadata(t *testing.T) {
	estest.Fresh(t) // fixed stream names: not yet made unique per run
	c := newClient(t)
	mustAppend(t, c, "follow", esdb.NoStream{}, events(1, "e")...)
	sub := subscribeFromStart(t, c, "follow")
	if r := collect(t, sub, 1, 10*time.Second); len(r.events) != 1 {
		t.Fatalf("catch-up got %v", revisionsOf(r.events))
	}
	waitCaughtUp(t, sub)
	var m esdb.StreamMetadata
	m.SetTruncateBefore(3)
	setMeta(t, c, "follow", esdb.NoStream{}, m)
	mustAppend(t, c, "follow", esdb.Revision(0), events(4, "e")...) // revisions 1..4
	r := collect(t, sub, 2, 10*time.Second)
	if got := recordedRevisions(r.events); !slices.Equal(got, []uint64{3, 4}) {
		t.Fatalf("live got %v, want [3 4]", got)
	}
	wantRevisions(t, c, "follow", false, 3, 4)
}

func recordedRevisions(evs []*esdb.RecordedEvent) []uint64 {
	out := make([]uint64, len(evs))
	for i, ev := range evs {
		out[i] = ev.EventNumber
	}
	return out
}

// A soft delete replaces the stream's metadata with $tb = MaxInt64; the next
// append starts the stream again and rewrites it with $tb at its first
// revision (EventStoreDB's writer, and the .NET client's soft delete tests).
func TestMetadata_SoftDeleteSetsTruncateBefore_LikeEventStoreDB(t *testing.T) {
	estest.Fresh(t) // fixed stream names: not yet made unique per run
	c := newClient(t)
	mustAppend(t, c, "sd", esdb.NoStream{}, events(2, "e")...)
	m := maxCount(100)
	m.AddCustomProperty("k", "v")
	setMeta(t, c, "sd", esdb.NoStream{}, m)
	if _, err := c.DeleteStream(testCtx(t), "sd", esdb.DeleteStreamOptions{ExpectedRevision: esdb.Revision(1)}); err != nil {
		t.Fatal(err)
	}
	// The client decodes numbers as float64: MaxInt64 comes back as 2^63.
	got := getMeta(t, c, "sd")
	if tb := got.TruncateBefore(); tb == nil || *tb < math.MaxInt64 || got.MaxCount() != nil || got.CustomProperty("k") != nil {
		t.Fatalf("metadata after soft delete = %+v, want only $tb = MaxInt64", *got)
	}
	_, err := readStream(t, c, "sd", esdb.ReadStreamOptions{}, 10)
	wantCode(t, err, esdb.ErrorCodeResourceNotFound)
	if res := mustAppend(t, c, "sd", esdb.NoStream{}, events(3, "again")...); res.NextExpectedVersion != 4 {
		t.Fatalf("recreating append: next %d, want 4", res.NextExpectedVersion)
	}
	wantRevisions(t, c, "sd", false, 2, 3, 4)
	if tb := getMeta(t, c, "sd").TruncateBefore(); tb == nil || *tb != 2 {
		t.Fatalf("$tb after recreating = %v, want 2", tb)
	}
	wantRevisions(t, c, "$$sd", false, 2) // set, soft delete, recreate
	// Recreated once: a second "no stream" append is a conflict.
	_, err = c.AppendToStream(testCtx(t), "sd", esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, events(1, "e")...)
	wantCode(t, err, esdb.ErrorCodeWrongExpectedVersion)
}

// Metadata written to a soft-deleted stream does not bring its events back:
// the server follows it with a copy whose $tb is the end of the stream, so
// the stream reads empty rather than not found.
func TestMetadata_SetOnSoftDeletedStreamKeepsItTruncated_LikeEventStoreDB(t *testing.T) {
	estest.Fresh(t) // fixed stream names: not yet made unique per run
	c := newClient(t)
	mustAppend(t, c, "sd-meta", esdb.NoStream{}, events(2, "e")...)
	if _, err := c.DeleteStream(testCtx(t), "sd-meta", esdb.DeleteStreamOptions{ExpectedRevision: esdb.Revision(1)}); err != nil {
		t.Fatal(err)
	}
	m := maxCount(100)
	m.AddCustomProperty("k", "v")
	if res := setMeta(t, c, "sd-meta", esdb.Revision(0), m); res.NextExpectedVersion != 1 {
		t.Fatalf("metadata write: next %d, want 1", res.NextExpectedVersion)
	}
	wantRevisions(t, c, "sd-meta", false)
	got := getMeta(t, c, "sd-meta")
	if tb := got.TruncateBefore(); tb == nil || *tb != 2 || got.CustomProperty("k") != "v" || *got.MaxCount() != 100 {
		t.Fatalf("metadata = %+v, want the written one with $tb 2", *got)
	}
}

// Setting $tb = MaxInt64 is a soft delete; the recreating append keeps the
// rest of the metadata and moves $tb to where the stream starts again. The
// value written is 2^63, what the Go client reads back for MaxInt64 (it
// decodes numbers as float64): the store takes it for MaxInt64.
func TestMetadata_TruncateBeforeMaxIsSoftDelete_LikeEventStoreDB(t *testing.T) {
	estest.Fresh(t) // fixed stream names: not yet made unique per run
	c := newClient(t)
	mustAppend(t, c, "tbmax", esdb.NoStream{}, events(2, "e")...)
	m := maxCount(100)
	m.SetTruncateBefore(1 << 63)
	m.AddCustomProperty("k", "v")
	setMeta(t, c, "tbmax", esdb.NoStream{}, m)
	_, err := readStream(t, c, "tbmax", esdb.ReadStreamOptions{}, 10)
	wantCode(t, err, esdb.ErrorCodeResourceNotFound)

	mustAppend(t, c, "tbmax", esdb.Revision(1), events(3, "e")...)
	wantRevisions(t, c, "tbmax", false, 2, 3, 4)
	m.SetTruncateBefore(2)
	if got := getMeta(t, c, "tbmax"); !reflect.DeepEqual(*got, m) {
		t.Fatalf("metadata = %+v, want %+v", *got, m)
	}
}

// A tombstone deletes the metadata stream with its stream: reads and writes
// of $$stream answer "stream deleted".
func TestMetadata_TombstoneDeletesMetadata_LikeEventStoreDB(t *testing.T) {
	estest.Fresh(t) // fixed stream names: not yet made unique per run
	c := newClient(t)
	mustAppend(t, c, "ts", esdb.NoStream{}, events(1, "e")...)
	setMeta(t, c, "ts", esdb.NoStream{}, maxCount(5))
	if _, err := c.TombstoneStream(testCtx(t), "ts", esdb.TombstoneStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := c.GetStreamMetadata(testCtx(t), "ts", esdb.ReadStreamOptions{})
	wantCode(t, err, esdb.ErrorCodeStreamDeleted)
	_, err = c.SetStreamMetadata(testCtx(t), "ts", esdb.AppendToStreamOptions{}, maxCount(1))
	wantCode(t, err, esdb.ErrorCodeStreamDeleted)
}

func TestMetadata_RefusesWhatIsNotMetadata(t *testing.T) {
	estest.Fresh(t) // fixed stream names: not yet made unique per run
	c := newClient(t)
	bad := func(eventType, data string) esdb.EventData {
		return esdb.EventData{EventType: eventType, ContentType: esdb.ContentTypeJson, Data: []byte(data)}
	}
	for name, ev := range map[string]esdb.EventData{
		"other type":       bad("e", `{}`),
		"not an object":    bad("$metadata", `[1]`),
		"not JSON":         bad("$metadata", `{`),
		"negative count":   bad("$metadata", `{"$maxCount":-1}`),
		"zero count":       bad("$metadata", `{"$maxCount":0}`),
		"fractional age":   bad("$metadata", `{"$maxAge":1.5}`),
		"string tb":        bad("$metadata", `{"$tb":"3"}`),
		"unknown acl":      bad("$metadata", `{"$acl":"$everyone"}`),
		"unknown acl role": bad("$metadata", `{"$acl":{"$x":"a"}}`),
	} {
		_, err := c.AppendToStream(testCtx(t), "$$refused", esdb.AppendToStreamOptions{}, ev)
		if err == nil {
			t.Fatalf("%s: accepted", name)
		}
		wantStatus(t, err, codes.InvalidArgument)
	}
	_, err := c.DeleteStream(testCtx(t), "$$refused", esdb.DeleteStreamOptions{})
	wantStatus(t, err, codes.InvalidArgument)
	_, err = c.GetStreamMetadata(testCtx(t), "refused", esdb.ReadStreamOptions{})
	wantCode(t, err, esdb.ErrorCodeResourceNotFound)
}

func TestMetadata_SurvivesRestart(t *testing.T) {
	estest.Fresh(t) // fixed stream names: not yet made unique per run
	dir := t.TempDir()
	c, stop := serveDir(t, dir)
	mustAppend(t, c, "kept", esdb.NoStream{}, events(4, "e")...)
	setMeta(t, c, "kept", esdb.NoStream{}, maxCount(2))
	mustAppend(t, c, "deleted", esdb.NoStream{}, events(1, "e")...)
	if _, err := c.DeleteStream(testCtx(t), "deleted", esdb.DeleteStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	stop()

	c, stop = serveDir(t, dir)
	defer stop()
	wantRevisions(t, c, "kept", false, 2, 3)
	_, err := readStream(t, c, "deleted", esdb.ReadStreamOptions{}, 10)
	wantCode(t, err, esdb.ErrorCodeResourceNotFound)
	mustAppend(t, c, "deleted", esdb.NoStream{}, events(1, "e")...)
	wantRevisions(t, c, "deleted", false, 1)
}
