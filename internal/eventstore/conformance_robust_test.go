package eventstore_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/serverfeatures"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func TestHandlerPanicFailsOnlyThatCall(t *testing.T) {
	srv, addr := estest.Serve(t)
	c := estest.Client(t, addr)
	const appendMethod = "/event_store.client.streams.Streams/Append"
	const featuresMethod = "/event_store.client.server_features.ServerFeatures/GetSupportedMethods"
	var mu sync.Mutex
	panicOn := map[string]bool{}
	eventstore.SetHandlerHook(srv, func(method string) {
		mu.Lock()
		defer mu.Unlock()
		if panicOn[method] {
			delete(panicOn, method)
			panic("test: handler made to panic")
		}
	})
	mustAppend(t, c, "p", esdb.NoStream{}, events(1, "e")...)

	// A streaming call (Append) that panics fails with INTERNAL.
	mu.Lock()
	panicOn[appendMethod] = true
	mu.Unlock()
	_, err := c.AppendToStream(testCtx(t), "p", esdb.AppendToStreamOptions{ExpectedRevision: esdb.Revision(0)}, events(1, "e")...)
	if err == nil {
		t.Fatal("append whose handler panicked succeeded")
	}
	wantStatus(t, err, codes.Internal)

	// A unary call too (the client only calls one at connect, so call it directly).
	conn, err := grpc.NewClient(strings.TrimSuffix(strings.TrimPrefix(addr, "esdb://"), "?tls=false"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mu.Lock()
	panicOn[featuresMethod] = true
	mu.Unlock()
	_, err = serverfeatures.NewServerFeaturesClient(conn).GetSupportedMethods(testCtx(t), &shared.Empty{})
	if status.Code(err) != codes.Internal {
		t.Fatalf("unary call whose handler panicked: %v, want INTERNAL", err)
	}

	// The store keeps serving, and the failed append wrote nothing.
	mustAppend(t, c, "p", esdb.Revision(0), events(1, "e")...)
	evs, err := readStream(t, c, "p", esdb.ReadStreamOptions{}, 10)
	if err != nil || len(evs) != 2 {
		t.Fatalf("after the panics: %d events, err %v; want 2", len(evs), err)
	}
	if got := eventstore.Panics(t, srv); got != 2 {
		t.Fatalf("panics counted: %v, want 2", got)
	}
}

// The subscriber limit is in bytes, and a subscriber with nothing waiting
// takes any group commit whole: so one legal append, however many events it
// holds (70,000 small ones fit the default limits; under a per-event cap of
// 64Ki they dropped every subscriber), never drops a subscriber that keeps
// reading. Shown with a buffer far smaller than one append, which the old
// rule would also have failed, and hugeAppendEvents events: 70,000, or
// fewer under the race detector, which cannot deliver that many within the
// client's deadlines.
func TestHugeAppendDoesNotDropLiveSubscribers(t *testing.T) {
	srv, addr := estest.Serve(t, estest.WithConfig(func(c *eventstore.Config) { c.SubscriberBufferBytes = 1 << 10 }))
	c := estest.Client(t, addr)
	const n = hugeAppendEvents
	subAll, err := c.SubscribeToAll(testCtx(t), esdb.SubscribeToAllOptions{From: esdb.End{}})
	if err != nil {
		t.Fatal(err)
	}
	defer subAll.Close()
	waitCaughtUp(t, subAll)
	subStream, err := c.SubscribeToStream(testCtx(t), "huge", esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	if err != nil {
		t.Fatal(err)
	}
	defer subStream.Close()
	waitCaughtUp(t, subStream)

	evs := events(n, "e")
	for i := range evs {
		evs[i].Data = nil
	}
	mustAppend(t, c, "huge", esdb.NoStream{}, evs...)
	for name, sub := range map[string]*esdb.Subscription{"$all": subAll, "stream": subStream} {
		r := collect(t, sub, n, 30*time.Second)
		if r.dropped != nil || len(r.events) != n {
			t.Fatalf("%s subscriber got %d of %d events, dropped: %v", name, len(r.events), n, r.dropped)
		}
	}
	if got := eventstore.SlowDrops(t, srv); got != 0 {
		t.Fatalf("drops counted: %v, want 0", got)
	}
}

// Concurrent appends are bounded in the bytes they hold: with a budget of
// one maximal append, appends that together need more either succeed or
// are refused with RESOURCE_EXHAUSTED and a reason, none is lost or hangs,
// refusals are counted, and the bytes come back: an append alone afterwards
// succeeds. (How many of the burst succeed depends on scheduling: if all
// sixteen take their first event at once, the budget is spent and all are
// refused, which the design allows.)
func TestAdmissionIsBoundedInBytes(t *testing.T) {
	const eventSize, perAppend, appends = 8 << 10, 8, 16
	srv, addr := estest.Serve(t, estest.WithConfig(func(c *eventstore.Config) {
		c.MaxEventSize = 16 << 10
		c.MaxAppendSize = 2 * perAppend * eventSize
		c.MaxPendingAppendBytes = 2 * perAppend * eventSize
	}))
	c := estest.Client(t, addr)
	var wg sync.WaitGroup
	errs := make(chan error, appends)
	for i := range appends {
		wg.Go(func() {
			evs := events(perAppend, "e")
			for j := range evs {
				evs[j].Data, evs[j].ContentType = make([]byte, eventSize), esdb.ContentTypeBinary
			}
			_, err := c.AppendToStream(testCtx(t), fmt.Sprintf("adm-%d", i), esdb.AppendToStreamOptions{}, evs...)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	var refused, ok int
	for err := range errs {
		if err == nil {
			ok++
			continue
		}
		wantStatus(t, err, codes.ResourceExhausted)
		if !strings.Contains(err.Error(), "MaxPendingAppendBytes") {
			t.Fatalf("refusal without its reason: %v", err)
		}
		refused++
	}
	written := len(readAll(t, c, esdb.ReadAllOptions{}, appends*perAppend+1))
	if written != ok*perAppend {
		t.Fatalf("%d appends succeeded, %d refused, %d events written", ok, refused, written)
	}
	if got := eventstore.Refused(t, srv); got != float64(refused) {
		t.Fatalf("refusals counted: %v, want %d", got, refused)
	}
	evs := events(2*perAppend-1, "e")
	for j := range evs {
		evs[j].Data, evs[j].ContentType = make([]byte, eventSize), esdb.ContentTypeBinary
	}
	mustAppend(t, c, "adm-alone", esdb.NoStream{}, evs...) // nearly the whole budget
	t.Logf("%d appends succeeded, %d refused", ok, refused)
}
