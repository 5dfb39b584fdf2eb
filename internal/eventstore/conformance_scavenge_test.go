package eventstore_test

// Scavenging, driven as an operator would: EventStoreDB's Operations service
// starts and stops it (there is no official Go client for it, so the
// generated client of our proto of that protocol calls it), and the official
// client follows its progress in $scavenges-<id> and checks every read.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/orderly/orderly/gen/event_store/client/operations"
	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// scavStore is a store for scavenge tests: its server, an official client,
// an Operations client, and a clock the test can set back (see agedStore).
type scavStore struct {
	srv    *eventstore.Server
	c      *esdb.Client
	ops    operations.OperationsClient
	behind *atomic.Int64
}

func newScavStore(t *testing.T, opts ...estest.Option) *scavStore {
	t.Helper()
	srv, conn := estest.Serve(t, opts...)
	st := &scavStore{srv: srv, c: estest.Client(t, conn), ops: opsClient(t, conn), behind: &atomic.Int64{}}
	eventstore.SetClock(srv, func() time.Time { return time.Now().Add(-time.Duration(st.behind.Load())) })
	return st
}

// opsClient dials the Operations service of the store at connString.
func opsClient(t testing.TB, connString string) operations.OperationsClient {
	t.Helper()
	u, err := url.Parse(connString)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return operations.NewOperationsClient(cc)
}

func startScavenge(t testing.TB, ops operations.OperationsClient) *operations.ScavengeResp {
	t.Helper()
	res, err := ops.StartScavenge(testCtx(t), &operations.StartScavengeReq{Options: &operations.StartScavengeReq_Options{ThreadCount: 1}})
	if err != nil {
		t.Fatalf("start scavenge: %v", err)
	}
	return res
}

// scavengeResult is what $scavengeCompleted says.
type scavengeResult struct {
	Result     string `json:"result"`
	Error      string `json:"error"`
	TimeTaken  string `json:"timeTaken"`
	SpaceSaved uint64 `json:"spaceSaved"`
	Removed    uint64 `json:"eventsRemoved"`
	Bytes      int64  `json:"bytesRemoved"`
}

// awaitScavenge follows $scavenges-<id> with a subscription until the
// scavenge completes, and returns what it reported.
func awaitScavenge(t testing.TB, c *esdb.Client, id string) scavengeResult {
	t.Helper()
	sub := subscribeFromStart(t, c, "$scavenges-"+id)
	for {
		ev := sub.Recv()
		if ev.SubscriptionDropped != nil {
			t.Fatalf("follow scavenge %s: %v", id, ev.SubscriptionDropped.Error)
		}
		if ev.EventAppeared == nil || ev.EventAppeared.Event.EventType != "$scavengeCompleted" {
			continue
		}
		var res scavengeResult
		if err := json.Unmarshal(ev.EventAppeared.Event.Data, &res); err != nil {
			t.Fatal(err)
		}
		return res
	}
}

// scavenge runs one scavenge to its end and checks it succeeded.
func (st *scavStore) scavenge(t testing.TB) scavengeResult {
	t.Helper()
	res := awaitScavenge(t, st.c, startScavenge(t, st.ops).GetScavengeId())
	if res.Result != "Success" {
		t.Fatalf("scavenge = %+v, want Success", res)
	}
	return res
}

// onDisk is what $all holds of each stream: stream -> revisions, in order.
func onDisk(t testing.TB, c *esdb.Client, streams ...string) map[string][]uint64 {
	t.Helper()
	out := map[string][]uint64{}
	for _, ev := range readAll(t, c, esdb.ReadAllOptions{}, 1_000_000) {
		if s := ev.Event.StreamID; slices.Contains(streams, s) {
			out[s] = append(out[s], ev.Event.EventNumber)
		}
	}
	return out
}

func revs(lo, hi uint64) []uint64 {
	var out []uint64
	for r := lo; r <= hi; r++ {
		out = append(out, r)
	}
	return out
}

func wantOnDisk(t testing.TB, c *esdb.Client, want map[string][]uint64) {
	t.Helper()
	var names []string
	for s := range want {
		names = append(names, s)
	}
	got := onDisk(t, c, names...)
	for _, s := range names {
		if !slices.Equal(got[s], want[s]) {
			t.Errorf("$all holds %s %v, want %v", s, got[s], want[s])
		}
	}
}

