package projection

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/orderly/orderly/internal/lease"
	"github.com/orderly/orderly/internal/opstate"
	"github.com/orderly/orderly/internal/views"
)

// ViewStatus is what the live projection of one view reports to an
// operator (package admin).
type ViewStatus struct {
	View views.View
	// Started is set once the projection has read its checkpoint.
	Started bool
	// Position is its checkpoint; Head the last position of $all when it
	// last looked (only while behind: once caught up, Position).
	Position, Head uint64
	CaughtUp       bool
	Paused         bool
	// LagSeconds is the age of the last applied event while behind.
	LagSeconds float64
	// EventsPerSecond counts the view's events applied over the last
	// opstate.Window.
	EventsPerSecond float64
	// DeadLetters counts the events parked since this process started.
	DeadLetters uint64
	// LastError is the last failure since the last successful batch.
	LastError   string
	LastErrorAt time.Time
}

// viewControl is the operator's side of one view's live projection.
type viewControl struct {
	gate    opstate.Gate
	meter   opstate.Meter
	lastErr opstate.LastError

	mu          sync.Mutex
	started     bool
	caughtUp    bool
	position    uint64
	head        uint64
	lastEventAt time.Time
	deadLetters uint64
}

// controls are every view's viewControl, and a signal of resumes: a
// resumed view has skipped what came while it was paused, so the live
// follower resubscribes from the checkpoints.
type controls struct {
	views map[views.View]*viewControl

	mu      sync.Mutex
	resumed chan struct{}
}

func newControls() *controls {
	c := &controls{views: map[views.View]*viewControl{}, resumed: make(chan struct{})}
	for _, v := range views.All() {
		c.views[v] = &viewControl{}
	}
	return c
}

// resumes returns a channel closed at the next resume.
func (c *controls) resumes() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resumed
}

func (c *controls) signalResume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.resumed)
	c.resumed = make(chan struct{})
}

func (vc *viewControl) begin(cp uint64) {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	vc.started, vc.position = true, cp
}

func (vc *viewControl) applied(cp uint64, d decoded, dead int) {
	vc.meter.Add(d.own)
	vc.lastErr.Clear()
	vc.mu.Lock()
	defer vc.mu.Unlock()
	vc.position = cp
	vc.deadLetters += uint64(dead)
	if d.events > 0 {
		vc.lastEventAt = d.lastAt
	}
}

func (vc *viewControl) observed(caughtUp bool, head uint64, headOK bool) {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	vc.caughtUp = caughtUp
	if headOK {
		vc.head = head
	}
}

func (vc *viewControl) status(v views.View) ViewStatus {
	msg, at := vc.lastErr.Get()
	vc.mu.Lock()
	defer vc.mu.Unlock()
	st := ViewStatus{
		View: v, Started: vc.started, Position: vc.position, Head: max(vc.head, vc.position), CaughtUp: vc.caughtUp,
		Paused: vc.gate.Paused(), EventsPerSecond: vc.meter.Rate(), DeadLetters: vc.deadLetters, LastError: msg, LastErrorAt: at,
	}
	if st.CaughtUp {
		st.Head = vc.position
	} else if !vc.lastEventAt.IsZero() {
		st.LagSeconds = time.Since(vc.lastEventAt).Seconds()
	}
	return st
}

// Share is this projector's share of the work among those on its view
// store.
func (p *Projector) Share() lease.Share { return p.leases.Share() }

// Status returns what the live projection of every view reports, in the
// order of views.All.
func (p *Projector) Status() []ViewStatus {
	var out []ViewStatus
	for _, v := range views.All() {
		out = append(out, p.ctl.views[v].status(v))
	}
	return out
}

// Pause stops the live projection of v from applying events: the batch
// being written finishes, then the view's checkpoint stays where it is
// while the other views go on. The pause is kept in the view store, so the
// view stays paused across restarts until resumed. It reports whether v
// was running.
func (p *Projector) Pause(ctx context.Context, v views.View) (bool, error) {
	changed, err := p.setPaused(ctx, v, true)
	if changed {
		p.log.Info("projection paused", "view", string(v))
	}
	return changed, err
}

// Resume resumes v's live projection from its checkpoint; it reports
// whether v was paused.
func (p *Projector) Resume(ctx context.Context, v views.View) (bool, error) {
	changed, err := p.setPaused(ctx, v, false)
	if changed {
		p.log.Info("projection resumed", "view", string(v))
		p.ctl.signalResume()
	}
	return changed, err
}

func (p *Projector) setPaused(ctx context.Context, v views.View, paused bool) (bool, error) {
	vc, ok := p.ctl.views[v]
	if !ok {
		return false, fmt.Errorf("projection: unknown view %q (views: %v)", v, views.All())
	}
	return vc.gate.Set(paused, func(paused bool) error {
		ctx, cancel := context.WithTimeout(ctx, p.opts.StoreTimeout)
		defer cancel()
		return p.store.SetPaused(ctx, v, paused)
	})
}
