package views_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/views"
	"github.com/orderly/orderly/internal/views/sqlite"
	"github.com/orderly/orderly/internal/views/viewstest"
)

func TestNotifier(t *testing.T) {
	n := views.NewNotifier()
	pos, wake, _ := n.Watch()
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
	if pos, _, _ := n.Watch(); pos != 7 {
		t.Errorf("position %d, want 7 (the lowest view)", pos)
	}
	n.Publish(views.Customers, 5) // lower: ignored
	n.Publish(views.Customers, 12)
	if pos, _, _ := n.Watch(); pos != 10 {
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

// With a notifier, publishes below the awaited position wake the waiter but
// do not each cost a store read; and a store that is ahead of a lagging
// notifier is still seen, on the poll.
func TestWaitCheckpointNotifierSparesTheStore(t *testing.T) {
	s := openStore(t)
	r := &viewstest.CountingReader{CheckpointReader: s}
	n := views.NewNotifier()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const publishes = 200
	go func() {
		for i := range uint64(publishes) {
			n.Publish(views.Orders, i+1)
			n.Publish(views.Customers, i+1)
			time.Sleep(200 * time.Microsecond)
		}
		setCheckpoint(t, s, 1000) // the store moves on; the notifier does not say so
	}()
	if cp, err := views.WaitCheckpoint(ctx, r, n, 500); err != nil || cp != 1000 {
		t.Fatalf("WaitCheckpoint(500) = %d, %v; want 1000 from the store", cp, err)
	}
	// One read at the start, then one per poll (every 250 ms) while the
	// publishes and the store write take their time.
	if reads := r.Reads.Load(); reads > 12 {
		t.Errorf("%d store reads for %d publishes below the position", reads, publishes)
	}
}

// A notifier whose projector is the views' sole writer spares waiters the
// store; when it stops being sole, waiters are woken to read the store,
// which another writer may have moved past the notifier.
func TestWaitCheckpointSoleNotifier(t *testing.T) {
	s := openStore(t)
	setCheckpoint(t, s, 50)
	r := &viewstest.CountingReader{CheckpointReader: s}
	n := views.NewNotifier()
	for _, v := range views.All() {
		n.SetSole(v, true)
		n.Publish(v, 10)
	}
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := views.WaitCheckpoint(short, r, n, 40); !errors.Is(err, context.DeadlineExceeded) || r.Reads.Load() != 0 {
		t.Fatalf("sole: WaitCheckpoint = %v after %d store reads; want DeadlineExceeded after none (the store is read every %s at most)", err, r.Reads.Load(), "250ms")
	}

	// Under the fallback read's interval: only the wake-up can end it.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	go func() {
		time.Sleep(20 * time.Millisecond)
		n.SetSole(views.Orders, false)
	}()
	if cp, err := views.WaitCheckpoint(ctx, r, n, 40); err != nil || cp != 50 {
		t.Fatalf("no longer sole: WaitCheckpoint = %d, %v; want 50 from the store", cp, err)
	}
}
