package eventstore_test

import (
	"fmt"
	"math"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"google.golang.org/grpc/codes"
)

// received is what a subscriber saw, in order.
type received struct {
	events          []*esdb.RecordedEvent
	checkpoints     []esdb.Position
	checkpointAfter []int // how many events came before each checkpoint
	caughtUpAt      int   // number of events before caught-up; -1 if never
	dropped         error
}

// collect reads sub until it has n events, or it is dropped, or timeout
// passes without a message: a bound on silence, not on the whole read, so a
// long read on a loaded machine is not mistaken for a stall.
func collect(t testing.TB, sub *esdb.Subscription, n int, timeout time.Duration) received {
	t.Helper()
	return collectUntil(t, sub, timeout, func(r received) bool { return len(r.events) >= n })
}

// collectUntil is collect, reading until done holds of what it has.
func collectUntil(t testing.TB, sub *esdb.Subscription, timeout time.Duration, done func(received) bool) received {
	t.Helper()
	r := received{caughtUpAt: -1}
	timer := time.AfterFunc(timeout, func() { _ = sub.Close() })
	defer timer.Stop()
	for !done(r) {
		ev := sub.Recv()
		timer.Reset(timeout)
		switch {
		case ev.EventAppeared != nil:
			r.events = append(r.events, ev.EventAppeared.Event)
		case ev.CheckPointReached != nil:
			r.checkpoints = append(r.checkpoints, *ev.CheckPointReached)
			r.checkpointAfter = append(r.checkpointAfter, len(r.events))
		case ev.CaughtUp != nil:
			if r.caughtUpAt >= 0 {
				t.Errorf("caught up twice")
			}
			r.caughtUpAt = len(r.events)
		case ev.SubscriptionDropped != nil:
			r.dropped = ev.SubscriptionDropped.Error
			return r
		}
	}
	return r
}

// readToLast reads sub while writers append, then appends a last event of
// type typ to stream and returns what sub received up to it; a drop fails t.
func readToLast(t *testing.T, c *esdb.Client, sub *esdb.Subscription, writers *sync.WaitGroup, stream, typ string) received {
	t.Helper()
	last := uuid.New()
	got := make(chan received, 1)
	go func() {
		got <- collectUntil(t, sub, 30*time.Second, func(r received) bool {
			return len(r.events) > 0 && r.events[len(r.events)-1].EventID == last
		})
	}()
	writers.Wait()
	mustAppend(t, c, stream, esdb.Any{}, esdb.EventData{EventID: last, EventType: typ, ContentType: esdb.ContentTypeJson, Data: []byte(`{}`)})
	r := <-got
	if r.dropped != nil {
		t.Fatalf("dropped after %d events: %v", len(r.events), r.dropped)
	}
	return r
}

// waitCaughtUp reads sub until caught-up, failing on anything else.
func waitCaughtUp(t testing.TB, sub *esdb.Subscription) {
	t.Helper()
	for {
		ev := sub.Recv()
		switch {
		case ev.CaughtUp != nil:
			return
		case ev.CheckPointReached != nil:
		default:
			t.Fatalf("before caught-up: %+v", ev)
		}
	}
}

