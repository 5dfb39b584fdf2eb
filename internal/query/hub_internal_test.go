package query

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/eventlog"
)

// TestHubSubscribeHung: against an event store that accepts connections and
// never answers, the watch hub's subscribe gives up after its timeout, so
// that run tries again, instead of waiting as long as the hub runs.
func TestHubSubscribeHung(t *testing.T) {
	conn, err := eventlog.Connect(commandtest.SilentStore(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	h := newHub(conn, slog.New(slog.DiscardHandler), 200*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // far: only the hub's timeout may end it
	defer cancel()
	confirmed := false
	_, err = h.follow(ctx, esdb.Start{}, func() { confirmed = true })
	if !errors.Is(err, eventlog.ErrTimeout) || confirmed || ctx.Err() != nil {
		t.Fatalf("follow = %v (confirmed %v, ctx %v), want %v", err, confirmed, ctx.Err(), eventlog.ErrTimeout)
	}
}
