package eventstore_test

// The conformance suite drives the embedded store with the official client
// only, over real gRPC on loopback, exactly as the services do.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// streamName is name, made unique to the test and the run when tests share a
// real server (estest.ServerEnv), where fixed names would meet other runs'.
func streamName(t testing.TB, name string) string {
	if !estest.Real() {
		return name
	}
	return name + "-" + runID + "-" + t.Name()
}

var runID = uuid.NewString()[:8]

func newClient(t testing.TB, opts ...estest.Option) *esdb.Client {
	return estest.Client(t, estest.Start(t, append(opts, estest.Shareable())...))
}

func events(n int, eventType string) []esdb.EventData {
	out := make([]esdb.EventData, n)
	for i := range out {
		out[i] = esdb.EventData{
			EventID:     uuid.New(),
			EventType:   eventType,
			ContentType: esdb.ContentTypeJson,
			Data:        fmt.Appendf(nil, `{"i":%d}`, i),
		}
	}
	return out
}

func mustAppend(t testing.TB, c *esdb.Client, stream string, exp esdb.ExpectedRevision, evs ...esdb.EventData) *esdb.WriteResult {
	t.Helper()
	res, err := c.AppendToStream(testCtx(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, evs...)
	if err != nil {
		t.Fatalf("append to %s: %v", stream, err)
	}
	return res
}

// drainRead collects a read until EOF; err is the first other error.
func drainRead(t testing.TB, rs *esdb.ReadStream, err error) ([]*esdb.ResolvedEvent, error) {
	t.Helper()
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []*esdb.ResolvedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

func readStream(t testing.TB, c *esdb.Client, stream string, opts esdb.ReadStreamOptions, count uint64) ([]*esdb.ResolvedEvent, error) {
	t.Helper()
	rs, err := c.ReadStream(testCtx(t), stream, opts, count)
	return drainRead(t, rs, err)
}

func readAll(t testing.TB, c *esdb.Client, opts esdb.ReadAllOptions, count uint64) []*esdb.ResolvedEvent {
	t.Helper()
	rs, err := c.ReadAll(testCtx(t), opts, count)
	evs, err := drainRead(t, rs, err)
	if err != nil {
		t.Fatalf("read $all: %v", err)
	}
	return evs
}

func errorCode(err error) (esdb.ErrorCode, bool) {
	var e *esdb.Error
	if errors.As(err, &e) {
		return e.Code(), true
	}
	return 0, false
}

func wantCode(t testing.TB, err error, want esdb.ErrorCode) {
	t.Helper()
	if code, ok := errorCode(err); !ok || code != want {
		t.Fatalf("error = %v (code %d), want code %d", err, code, want)
	}
}

// wantStatus checks the gRPC status the client got underneath its error.
func wantStatus(t testing.TB, err error, want codes.Code) {
	t.Helper()
	var e *esdb.Error
	inner := err
	if errors.As(err, &e) && e.Err() != nil {
		inner = e.Err()
	}
	if got := status.Code(inner); got != want {
		t.Fatalf("error = %v, want gRPC status %v", err, want)
	}
}

func revisions(evs []*esdb.ResolvedEvent) []uint64 {
	out := make([]uint64, len(evs))
	for i, ev := range evs {
		out[i] = ev.OriginalEvent().EventNumber
	}
	return out
}

func TestEventMetadataRoundTrip(t *testing.T) {
	stream := streamName(t, "order-1")
	c := newClient(t)
	before := time.Now()
	ev := esdb.EventData{
		EventID: uuid.New(), EventType: "orderly.OrderPlaced", ContentType: esdb.ContentTypeJson,
		Data: []byte(`{"order":"o-1"}`), Metadata: []byte(`{"schema":2,"correlation":"c-1"}`),
	}
	res := mustAppend(t, c, stream, esdb.NoStream{}, ev,
		esdb.EventData{EventType: "orderly.Raw", ContentType: esdb.ContentTypeBinary, Data: []byte{0, 1, 2}})
	if res.NextExpectedVersion != 1 || res.CommitPosition == 0 || res.PreparePosition == 0 {
		t.Fatalf("write result = %+v, want next 1 and positions > 0", res)
	}
	evs, err := readStream(t, c, stream, esdb.ReadStreamOptions{}, 10)
	if err != nil || len(evs) != 2 {
		t.Fatalf("read = %d events, %v", len(evs), err)
	}
	got := evs[0].Event
	if got.EventID != ev.EventID || got.EventType != ev.EventType || got.ContentType != "application/json" ||
		string(got.Data) != string(ev.Data) || string(got.UserMetadata) != string(ev.Metadata) || got.StreamID != stream {
		t.Fatalf("event = %+v, want %+v", got, ev)
	}
	if got.CreatedDate.Before(before.Add(-time.Second)) || got.CreatedDate.After(time.Now().Add(time.Second)) {
		t.Fatalf("created = %v, want about %v", got.CreatedDate, before)
	}
	if evs[1].Event.ContentType != "application/octet-stream" || evs[1].Event.Position.Commit != res.CommitPosition {
		t.Fatalf("second event = %+v, want binary at the append's position %d", evs[1].Event, res.CommitPosition)
	}
	if evs[1].Event.Position.Commit <= got.Position.Commit {
		t.Fatalf("positions not increasing: %v then %v", got.Position, evs[1].Event.Position)
	}
}

func TestExpectedRevisionMatrix(t *testing.T) {
	c := newClient(t)
	// "existing" has revisions 0 and 1; "missing" was never written.
	cases := []struct {
		name    string
		exp     esdb.ExpectedRevision
		exists  bool
		wantErr string // substring of the wrong-expected-version message; "" = success
	}{
		{"any/missing", esdb.Any{}, false, ""},
		{"any/existing", esdb.Any{}, true, ""},
		{"nostream/missing", esdb.NoStream{}, false, ""},
		{"nostream/existing", esdb.NoStream{}, true, "expecting 'no_stream' but got '1'"},
		{"exists/missing", esdb.StreamExists{}, false, "expecting 'stream_exists' but got 'no_stream'"},
		{"exists/existing", esdb.StreamExists{}, true, ""},
		{"exact-current/existing", esdb.Revision(1), true, ""},
		{"exact-old/existing", esdb.Revision(0), true, "expecting '0' but got '1'"},
		{"exact-future/existing", esdb.Revision(5), true, "expecting '5' but got '1'"},
		{"exact/missing", esdb.Revision(0), false, "expecting '0' but got 'no_stream'"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stream := streamName(t, fmt.Sprintf("matrix-%d", i))
			if tc.exists {
				mustAppend(t, c, stream, esdb.NoStream{}, events(2, "seed")...)
			}
			res, err := c.AppendToStream(testCtx(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: tc.exp}, events(1, "next")...)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("append: %v", err)
				}
				want := uint64(0)
				if tc.exists {
					want = 2
				}
				if res.NextExpectedVersion != want {
					t.Fatalf("next expected version = %d, want %d", res.NextExpectedVersion, want)
				}
				return
			}
			wantCode(t, err, esdb.ErrorCodeWrongExpectedVersion)
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tc.wantErr)
			}
			evs, _ := readStream(t, c, stream, esdb.ReadStreamOptions{}, 10)
			if tc.exists && len(evs) != 2 {
				t.Fatalf("a rejected append changed the stream: %d events", len(evs))
			}
		})
	}
}