func TestSubscribeStreamCatchUpThenLive(t *testing.T) {
	live := streamName(t, "live")
	other := streamName(t, "other")
	c := newClient(t)
	mustAppend(t, c, live, esdb.NoStream{}, events(50, "e")...)
	mustAppend(t, c, other, esdb.NoStream{}, events(5, "e")...)
	sub, err := c.SubscribeToStream(testCtx(t), live, esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// Append while the subscriber catches up, so the switch to live happens under load.
	done := make(chan error, 1)
	go func() {
		exp := esdb.ExpectedRevision(esdb.Revision(49))
		for range 25 {
			res, err := c.AppendToStream(testCtx(t), live, esdb.AppendToStreamOptions{ExpectedRevision: exp}, events(2, "e")...)
			if err != nil {
				done <- err
				return
			}
			exp = esdb.Revision(res.NextExpectedVersion)
			_, _ = c.AppendToStream(testCtx(t), other, esdb.AppendToStreamOptions{}, events(1, "e")...)
		}
		done <- nil
	}()
	r := collect(t, sub, 100, 20*time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r.dropped != nil || len(r.events) != 100 {
		t.Fatalf("got %d events, dropped %v", len(r.events), r.dropped)
	}
	for i, ev := range r.events {
		if ev.EventNumber != uint64(i) || ev.StreamID != live {
			t.Fatalf("event %d is %s@%d: gap, duplicate or foreign event", i, ev.StreamID, ev.EventNumber)
		}
	}
	if r.caughtUpAt < 50 {
		t.Fatalf("caught up after %d events, want at least the 50 stored ones", r.caughtUpAt)
	}
}

func TestSubscribeAllCatchUpThenLive(t *testing.T) {
	estest.Fresh(t)
	c := newClient(t)
	for i := range 10 {
		mustAppend(t, c, fmt.Sprintf("a-%d", i), esdb.NoStream{}, events(10, "e")...)
	}
	sub, err := c.SubscribeToAll(testCtx(t), esdb.SubscribeToAllOptions{From: esdb.Start{}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	go func() {
		for i := range 10 {
			_, _ = c.AppendToStream(testCtx(t), fmt.Sprintf("b-%d", i), esdb.AppendToStreamOptions{}, events(10, "e")...)
		}
	}()
	r := collect(t, sub, 200, 20*time.Second)
	if len(r.events) != 200 {
		t.Fatalf("got %d events, dropped %v", len(r.events), r.dropped)
	}
	want := readAll(t, c, esdb.ReadAllOptions{}, 1000)
	for i, ev := range r.events {
		if ev.EventID != want[i].Event.EventID {
			t.Fatalf("event %d = %s@%d, want %s@%d", i, ev.StreamID, ev.EventNumber, want[i].Event.StreamID, want[i].Event.EventNumber)
		}
	}
	if r.caughtUpAt < 100 {
		t.Fatalf("caught up after %d events, want at least the 100 stored ones", r.caughtUpAt)
	}
}

func TestSubscribeStartingPointsAreExclusive(t *testing.T) {
	estest.Fresh(t)
	c := newClient(t)
	mustAppend(t, c, "s", esdb.NoStream{}, events(10, "e")...)
	all := readAll(t, c, esdb.ReadAllOptions{}, 100)

	sub, err := c.SubscribeToStream(testCtx(t), "s", esdb.SubscribeToStreamOptions{From: esdb.Revision(4)})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if r := collect(t, sub, 5, 10*time.Second); len(r.events) != 5 || r.events[0].EventNumber != 5 {
		t.Fatalf("from revision 4: %d events starting at %v", len(r.events), revisionsOf(r.events))
	}

	asub, err := c.SubscribeToAll(testCtx(t), esdb.SubscribeToAllOptions{From: all[6].Event.Position})
	if err != nil {
		t.Fatal(err)
	}
	defer asub.Close()
	if r := collect(t, asub, 3, 10*time.Second); len(r.events) != 3 || r.events[0].EventID != all[7].Event.EventID {
		t.Fatalf("from position of event 6: got %v", revisionsOf(r.events))
	}

	// From the end: only what is appended afterwards.
	for _, from := range []struct {
		name string
		sub  func() (*esdb.Subscription, error)
	}{
		{"stream", func() (*esdb.Subscription, error) {
			return c.SubscribeToStream(testCtx(t), "s", esdb.SubscribeToStreamOptions{From: esdb.End{}})
		}},
		{"all", func() (*esdb.Subscription, error) {
			return c.SubscribeToAll(testCtx(t), esdb.SubscribeToAllOptions{From: esdb.End{}})
		}},
	} {
		t.Run("end/"+from.name, func(t *testing.T) {
			sub, err := from.sub()
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			waitCaughtUp(t, sub)
			res := mustAppend(t, c, "s", esdb.Any{}, events(1, "e")...)
			r := collect(t, sub, 1, 10*time.Second)
			if len(r.events) != 1 || r.events[0].Position.Commit != res.CommitPosition {
				t.Fatalf("from end: got %v, want the new event at %d", revisionsOf(r.events), res.CommitPosition)
			}
		})
	}
}

func revisionsOf(evs []*esdb.RecordedEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = fmt.Sprintf("%s@%d/%d", ev.StreamID, ev.EventNumber, ev.Position.Commit)
	}
	return out
}

func TestSubscribeAllFilters(t *testing.T) {
	estest.Fresh(t)
	c := newClient(t)
	mustAppend(t, c, "order-1", esdb.NoStream{}, events(3, "orderly.OrderPlaced")...)
	mustAppend(t, c, "customer-1", esdb.NoStream{}, events(3, "orderly.CustomerRegistered")...)
	mustAppend(t, c, "noise-1", esdb.NoStream{}, events(3, "other.Thing")...)
	cases := []struct {
		name   string
		filter esdb.SubscriptionFilter
		want   int
	}{
		{"event type prefix", esdb.SubscriptionFilter{Type: esdb.EventFilterType, Prefixes: []string{"orderly."}}, 6},
		{"event type prefixes", esdb.SubscriptionFilter{Type: esdb.EventFilterType, Prefixes: []string{"orderly.Order", "other."}}, 6},
		{"event type regex", esdb.SubscriptionFilter{Type: esdb.EventFilterType, Regex: "^orderly\\.Customer"}, 3},
		{"stream prefix", esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{"order-"}}, 3},
		{"stream regex", esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Regex: "^(order|noise)-"}, 6},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			filter := tc.filter
			sub, err := c.SubscribeToAll(testCtx(t), esdb.SubscribeToAllOptions{From: esdb.Start{}, Filter: &filter})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			r := collect(t, sub, tc.want, 10*time.Second)
			if len(r.events) != tc.want {
				t.Fatalf("got %d events, want %d", len(r.events), tc.want)
			}
			for _, ev := range r.events {
				if !matches(filter, ev) {
					t.Fatalf("event %s/%s does not match the filter", ev.StreamID, ev.EventType)
				}
			}
			// Live events are filtered the same way.
			mustAppend(t, c, "noise-live", esdb.Any{}, events(1, "other.Live")...)
			mustAppend(t, c, "order-live", esdb.Any{}, events(1, "orderly.OrderPlaced")...)
			mustAppend(t, c, "customer-live", esdb.Any{}, events(1, "orderly.CustomerRegistered")...)
			more := collect(t, sub, 1, 10*time.Second)
			if len(more.events) != 1 || !matches(filter, more.events[0]) {
				t.Fatalf("live: got %v", revisionsOf(more.events))
			}
		})
	}
}

