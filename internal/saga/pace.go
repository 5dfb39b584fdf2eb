package saga

import (
	"context"
	"flag"
	"sync"
	"sync/atomic"
	"time"
)

// Pacing: the write side takes orders faster than the saga can decide them
// once both share the cores (on two, ~2,200 PlaceOrder/s acknowledged
// against ~1,300 decided, measured with ghz). Left alone, every order
// acknowledged beyond that joins a backlog that only grows: users see orders
// PENDING for as long as the load lasts. So a new order waits while this
// instance's saga is behind by more than PaceLag, until it is back within it
// or PaceWait has passed. A client with a bounded number of calls in flight
// (every gRPC client with a concurrency limit, ghz, orderly bench) is slowed
// to the rate the saga decides, and the cores its orders no longer take go
// to the saga.
//
// Pacing delays; it never refuses. After PaceWait an order goes ahead
// whatever the saga's state: a saga that cannot keep up with an open-loop
// load falls behind as before.
//
// Behind means overloaded, not stuck: the lag paced on is the age of the
// oldest unfinished event in a lane that is not retrying a failed step. A
// lane waiting for an upgraded build (an event of a newer schema), or
// retrying against a failing store, would otherwise hold every order placed
// until the upgrade, each for PaceWait. A paused saga is not paced on (its
// operator chose to let orders wait), nor one that has not caught up once
// since it started: the backlog of a restart is worked off without holding
// new orders back. Later backlogs (partitions taken over, what queued during
// a pause) are paced on. The lag is measured as orderly_saga_lag_seconds is:
// the store's event time against this host's clock.

// Pacing defaults; see Options.PaceLag, PaceWait and PaceMax.
const (
	DefaultPaceLag  = 500 * time.Millisecond
	DefaultPaceWait = time.Second
	DefaultPaceMax  = 4096
)

// RegisterFlags declares the flags of the options a deployment tunes
// (config.Parse adds their ORDERLY_* variables).
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&o.Workers, "saga-workers", DefaultWorkers, "credit saga lanes: customers decided concurrently")
	fs.DurationVar(&o.PaceLag, "order-pace-lag", DefaultPaceLag,
		"a PlaceOrder waits while the credit saga is further behind than this (at most -order-pace-wait), so that decisions keep pace with orders; 0 turns pacing off")
	fs.DurationVar(&o.PaceWait, "order-pace-wait", DefaultPaceWait,
		"the longest a PlaceOrder waits for the credit saga to come back within -order-pace-lag; then it goes ahead (0: the default)")
}

// pacer is where paced orders wait for the saga to come back within its lag.
type pacer struct {
	// waiters counts the orders waiting, so that lanes look at the lag
	// only when someone waits for it.
	waiters atomic.Int32
	mu      sync.Mutex
	// wake is closed, and replaced, when the saga comes back within its lag.
	wake chan struct{}
	// stalled[i] is set while lane i retries a failed step.
	stalled []atomic.Bool
}

func (p *pacer) woken() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wake == nil {
		p.wake = make(chan struct{})
	}
	return p.wake
}

func (p *pacer) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wake != nil {
		close(p.wake)
		p.wake = nil
	}
}

// Pace holds a new order back while the saga is behind (see Pacing above),
// for at most Options.PaceWait and half of what is left of ctx's deadline,
// so that the order still has time to be placed, and none while
// Options.PaceMax orders are held already. It returns ctx's error if
// ctx ends first, and nil otherwise.
func (s *Saga) Pace(ctx context.Context) error {
	if !s.behind() {
		return nil
	}
	start := time.Now()
	wait := s.opts.PaceWait
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl)/2)
	}
	held := s.pace.waiters.Add(1) // before the count, so that a paced order is seen waiting
	s.metrics.paced.Inc()
	if held > int32(s.opts.PaceMax) {
		// Held calls are memory; past PaceMax of them, pacing adds none.
		s.pace.waiters.Add(-1)
		s.metrics.pacedOut.Inc()
		return nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	defer func() {
		s.pace.waiters.Add(-1)
		s.metrics.pacedFor.Observe(time.Since(start).Seconds())
	}()
	for {
		// The channel is taken before looking again, and the waiter counted
		// before that: a lane that brings the saga back within its lag
		// after this look sees the waiter and closes this channel.
		wake := s.pace.woken()
		if !s.behind() {
			return nil
		}
		select {
		case <-wake:
		case <-timer.C:
			s.metrics.pacedOut.Inc()
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// behind reports whether new orders are to wait for the saga.
func (s *Saga) behind() bool {
	return s.opts.PaceLag > 0 && s.liveOnce.Load() && !s.gate.Paused() && s.marks.lag(s.laneStalled) > s.opts.PaceLag
}

func (s *Saga) laneStalled(lane int) bool { return s.pace.stalled[lane].Load() }

// finished wakes the paced orders if the saga is back within its lag. It is
// called whenever that may have become so: an event finished, a lane began
// retrying, the saga was paused, the partitions held changed.
func (s *Saga) finished() {
	if s.pace.waiters.Load() > 0 && !s.behind() {
		s.pace.release()
	}
}