func TestIdempotentAppend(t *testing.T) {
	stream := streamName(t, "idem")
	c := newClient(t)
	first := events(3, "e")
	res1 := mustAppend(t, c, stream, esdb.NoStream{}, first...)
	// Same IDs, same expected revision: answered again, not written again.
	res2 := mustAppend(t, c, stream, esdb.NoStream{}, first...)
	if res2.NextExpectedVersion != 2 || res2.CommitPosition != res1.CommitPosition {
		t.Fatalf("retry result = %+v, want %+v", res2, res1)
	}
	second := events(2, "e")
	mustAppend(t, c, stream, esdb.Revision(2), second...)
	res4 := mustAppend(t, c, stream, esdb.Revision(2), second...)
	if res4.NextExpectedVersion != 4 {
		t.Fatalf("retry at revision 2: next = %d, want 4", res4.NextExpectedVersion)
	}
	// Any: a retry of the latest append is recognised too.
	mustAppend(t, c, stream, esdb.Any{}, second...)

	// Only some IDs committed: a conflict, not a partial write.
	partial := append(first[:2:2], events(1, "e")...)
	_, err := c.AppendToStream(testCtx(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, partial...)
	wantCode(t, err, esdb.ErrorCodeWrongExpectedVersion)
	// Right IDs, wrong order: a conflict.
	_, err = c.AppendToStream(testCtx(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Revision(2)}, second[1], second[0])
	wantCode(t, err, esdb.ErrorCodeWrongExpectedVersion)

	evs, err := readStream(t, c, stream, esdb.ReadStreamOptions{}, 100)
	if err != nil || len(evs) != 5 {
		t.Fatalf("stream has %d events (%v), want 5", len(evs), err)
	}
	for i, want := range append(first, second...) {
		if evs[i].Event.EventID != want.EventID {
			t.Fatalf("event %d id = %v, want %v", i, evs[i].Event.EventID, want.EventID)
		}
	}
}

func TestConcurrentAppendsGetIncreasingPositions(t *testing.T) {
	estest.Fresh(t)
	c := newClient(t)
	const writers, each = 8, 20
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			stream := fmt.Sprintf("conc-%d", w)
			var exp esdb.ExpectedRevision = esdb.NoStream{}
			for range each {
				res, err := c.AppendToStream(testCtx(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, events(2, "e")...)
				if err != nil {
					errs <- err
					return
				}
				exp = esdb.Revision(res.NextExpectedVersion)
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	all := readAll(t, c, esdb.ReadAllOptions{}, 1<<20)
	if len(all) != writers*each*2 {
		t.Fatalf("$all has %d events, want %d", len(all), writers*each*2)
	}
	perStream := map[string]uint64{}
	for i, ev := range all {
		if i > 0 && ev.Event.Position.Commit <= all[i-1].Event.Position.Commit {
			t.Fatalf("$all positions not strictly increasing at %d: %v after %v", i, ev.Event.Position, all[i-1].Event.Position)
		}
		if ev.Event.EventNumber != perStream[ev.Event.StreamID] {
			t.Fatalf("stream %s: revision %d, want %d", ev.Event.StreamID, ev.Event.EventNumber, perStream[ev.Event.StreamID])
		}
		perStream[ev.Event.StreamID]++
	}
}

// TestManyStoresUnderContention runs several stores in one process, each with
// writers racing optimistic appends on a few hot streams: every acknowledged
// append must be read back, and each stream must end with exactly the events
// acknowledged. (Recycling committed Pebble batches once lost writes and
// crashed here.)
func TestManyStoresUnderContention(t *testing.T) {
	const stores, writers, appends, streams = 4, 12, 8, 3
	for k := range stores {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			t.Parallel()
			var opts []estest.Option
			if k%2 == 1 {
				opts = append(opts, estest.OnDisk())
			}
			c := newClient(t, opts...)
			ctx := testCtx(t)
			var wg sync.WaitGroup
			for g := range writers {
				wg.Go(func() {
					stream := streamName(t, fmt.Sprintf("hot-%d", g%streams))
					for done := 0; done < appends; {
						evs, err := readStream(t, c, stream, esdb.ReadStreamOptions{}, ^uint64(0))
						var exp esdb.ExpectedRevision = esdb.NoStream{}
						if err == nil {
							exp = esdb.Revision(uint64(len(evs) - 1))
						}
						_, err = c.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, events(1, "x")...)
						if code, ok := errorCode(err); ok && code == esdb.ErrorCodeWrongExpectedVersion {
							continue
						}
						if err != nil {
							t.Error(err)
							return
						}
						done++
						after, err := readStream(t, c, stream, esdb.ReadStreamOptions{}, ^uint64(0))
						if err != nil || len(after) < len(evs)+1 {
							t.Errorf("%s: acknowledged revision %d, read back %d events (%v)", stream, len(evs), len(after), err)
							return
						}
					}
				})
			}
			wg.Wait()
			for s := range streams {
				evs, err := readStream(t, c, streamName(t, fmt.Sprintf("hot-%d", s)), esdb.ReadStreamOptions{}, ^uint64(0))
				if want := writers / streams * appends; err != nil || len(evs) != want {
					t.Errorf("hot-%d has %d events (%v), want %d", s, len(evs), err, want)
				}
			}
		})
	}
}