func matches(f esdb.SubscriptionFilter, ev *esdb.RecordedEvent) bool {
	subject := ev.StreamID
	if f.Type == esdb.EventFilterType {
		subject = ev.EventType
	}
	switch {
	case len(f.Prefixes) > 0:
		for _, p := range f.Prefixes {
			if len(subject) >= len(p) && subject[:len(p)] == p {
				return true
			}
		}
		return false
	default:
		return regexp.MustCompile(f.Regex).MatchString(subject)
	}
}

func TestFilteredSubscriptionCheckpointsAndResume(t *testing.T) {
	estest.Fresh(t)
	c := newClient(t)
	mustAppend(t, c, "noise", esdb.NoStream{}, events(20, "noise")...)
	mustAppend(t, c, "wanted", esdb.NoStream{}, events(1, "wanted")...)
	filter := &esdb.SubscriptionFilter{Type: esdb.EventFilterType, Prefixes: []string{"wanted"}}
	sub, err := c.SubscribeToAll(testCtx(t), esdb.SubscribeToAllOptions{From: esdb.Start{}, Filter: filter, MaxSearchWindow: 4, CheckpointInterval: 2})
	if err != nil {
		t.Fatal(err)
	}
	r := collect(t, sub, 1, 10*time.Second)
	if len(r.events) != 1 {
		t.Fatalf("got %d events", len(r.events))
	}
	// 20 scanned noise events at one checkpoint per 8 scanned: two before the match.
	cps := r.checkpoints
	if len(cps) != 2 || cps[1].Commit <= cps[0].Commit || r.events[0].Position.Commit <= cps[1].Commit {
		t.Fatalf("checkpoints = %v before the match at %v, want two, increasing", cps, r.events[0].Position)
	}
	// Live noise also produces checkpoints: a quiet filter still advances.
	waitCaughtUp(t, sub)
	mustAppend(t, c, "noise", esdb.Any{}, events(16, "noise")...)
	var live []esdb.Position
	for len(live) < 2 {
		ev := sub.Recv()
		if ev.CheckPointReached == nil {
			t.Fatalf("want checkpoints from live noise, got %+v", ev)
		}
		live = append(live, *ev.CheckPointReached)
	}
	_ = sub.Close()

	// Resuming from a checkpoint delivers exactly what came after it.
	mustAppend(t, c, "wanted", esdb.Any{}, events(2, "wanted")...)
	resumed, err := c.SubscribeToAll(testCtx(t), esdb.SubscribeToAllOptions{From: live[1], Filter: filter})
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Close()
	rr := collect(t, resumed, 2, 10*time.Second)
	if len(rr.events) != 2 || rr.events[0].EventNumber != 1 || rr.events[1].EventNumber != 2 {
		t.Fatalf("resumed: %v", revisionsOf(rr.events))
	}
}