func truncateBefore(n uint64) esdb.StreamMetadata {
	var m esdb.StreamMetadata
	m.SetTruncateBefore(n)
	return m
}

// retiringStreams writes streams whose metadata retires events in every way,
// and returns the revisions $all holds of each once scavenged.
func retiringStreams(t *testing.T, st *scavStore) map[string][]uint64 {
	t.Helper()
	c := st.c
	mustAppend(t, c, "counted", esdb.NoStream{}, events(10, "e")...)
	setMeta(t, c, "counted", esdb.Any{}, maxCount(3))
	mustAppend(t, c, "truncated", esdb.NoStream{}, events(10, "e")...)
	setMeta(t, c, "truncated", esdb.Any{}, truncateBefore(4))
	agedStream(t, c, st.behind, "aged", 4, 2)
	mustAppend(t, c, "hidden", esdb.NoStream{}, events(5, "e")...)
	setMeta(t, c, "hidden", esdb.Any{}, truncateBefore(100))
	mustAppend(t, c, "kept", esdb.NoStream{}, events(5, "e")...)
	// A metadata stream keeps only its latest event.
	setMeta(t, c, "kept", esdb.Any{}, esdb.StreamMetadata{})
	setMeta(t, c, "kept", esdb.Any{}, esdb.StreamMetadata{})
	return map[string][]uint64{
		"counted": revs(7, 9), "truncated": revs(4, 9), "aged": revs(4, 5),
		"hidden": {4}, // the last event of a stream stays, as in EventStoreDB
		"kept":   revs(0, 4), "$$kept": {1},
	}
}

