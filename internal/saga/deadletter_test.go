package saga_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/saga"
)

// appendRaw writes an event as another build (or a broken writer) would.
func appendRaw(t *testing.T, env *commandtest.Env, stream, typ string, schema int, payload string) uint64 {
	t.Helper()
	res, err := env.Store.AppendToStream(ctx(t), stream, esdb.AppendToStreamOptions{}, esdb.EventData{
		EventType: typ, ContentType: esdb.ContentTypeJson, Data: []byte(payload), Metadata: fmt.Appendf(nil, `{"schema":%d}`, schema),
	})
	if err != nil {
		t.Fatal(err)
	}
	return res.CommitPosition
}

// reserved is the credit a customer holds.
func reserved(t *testing.T, env *commandtest.Env, customer string) int64 {
	return env.Customer(t, customer).Reserved.Minor
}

// twoLanes returns customers in different lanes of a saga with n workers.
func twoLanes(t *testing.T, env *commandtest.Env, n int) (string, string) {
	a, b := env.RegisterCustomer(t, 10_000), env.RegisterCustomer(t, 10_000)
	for saga.LaneOf(a, n) == saga.LaneOf(b, n) {
		b = env.RegisterCustomer(t, 10_000)
	}
	return a, b
}

// TestNewerSchemaWaits: a cancellation written by a newer release (schema
// v2, unknown to this build) is not skipped: it waits, visibly, while other
// customers' orders are decided and the checkpoint stays before it; a build
// that knows v2 then releases the order's credit.
func TestNewerSchemaWaits(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	opts := saga.Options{Workers: 8}
	cust, other := twoLanes(t, env, opts.Workers)
	old := startSaga(t, env, opts)
	o := place(t, env, cust, 1_000)
	eventually(t, converge, func() (bool, string) { return settled(t, env, []placed{o}) })

	at := appendRaw(t, env, eventlog.OrderStream(o.id), domain.TypeOrderCancelled, 2,
		fmt.Sprintf(`{"order_id":%q,"customer_id":%q,"reason":"changed my mind","refund_to":"card"}`, o.id, cust))
	after := place(t, env, other, 1_000)
	eventually(t, converge, func() (bool, string) { return settled(t, env, []placed{after}) })
	eventually(t, converge, func() (bool, string) {
		w := old.metric(t, "orderly_saga_waiting_events")
		return w == 1, fmt.Sprintf("%v events waiting", w)
	})
	if got := reserved(t, env, cust); got != 1_000 {
		t.Fatalf("customer holds %d while the cancellation waits; want 1000", got)
	}
	if p := old.Position(); p >= at {
		t.Fatalf("watermark %d passed the waiting event at %d", p, at)
	}
	if n := old.metric(t, "orderly_saga_dead_letters_total"); n != 0 {
		t.Fatalf("%v dead letters; a newer schema must wait, not be set aside", n)
	}
	old.stop()

	// The upgrade: a build whose OrderCancelled is at v2.
	upgraded := eventcodec.Default()
	upgraded.Register(domain.OrderCancelled{}, 2, map[int]eventcodec.Upcaster{1: func(p []byte) ([]byte, error) { return p, nil }})
	opts.Registry = upgraded
	s := startSaga(t, env, opts)
	eventually(t, converge, func() (bool, string) {
		got := reserved(t, env, cust)
		return got == 0, fmt.Sprintf("customer holds %d after the upgrade; want its credit released", got)
	})
	eventually(t, converge, func() (bool, string) {
		return s.Position() >= at, fmt.Sprintf("upgraded saga at %d, the cancellation at %d", s.Position(), at)
	})
	if w := s.metric(t, "orderly_saga_waiting_events"); w != 0 {
		t.Errorf("%v events waiting after the upgrade", w)
	}
}

