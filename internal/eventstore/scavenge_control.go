package eventstore

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/google/uuid"
)

// scavenges runs at most one scavenge at a time, started by an operator
// (Operations.StartScavenge) or by the schedule (Config.ScavengeEvery), and
// stops it when the store closes.
type scavenges struct {
	s      *Server
	ctx    context.Context // the store's lifetime
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu  sync.Mutex
	cur *scavengeRun // nil when none runs
}

type scavengeRun struct {
	id   string
	stop context.CancelFunc
	done chan struct{}
}

// scavengeCloseTimeout bounds writing the last progress event of a scavenge
// that was stopped, whose own context is done by then.
const scavengeCloseTimeout = 10 * time.Second

func newScavenges(s *Server) *scavenges {
	ctx, cancel := context.WithCancel(context.Background())
	c := &scavenges{s: s, ctx: ctx, cancel: cancel}
	if every := s.cfg.ScavengeEvery; every > 0 {
		c.wg.Add(1)
		go c.schedule(every)
	}
	return c
}

// start starts a scavenge unless one runs; either way it returns the id of
// the one running.
func (c *scavenges) start() (id string, started bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil {
		return c.cur.id, false, nil
	}
	if c.ctx.Err() != nil {
		return "", false, errClosed
	}
	ctx, stop := context.WithCancel(c.ctx)
	run := &scavengeRun{id: uuid.NewString(), stop: stop, done: make(chan struct{})}
	c.cur = run
	c.wg.Add(1)
	go c.run(ctx, run)
	return run.id, true, nil
}

// stop stops the scavenge id ("current": whichever runs) and waits, within
// ctx, for it to end; it returns the id stopped, "" when none matched.
func (c *scavenges) stop(ctx context.Context, id string) (stopped string, err error) {
	c.mu.Lock()
	run := c.cur
	c.mu.Unlock()
	if run == nil || (id != run.id && id != "current") {
		return "", nil
	}
	run.stop()
	select {
	case <-run.done:
		return run.id, nil
	case <-ctx.Done():
		return run.id, ctx.Err()
	}
}

func (c *scavenges) run(ctx context.Context, run *scavengeRun) {
	defer c.wg.Done()
	defer close(run.done)
	defer func() {
		c.mu.Lock()
		c.cur = nil
		c.mu.Unlock()
	}()
	s := c.s
	s.metrics.scavengeRunning.Set(1)
	defer s.metrics.scavengeRunning.Set(0)
	log := s.log.With("scavenge", run.id)
	log.Info("scavenge started")
	began := time.Now()
	rec := &scavengeRecorder{s: s, id: run.id, log: log}
	rec.started(ctx)
	sc := &scavenger{
		db: s.db, durable: s.durable, seq: s.seq, head: s.broker.Head, metrics: s.metrics,
		progress: rec.progress,
		beforeSlice: func(ctx context.Context) {
			if hook := s.scavengeHook.Load(); hook != nil {
				(*hook)(ctx)
			}
		},
	}
	err := sc.run(ctx)
	result := "Success"
	switch {
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		result, err = "Stopped", nil
	case err != nil:
		result = "Failed"
	}
	if sc.stats.DiskAfter > 0 && sc.stats.DiskAfter < sc.stats.DiskBefore {
		s.metrics.scavengeFreed.Add(float64(sc.stats.DiskBefore - sc.stats.DiskAfter))
	}
	s.metrics.scavenges.WithLabelValues(result).Inc()
	log.Info("scavenge ended", "result", result, "err", err, "took", time.Since(began),
		"events_removed", sc.stats.Removed, "bytes_removed", sc.stats.BytesRemoved,
		"disk_before", sc.stats.DiskBefore, "disk_after", sc.stats.DiskAfter)
	done, cancel := context.WithTimeout(context.WithoutCancel(ctx), scavengeCloseTimeout)
	defer cancel()
	rec.completed(done, result, err, time.Since(began), sc.stats)
}

// schedule starts a scavenge every interval (unless one still runs).
func (c *scavenges) schedule(every time.Duration) {
	defer c.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			if _, _, err := c.start(); err != nil {
				return
			}
		}
	}
}

// close stops the running scavenge and the schedule and waits for both; the
// sequencer must still run, so a stopped scavenge can record that it stopped.
func (c *scavenges) close() {
	c.mu.Lock()
	c.cancel()
	c.mu.Unlock()
	c.wg.Wait()
}
