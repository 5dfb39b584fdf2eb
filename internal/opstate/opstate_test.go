package opstate

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestGateWaitsWhilePaused(t *testing.T) {
	var g Gate
	if err := g.Wait(context.Background()); err != nil {
		t.Fatalf("open gate: %v", err)
	}
	var kept []bool
	keep := func(paused bool) error { kept = append(kept, paused); return nil }
	if changed, err := g.Set(true, keep); !changed || err != nil {
		t.Fatalf("pausing an open gate: %v, %v", changed, err)
	}
	if changed, _ := g.Set(true, keep); changed || len(kept) != 1 {
		t.Fatalf("pausing a paused gate changed it (%v) or stored it again (%v)", changed, kept)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("paused gate with ended context: %v", err)
	}
	done := make(chan error)
	go func() { done <- g.Wait(context.Background()) }()
	if changed, err := g.Set(false, keep); !changed || err != nil {
		t.Fatalf("resuming: %v, %v", changed, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("resumed: %v", err)
	}
	if !slices.Equal(kept, []bool{true, false}) {
		t.Errorf("stored %v; want the pause, then the resume", kept)
	}
}

// TestGateUnchangedWhenNotKept: a pause that could not be stored is no
// pause, so the gate never disagrees with what a restart would restore.
func TestGateUnchangedWhenNotKept(t *testing.T) {
	var g Gate
	refused := errors.New("store down")
	if changed, err := g.Set(true, func(bool) error { return refused }); changed || !errors.Is(err, refused) || g.Paused() {
		t.Fatalf("Set with a failing store: changed %v, err %v, paused %v", changed, err, g.Paused())
	}
}

func TestMeterCountsOnlyTheWindow(t *testing.T) {
	var m Meter
	now := time.Unix(1000, 0)
	m.add(now, 50)
	m.add(now.Add(5*time.Second), 50)
	if r := m.rate(now.Add(5 * time.Second)); r != 10 {
		t.Fatalf("rate %v; want 10 events/s", r)
	}
	if r := m.rate(now.Add(12 * time.Second)); r != 5 {
		t.Fatalf("rate %v once the first second left the window; want 5", r)
	}
}
