package eventstore

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The admission budget is never exceeded: a request holding bytes is
// refused more instead of waiting, one holding none waits for room (and
// gives up with its context), and released bytes make room again.
func TestAdmissionBudget(t *testing.T) {
	a := newAdmission(100, prometheus.NewGauge(prometheus.GaugeOpts{Name: "held"}))
	if err := a.wait(context.Background(), 60); err != nil {
		t.Fatal(err)
	}
	if a.try(50) {
		t.Fatal("took 50 more bytes with 60 of 100 held")
	}
	if !a.try(40) {
		t.Fatal("refused 40 bytes with 60 of 100 held")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.wait(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait with the budget full: %v, want the context's error", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- a.wait(context.Background(), 60) }()
	a.release(60)
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	if a.used != 100 {
		t.Fatalf("used = %d, want 100", a.used)
	}
}
