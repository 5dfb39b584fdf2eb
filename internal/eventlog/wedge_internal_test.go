package eventlog

import (
	"context"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// TestCallReplacesOnlyAWedgedClient: a call cut short by its context keeps
// the client when the call then returns, as a healthy client's does; a call
// that goes on past the grace (the official client wedged) gets it replaced,
// so later calls do not wait on it too.
func TestCallReplacesOnlyAWedgedClient(t *testing.T) {
	old := wedgeGrace
	wedgeGrace = 50 * time.Millisecond
	t.Cleanup(func() { wedgeGrace = old })
	// The ops below stand in for a client call and never use the client:
	// what is tested is how Conn treats a call that does not answer.
	conn, err := Connect("esdb://127.0.0.1:1?tls=false", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	current := func() *handle {
		conn.mu.Lock()
		defer conn.mu.Unlock()
		return conn.cur
	}

	first := current()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	_, err = Call(ctx, conn, Op{Method: "test"}, func(ctx context.Context, _ *esdb.Client) (int, error) {
		<-ctx.Done() // a healthy client: its RPC ends with the context
		return 0, ctx.Err()
	})
	cancel()
	if err == nil {
		t.Fatal("a call past its deadline answered nil")
	}
	time.Sleep(4 * wedgeGrace) // past the grace: nothing may happen now
	if current() != first {
		t.Fatal("a client whose call returned once cancelled was replaced")
	}

	wedged := make(chan struct{})
	defer close(wedged)
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, _ = Call(ctx, conn, Op{Method: "test"}, func(context.Context, *esdb.Client) (int, error) {
		<-wedged // ignores its context, as the wedged client does
		return 0, nil
	})
	deadline := time.Now().Add(10 * time.Second)
	for current() == first {
		if time.Now().After(deadline) {
			t.Fatal("a client whose call never returned was kept")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