// TestScavenge_RemovesRetiredEvents_ReadsUnchanged: a scavenge removes from
// $all what metadata retires ($maxCount, $tb, $maxAge, older metadata),
// keeping the last event of each stream; stream reads and subscriptions,
// which hid those events already, are the same before and after.
func TestScavenge_RemovesRetiredEvents_ReadsUnchanged(t *testing.T) {
	st := newScavStore(t)
	after := retiringStreams(t, st)
	names := []string{"counted", "truncated", "aged", "hidden", "kept"}
	reads := map[string][]uint64{}
	for _, s := range names {
		evs, err := readStream(t, st.c, s, esdb.ReadStreamOptions{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		reads[s] = revisions(evs)
	}
	// $all shows retired events until a scavenge, as EventStoreDB's does.
	wantOnDisk(t, st.c, map[string][]uint64{"counted": revs(0, 9), "truncated": revs(0, 9), "aged": revs(0, 5), "hidden": revs(0, 4), "kept": revs(0, 4), "$$kept": {0, 1}})

	res := st.scavenge(t)
	if res.Removed != 7+4+4+4+1 || res.Bytes <= 0 || res.TimeTaken == "" {
		t.Fatalf("scavenge reported %+v, want 20 events removed and their bytes", res)
	}
	wantOnDisk(t, st.c, after)
	for _, s := range names {
		wantRevisions(t, st.c, s, false, reads[s]...)
		slices.Reverse(reads[s])
		wantRevisions(t, st.c, s, true, reads[s]...)
	}
	sub := subscribeFromStart(t, st.c, "counted")
	for _, want := range revs(7, 9) {
		ev := sub.Recv()
		if ev.EventAppeared == nil || ev.EventAppeared.Event.EventNumber != want {
			t.Fatalf("subscription after scavenge: %+v; want revision %d", ev, want)
		}
	}
	// A second scavenge finds nothing more.
	if res := st.scavenge(t); res.Removed != 0 {
		t.Fatalf("second scavenge removed %d events", res.Removed)
	}
}

// TestScavenge_DeletedStreams: a soft-deleted stream keeps only its last
// event (and its latest metadata, the delete), a tombstoned one only its
// tombstone; both still answer as deleted, and the soft-deleted one is
// recreated at its next revision.
func TestScavenge_DeletedStreams(t *testing.T) {
	st := newScavStore(t)
	c := st.c
	mustAppend(t, c, "soft", esdb.NoStream{}, events(5, "e")...)
	if _, err := c.DeleteStream(testCtx(t), "soft", esdb.DeleteStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, c, "hard", esdb.NoStream{}, events(5, "e")...)
	setMeta(t, c, "hard", esdb.Any{}, maxCount(10))
	if _, err := c.TombstoneStream(testCtx(t), "hard", esdb.TombstoneStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	st.scavenge(t)
	wantOnDisk(t, c, map[string][]uint64{"soft": {4}, "$$soft": {0}, "hard": {1<<63 - 1}, "$$hard": nil})
	_, err := readStream(t, c, "soft", esdb.ReadStreamOptions{}, 10)
	wantCode(t, err, esdb.ErrorCodeResourceNotFound)
	_, err = readStream(t, c, "hard", esdb.ReadStreamOptions{}, 10)
	wantCode(t, err, esdb.ErrorCodeStreamDeleted)
	if res := mustAppend(t, c, "soft", esdb.Any{}, events(1, "e")...); res.NextExpectedVersion != 5 {
		t.Fatalf("recreated soft-deleted stream at %d, want 5", res.NextExpectedVersion)
	}
	wantRevisions(t, c, "soft", false, 5)
}

// TestScavenge_RelaxedMetadataRestoresOnlyUnscavenged_LikeEventStoreDB:
// EventStoreDB lets new metadata relax $maxCount or $tb; events it retired
// that no scavenge has removed yet reappear, and those removed are gone.
func TestScavenge_RelaxedMetadataRestoresOnlyUnscavenged_LikeEventStoreDB(t *testing.T) {
	st := newScavStore(t)
	c := st.c
	for _, s := range []string{"before", "after"} {
		mustAppend(t, c, s, esdb.NoStream{}, events(10, "e")...)
		setMeta(t, c, s, esdb.Any{}, maxCount(2))
		mustAppend(t, c, s+"-tb", esdb.NoStream{}, events(10, "e")...)
		setMeta(t, c, s+"-tb", esdb.Any{}, truncateBefore(8))
	}
	setMeta(t, c, "before", esdb.Any{}, esdb.StreamMetadata{})
	setMeta(t, c, "before-tb", esdb.Any{}, truncateBefore(0))
	st.scavenge(t)
	setMeta(t, c, "after", esdb.Any{}, esdb.StreamMetadata{})
	setMeta(t, c, "after-tb", esdb.Any{}, truncateBefore(0))
	wantRevisions(t, c, "before", false, revs(0, 9)...)
	wantRevisions(t, c, "before-tb", false, revs(0, 9)...)
	wantRevisions(t, c, "after", false, 8, 9)
	wantRevisions(t, c, "after-tb", false, 8, 9)
}

// TestScavenge_Operations: StartScavenge while one runs answers InProgress
// with its id; StopScavenge of another id is NOT_FOUND; $scavenges records
// each scavenge's start and end and is bounded by $maxCount.
func TestScavenge_Operations(t *testing.T) {
	st := newScavStore(t)
	mustAppend(t, st.c, "counted", esdb.NoStream{}, events(10, "e")...)
	setMeta(t, st.c, "counted", esdb.Any{}, maxCount(1))
	reached, release := make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	eventstore.SetScavengeHook(st.srv, func(context.Context) {
		if once.CompareAndSwap(false, true) {
			close(reached)
			<-release
		}
	})
	first := startScavenge(t, st.ops)
	if first.GetScavengeResult() != operations.ScavengeResp_Started || first.GetScavengeId() == "" {
		t.Fatalf("start = %v, want Started with an id", first)
	}
	<-reached
	again := startScavenge(t, st.ops)
	if again.GetScavengeResult() != operations.ScavengeResp_InProgress || again.GetScavengeId() != first.GetScavengeId() {
		t.Fatalf("start while running = %v, want InProgress %s", again, first.GetScavengeId())
	}
	_, err := st.ops.StopScavenge(testCtx(t), &operations.StopScavengeReq{Options: &operations.StopScavengeReq_Options{ScavengeId: "not-this-one"}})
	wantStatus(t, err, codes.NotFound)
	close(release)
	if res := awaitScavenge(t, st.c, first.GetScavengeId()); res.Result != "Success" || res.Removed != 9 {
		t.Fatalf("scavenge = %+v, want Success with 9 removed", res)
	}
	evs, err := readStream(t, st.c, "$scavenges", esdb.ReadStreamOptions{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Event.EventType)
	}
	if !slices.Equal(types, []string{"$scavengeStarted", "$scavengeCompleted"}) {
		t.Fatalf("$scavenges = %v", types)
	}
	if m := getMeta(t, st.c, "$scavenges"); m.MaxCount() == nil || *m.MaxCount() != 1000 {
		t.Fatalf("$scavenges $maxCount = %v, want 1000", m.MaxCount())
	}
	if got := eventstore.ScavengeRemoved(t, st.srv); got != 9 {
		t.Fatalf("scavenge_events_removed_total = %v, want 9", got)
	}
}

// manyRetiring writes n streams of 10 events with $maxCount 2.
func manyRetiring(t *testing.T, c *esdb.Client, n int) []string {
	t.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("many-%03d", i)
		mustAppend(t, c, names[i], esdb.NoStream{}, events(10, "e")...)
		setMeta(t, c, names[i], esdb.NoStream{}, maxCount(2))
	}
	return names
}

// TestScavenge_StopMidway: a stopped scavenge says so, leaves every live
// event and the rest of the retired ones in place, and the next one
// finishes the job.
func TestScavenge_StopMidway(t *testing.T) {
	st := newScavStore(t)
	names := manyRetiring(t, st.c, 20)
	var slicesSeen atomic.Int32
	stopped := make(chan struct{})
	eventstore.SetScavengeHook(st.srv, func(ctx context.Context) {
		if slicesSeen.Add(1) == 5 {
			close(stopped)
			<-ctx.Done() // until StopScavenge
		}
	})
	id := startScavenge(t, st.ops).GetScavengeId()
	<-stopped
	res, err := st.ops.StopScavenge(testCtx(t), &operations.StopScavengeReq{Options: &operations.StopScavengeReq_Options{ScavengeId: id}})
	if err != nil || res.GetScavengeResult() != operations.ScavengeResp_Stopped {
		t.Fatalf("stop = %v, %v; want Stopped", res, err)
	}
	if got := awaitScavenge(t, st.c, id); got.Result != "Stopped" || got.Removed != 4*8 {
		t.Fatalf("stopped scavenge = %+v, want Stopped with 32 removed", got)
	}
	disk := onDisk(t, st.c, names...)
	for i, s := range names {
		want := revs(8, 9)
		if i >= 4 {
			want = revs(0, 9)
		}
		if !slices.Equal(disk[s], want) {
			t.Fatalf("after a stop, $all holds %s %v, want %v", s, disk[s], want)
		}
		wantRevisions(t, st.c, s, false, 8, 9)
	}
	eventstore.SetScavengeHook(st.srv, func(context.Context) {})
	st.scavenge(t)
	for s, got := range onDisk(t, st.c, names...) {
		if !slices.Equal(got, revs(8, 9)) {
			t.Fatalf("after the second scavenge $all holds %s %v", s, got)
		}
	}
}

// TestScavenge_MetadataRelaxedMidScavengeSparesEvents: metadata relaxed
// after a scavenge picked a stream's retired events but before it deleted
// them brings them back for good: the delete is checked against the
// metadata current when it commits, never against what the scavenge read.
func TestScavenge_MetadataRelaxedMidScavengeSparesEvents(t *testing.T) {
	st := newScavStore(t)
	mustAppend(t, st.c, "relaxed", esdb.NoStream{}, events(10, "e")...)
	setMeta(t, st.c, "relaxed", esdb.Any{}, maxCount(2))
	var once atomic.Bool
	eventstore.SetScavengeHook(st.srv, func(context.Context) {
		if once.CompareAndSwap(false, true) { // the first slice: "relaxed"'s
			setMeta(t, st.c, "relaxed", esdb.Any{}, esdb.StreamMetadata{})
		}
	})
	// "$$relaxed" sorts first and had one event when the scavenge passed it.
	if res := st.scavenge(t); res.Removed != 0 {
		t.Fatalf("scavenge removed %d events, want none", res.Removed)
	}
	wantRevisions(t, st.c, "relaxed", false, revs(0, 9)...)
	wantOnDisk(t, st.c, map[string][]uint64{"relaxed": revs(0, 9)})
}