func TestManySubscribers(t *testing.T) {
	estest.Fresh(t)
	c := newClient(t)
	const subscribers, appends = 25, 40
	subs := make([]*esdb.Subscription, subscribers)
	for i := range subs {
		var err error
		subs[i], err = c.SubscribeToAll(testCtx(t), esdb.SubscribeToAllOptions{From: esdb.Start{}})
		if err != nil {
			t.Fatal(err)
		}
		defer subs[i].Close()
	}
	go func() {
		for i := range appends {
			_, _ = c.AppendToStream(testCtx(t), fmt.Sprintf("many-%d", i%5), esdb.AppendToStreamOptions{}, events(5, "e")...)
		}
	}()
	var wg sync.WaitGroup
	results := make([]received, subscribers)
	for i, sub := range subs {
		wg.Go(func() { results[i] = collect(t, sub, appends*5, 20*time.Second) })
	}
	wg.Wait()
	want := readAll(t, c, esdb.ReadAllOptions{}, 1000)
	for i, r := range results {
		if len(r.events) != appends*5 {
			t.Fatalf("subscriber %d got %d events, dropped %v", i, len(r.events), r.dropped)
		}
		for j, ev := range r.events {
			if ev.EventID != want[j].Event.EventID {
				t.Fatalf("subscriber %d event %d out of order", i, j)
			}
		}
	}
}

