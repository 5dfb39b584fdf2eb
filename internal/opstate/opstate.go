// Package opstate holds what an operator sees of and does to a processor (a
// projection or the saga) while it runs: a pause gate, its recent rate and
// its last error. The processors update it on their own paths; the admin
// service reads it.
package opstate

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Gate pauses a processor. The zero Gate is open.
type Gate struct {
	// setting serializes Set and Restore, so what the processor's store
	// keeps is always the state the gate ends in.
	setting sync.Mutex

	mu     sync.Mutex
	paused bool
	// changed is closed, and replaced, at every change of state.
	changed chan struct{}
}

// Set closes (paused) or opens the gate once keep has stored that state
// where the processor keeps its own, so that a pause outlives the process
// until a resume; a failed keep changes nothing. Setting the state the gate
// is in stores nothing. It reports whether the gate changed.
func (g *Gate) Set(paused bool, keep func(paused bool) error) (bool, error) {
	g.setting.Lock()
	defer g.setting.Unlock()
	if g.Paused() == paused {
		return false, nil
	}
	if err := keep(paused); err != nil {
		return false, err
	}
	return g.set(paused), nil
}

// Restore sets the gate as load reads it from the processor's store, when
// the processor starts. load runs under the lock Set holds, so a pause or
// resume under way cannot be undone by what it read before. A pause is
// logged: nobody should have to wonder why the processor sits idle after a
// restart.
func (g *Gate) Restore(load func() (paused bool, err error), log *slog.Logger, processor string) error {
	g.setting.Lock()
	defer g.setting.Unlock()
	paused, err := load()
	if err != nil {
		return err
	}
	if g.set(paused) && paused {
		log.Warn("paused by an operator, and kept paused across the restart: it applies nothing until resumed (AdminService ResumeProcessor)",
			"processor", processor)
	}
	return nil
}

func (g *Gate) set(paused bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.paused == paused {
		return false
	}
	g.paused = paused
	if g.changed != nil {
		close(g.changed)
		g.changed = nil
	}
	return true
}

// Paused reports whether the gate is closed.
func (g *Gate) Paused() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.paused
}

// Changed returns a channel closed at the next change of state, and the
// state it changes from.
func (g *Gate) Changed() (<-chan struct{}, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.changed == nil {
		g.changed = make(chan struct{})
	}
	return g.changed, g.paused
}

// Wait returns once the gate is open, or with ctx's error.
func (g *Gate) Wait(ctx context.Context) error {
	for {
		changed, paused := g.Changed()
		if !paused {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Window is how far back a Meter's rate looks.
const Window = 10 * time.Second

// Meter measures events per second over the last Window, in one-second
// buckets: a fixed amount of memory whatever the rate.
type Meter struct {
	mu      sync.Mutex
	buckets [10]bucket
}

type bucket struct {
	second int64
	n      uint64
}

// Add counts n events now.
func (m *Meter) Add(n int) { m.add(time.Now(), n) }

func (m *Meter) add(now time.Time, n int) {
	if n <= 0 {
		return
	}
	s := now.Unix()
	m.mu.Lock()
	defer m.mu.Unlock()
	b := &m.buckets[s%int64(len(m.buckets))]
	if b.second != s {
		*b = bucket{second: s}
	}
	b.n += uint64(n)
}

// Rate is the events per second counted over the last Window.
func (m *Meter) Rate() float64 { return m.rate(time.Now()) }

func (m *Meter) rate(now time.Time) float64 {
	s := now.Unix()
	m.mu.Lock()
	defer m.mu.Unlock()
	var n uint64
	for _, b := range m.buckets {
		if s-b.second < int64(len(m.buckets)) {
			n += b.n
		}
	}
	return float64(n) / Window.Seconds()
}

// LastError keeps a processor's latest failure until its next success.
type LastError struct {
	mu  sync.Mutex
	msg string
	at  time.Time
}

// Set records err as the latest failure.
func (l *LastError) Set(err error) {
	if err == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msg, l.at = err.Error(), time.Now()
}

// Clear records a success.
func (l *LastError) Clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msg, l.at = "", time.Time{}
}

// Get returns the latest failure since the last success; "" when none.
func (l *LastError) Get() (string, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.msg, l.at
}
