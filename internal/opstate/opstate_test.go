package opstate

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestGateWaitsWhilePaused(t *testing.T) {
	var g Gate
	if err := g.Wait(context.Background()); err != nil {
		t.Fatalf("open gate: %v", err)
	}
	if !g.Pause() || g.Pause() {
		t.Fatal("Pause should report a change once")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("paused gate with ended context: %v", err)
	}
	done := make(chan error)
	go func() { done <- g.Wait(context.Background()) }()
	g.Resume()
	if err := <-done; err != nil {
		t.Fatalf("resumed: %v", err)
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