func TestSlowSubscriberIsDroppedWithoutStallingOthers(t *testing.T) {
	c := newClient(t, estest.WithConfig(func(cfg *eventstore.Config) { cfg.SubscriberBufferBytes = 1 << 20 }))
	// The subscriptions live as long as the test, however slow the machine:
	// what fails the test is a stall, not a slow run.
	slow, err := c.SubscribeToAll(t.Context(), esdb.SubscribeToAllOptions{From: esdb.End{}})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	waitCaughtUp(t, slow)
	fast, err := c.SubscribeToAll(t.Context(), esdb.SubscribeToAllOptions{From: esdb.End{}})
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	waitCaughtUp(t, fast)

	// The slow subscriber reads nothing while far more than gRPC's flow-control
	// windows can hold is appended. Appends must not wait for it, and the fast
	// subscriber must keep receiving: each append waits until the fast one has
	// seen it, so a stall anywhere fails the test. A stall is an append the
	// fast subscriber does not see within stallAfter, far longer than one
	// append takes even on a loaded machine; the whole run may take longer.
	const batches, perBatch, size = 100, 50, 8 << 10
	total := batches * perBatch
	var fastGot atomic.Int64
	fastDone := make(chan received, 1)
	go func() {
		r := received{}
		for len(r.events) < total {
			ev := fast.Recv()
			if ev.SubscriptionDropped != nil {
				r.dropped = ev.SubscriptionDropped.Error
				break
			}
			if ev.EventAppeared != nil {
				r.events = append(r.events, ev.EventAppeared.Event)
				fastGot.Add(1)
			}
		}
		fastDone <- r
	}()
	payload := make([]byte, size)
	const stallAfter = 30 * time.Second
	for i := range batches {
		evs := events(perBatch, "big")
		for j := range evs {
			evs[j].Data, evs[j].ContentType = payload, esdb.ContentTypeBinary
		}
		mustAppend(t, c, "firehose", esdb.Any{}, evs...)
		deadline := time.Now().Add(stallAfter)
		for fastGot.Load() < int64((i+1)*perBatch) {
			if time.Now().After(deadline) {
				t.Fatalf("fast subscriber stalled at %d events after %d appends", fastGot.Load(), i+1)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if r := <-fastDone; len(r.events) != total {
		t.Fatalf("fast subscriber got %d of %d events (dropped: %v)", len(r.events), total, r.dropped)
	}

	r := collect(t, slow, total, 30*time.Second)
	if r.dropped == nil {
		t.Fatalf("slow subscriber got %d events and was never dropped", len(r.events))
	}
	wantStatus(t, r.dropped, codes.ResourceExhausted)

	// It resumes from the last event it did get, as a client would.
	last := r.events[len(r.events)-1].Position
	again, err := c.SubscribeToAll(t.Context(), esdb.SubscribeToAllOptions{From: last})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	rest := collect(t, again, total-len(r.events), 30*time.Second)
	if len(rest.events) != total-len(r.events) || rest.events[0].Position.Commit <= last.Commit {
		t.Fatalf("resubscribed: got %d events, want %d after %v", len(rest.events), total-len(r.events), last)
	}
}

// A start past the end is still exclusive: the subscriber gets only what is
// appended after it, never the events between the end and its start.
func TestSubscribeStartingPastTheEnd(t *testing.T) {
	c := newClient(t)
	mustAppend(t, c, "short", esdb.NoStream{}, events(4, "e")...) // revisions 0..3

	t.Run("stream revision beyond the last", func(t *testing.T) {
		sub, err := c.SubscribeToStream(testCtx(t), "short", esdb.SubscribeToStreamOptions{From: esdb.Revision(10)})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		waitCaughtUp(t, sub)
		mustAppend(t, c, "short", esdb.Revision(3), events(11, "e")...) // revisions 4..14
		r := collect(t, sub, 4, 10*time.Second)
		if got := revisionsOf(r.events); len(r.events) != 4 || r.events[0].EventNumber != 11 || r.events[3].EventNumber != 14 {
			t.Fatalf("from revision 10: got %v, want revisions 11..14", got)
		}
	})

	t.Run("stream at the maximum revision", func(t *testing.T) {
		sub, err := c.SubscribeToStream(testCtx(t), "short", esdb.SubscribeToStreamOptions{From: esdb.Revision(math.MaxUint64)})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		waitCaughtUp(t, sub) // fails on any replayed event
	})

	t.Run("$all position beyond the head", func(t *testing.T) {
		last := readAll(t, c, esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)[0].Event.Position
		from := esdb.Position{Commit: last.Commit + 5, Prepare: last.Prepare + 5}
		sub, err := c.SubscribeToAll(testCtx(t), esdb.SubscribeToAllOptions{From: from})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		waitCaughtUp(t, sub)
		var want []uint64
		for range 10 {
			if res := mustAppend(t, c, "other", esdb.Any{}, events(1, "e")...); res.CommitPosition > from.Commit {
				want = append(want, res.CommitPosition)
			}
		}
		r := collect(t, sub, len(want), 10*time.Second)
		if len(r.events) != len(want) || len(want) == 0 || r.events[0].Position.Commit != want[0] {
			t.Fatalf("from %v: got %v, want positions %v", from, revisionsOf(r.events), want)
		}
	})
}