// TestDeadLetters: a malformed cancellation and an order whose reservation
// is refused (its customer does not exist) are set aside in the dead-letter
// stream, visible and counted, and the saga moves on, in their lane too. A
// build that reads the malformed event replays it on start, releasing the
// credit, and records the resolution; the refused one stays unresolved.
func TestDeadLetters(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})
	cust := env.RegisterCustomer(t, 10_000)
	first := startSaga(t, env, saga.Options{})
	o := place(t, env, cust, 1_000)
	eventually(t, converge, func() (bool, string) { return settled(t, env, []placed{o}) })

	malformed := fmt.Sprintf(`{"order_id":%q,"customer_id":%q,"reason":42}`, o.id, cust)
	appendRaw(t, env, eventlog.OrderStream(o.id), domain.TypeOrderCancelled, 1, malformed)
	orphan := "00000000-0000-4000-8000-00000000dead"
	appendRaw(t, env, eventlog.OrderStream(orphan), domain.TypeOrderPlaced, 2, fmt.Sprintf(
		`{"order_id":%q,"customer_id":"00000000-0000-4000-8000-000000000000","lines":[{"sku":"A","quantity":1,"unit_price":{"currency":"USD","minor":5}}],"total":{"currency":"USD","minor":5}}`, orphan))
	next := place(t, env, cust, 2_000) // same customer, same lane
	eventually(t, converge, func() (bool, string) {
		st := env.Order(t, next.id).Status
		return st == domain.StatusApproved, fmt.Sprintf("the next order is %v", st)
	})
	eventually(t, converge, func() (bool, string) {
		n := first.metric(t, "orderly_saga_dead_letters_total")
		return n == 2, fmt.Sprintf("%v dead letters; want 2", n)
	})
	if u := first.metric(t, "orderly_saga_dead_letters_unresolved"); u != 2 {
		t.Errorf("%v unresolved dead letters; want 2", u)
	}
	letters, resolved := readDeadLetters(t, env)
	if len(letters) != 2 || len(resolved) != 0 {
		t.Fatalf("dead-letter stream holds %+v and resolutions %v; want 2 letters", letters, resolved)
	}
	for i, want := range []struct{ stream, typ, reason string }{
		{eventlog.OrderStream(o.id), domain.TypeOrderCancelled, "malformed"},
		{eventlog.OrderStream(orphan), domain.TypeOrderPlaced, "refused"},
	} {
		if dl := letters[i]; dl.Stream != want.stream || dl.Type != want.typ || dl.Reason != want.reason || dl.Error == "" || dl.EventID == "" || dl.Commit == 0 {
			t.Errorf("dead letter %d = %+v; want %s of %s, %s, with its error and position", i, dl, want.typ, want.stream, want.reason)
		}
	}
	if got := reserved(t, env, cust); got != 3_000 {
		t.Fatalf("customer holds %d; want 3000 (the malformed cancellation is set aside)", got)
	}
	first.stop()

	// The fixed build reads the reason as text; it replays the letter.
	fixed := eventcodec.Default()
	fixed.Register(domain.OrderCancelled{}, 2, map[int]eventcodec.Upcaster{1: func(p []byte) ([]byte, error) {
		var v map[string]any
		if err := json.Unmarshal(p, &v); err != nil {
			return nil, err
		}
		v["reason"] = fmt.Sprint(v["reason"])
		return json.Marshal(v)
	}})
	second := startSaga(t, env, saga.Options{Registry: fixed})
	eventually(t, converge, func() (bool, string) {
		got := reserved(t, env, cust)
		return got == 2_000, fmt.Sprintf("customer holds %d after the replay; want 2000", got)
	})
	eventually(t, converge, func() (bool, string) {
		letters, resolved = readDeadLetters(t, env)
		return len(resolved) == 1 && resolved[0] == letters[0].EventID, fmt.Sprintf("resolutions %v; want the malformed cancellation's %s", resolved, letters[0].EventID)
	})
	eventually(t, converge, func() (bool, string) {
		u := second.metric(t, "orderly_saga_dead_letters_unresolved")
		return u == 1, fmt.Sprintf("%v unresolved dead letters after the replay; want the refused one", u)
	})
	second.stop()

	// A resolved letter is not replayed again.
	third := startSaga(t, env, saga.Options{Registry: fixed})
	eventually(t, converge, func() (bool, string) {
		u := third.metric(t, "orderly_saga_dead_letters_unresolved")
		return u == 1, fmt.Sprintf("%v unresolved", u)
	})
	if _, resolved = readDeadLetters(t, env); len(resolved) != 1 {
		t.Fatalf("resolutions %v after another start; want still 1", resolved)
	}
}

// readDeadLetters reads the saga's dead letters and the IDs they resolve,
// as an operator would with any EventStoreDB client.
func readDeadLetters(t *testing.T, env *commandtest.Env) (letters []saga.DeadLetter, resolved []string) {
	t.Helper()
	raw, err := eventlog.ReadRaw(ctx(t), env.Store, "saga-credit-dead-letters", 0, 0)
	if errors.Is(err, eventlog.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range raw {
		switch r.EventType {
		case saga.DeadLetterType:
			var dl saga.DeadLetter
			if err := json.Unmarshal(r.Data, &dl); err != nil {
				t.Fatal(err)
			}
			letters = append(letters, dl)
		case saga.ResolvedType:
			var res saga.Resolution
			if err := json.Unmarshal(r.Data, &res); err != nil {
				t.Fatal(err)
			}
			resolved = append(resolved, res.EventID)
		}
	}
	return letters, resolved
}
