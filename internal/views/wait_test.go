package views_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/sqlite"
)

func TestNotifier(t *testing.T) {
	n := views.NewNotifier()
	pos, wake := n.Watch()
	if pos != 0 {
		t.Fatalf("new notifier at %d", pos)
	}
	n.Publish(views.Orders, 10)
	select {
	case <-wake:
		t.Fatal("woke while customers are still at 0")
	default:
	}
	n.Publish(views.Customers, 7)
	select {
	case <-wake:
	default:
		t.Fatal("did not wake when every view passed 0")
	}
	if pos, _ := n.Watch(); pos != 7 {
		t.Errorf("position %d, want 7 (the lowest view)", pos)
	}
	n.Publish(views.Customers, 5) // lower: ignored
	n.Publish(views.Customers, 12)
	if pos, _ := n.Watch(); pos != 10 {
		t.Errorf("position %d, want 10", pos)
	}
}

func openStore(t *testing.T) views.Store {
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "views.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func setCheckpoint(t *testing.T, s views.Store, pos uint64) {
	for _, v := range views.All() {
		st, err := s.State(context.Background(), v)
		if err == nil {
			err = s.Apply(context.Background(), views.Target{View: v, Version: st.Live}, views.Batch{Checkpoint: pos})
		}
		if err != nil {
			t.Error(err)
		}
	}
}

func TestWaitCheckpoint(t *testing.T) {
	s := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Polling the store, as a query service in another process does.
	go func() {
		time.Sleep(50 * time.Millisecond)
		setCheckpoint(t, s, 42)
	}()
	if cp, err := views.WaitCheckpoint(ctx, s, nil, 40); err != nil || cp != 42 {
		t.Fatalf("WaitCheckpoint(40) = %d, %v; want 42", cp, err)
	}

	// Woken by the notifier of a projector in this process, before the
	// store is read again.
	n := views.NewNotifier()
	go func() {
		time.Sleep(50 * time.Millisecond)
		n.Publish(views.Orders, 100)
		n.Publish(views.Customers, 100)
	}()
	start := time.Now()
	if cp, err := views.WaitCheckpoint(ctx, s, n, 90); err != nil || cp != 100 {
		t.Fatalf("WaitCheckpoint(90) with a notifier = %d, %v; want 100", cp, err)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Errorf("waited %s for a published position", waited)
	}

	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	if _, err := views.WaitCheckpoint(short, s, nil, 1000); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitCheckpoint past the deadline = %v, want DeadlineExceeded", err)
	}
}
