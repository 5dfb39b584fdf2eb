package admin

import (
	"context"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/projection"
	"github.com/orderly/orderly/internal/views"
)

// rebuild is a view's rebuild started by StartRebuild: the latest progress,
// which watchers read as it changes. Each watcher holds only the latest
// snapshot, so a slow one skips updates instead of queueing them.
type rebuild struct {
	view    views.View
	started time.Time

	mu       sync.Mutex
	progress *orderlyv1.RebuildProgress
	ended    bool
	changed  chan struct{} // closed, and replaced, at each update
}

type rebuildSnapshot struct {
	progress *orderlyv1.RebuildProgress
	ended    bool
	changed  <-chan struct{}
}

func newRebuild(v views.View) *rebuild {
	now := time.Now()
	r := &rebuild{view: v, started: now, changed: make(chan struct{})}
	r.progress = &orderlyv1.RebuildProgress{View: string(v), StartedAt: timestamppb.New(now)}
	return r
}

func (r *rebuild) snapshot() rebuildSnapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return rebuildSnapshot{progress: proto.CloneOf(r.progress), ended: r.ended, changed: r.changed}
}

// update records p (from the projection engine).
func (r *rebuild) update(p projection.Progress) {
	r.set(func(rp *orderlyv1.RebuildProgress) {
		rp.Events, rp.Position, rp.Head = p.Events, p.Position, p.Head
		rp.EventsPerSecond, rp.EtaSeconds, rp.Done = p.Rate, p.ETA.Seconds(), p.Done
	}, false)
}

// end records the rebuild's outcome.
func (r *rebuild) end(err error) {
	r.set(func(rp *orderlyv1.RebuildProgress) {
		if err != nil {
			rp.Error = err.Error()
		} else {
			rp.Done, rp.EtaSeconds = true, 0
		}
	}, true)
}

func (r *rebuild) set(change func(*orderlyv1.RebuildProgress), ended bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	change(r.progress)
	r.ended = r.ended || ended
	close(r.changed)
	r.changed = make(chan struct{})
}

func (s *Service) rebuildOf(v views.View) *rebuild {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rebuilds[v]
}

// StartRebuild starts rebuilding a view in the background, with the engine
// of `orderly rebuild`; WatchRebuild follows it. One rebuild of a view
// runs at a time.
func (s *Service) StartRebuild(ctx context.Context, req *orderlyv1.StartRebuildRequest) (*orderlyv1.StartRebuildResponse, error) {
	if err := invalid("StartRebuild", checkView("view", req.GetView())); err != nil {
		return nil, err
	}
	v := views.View(req.GetView())
	if s.opts.Projector == nil {
		return nil, s.elsewhere(string(v))
	}
	s.mu.Lock()
	if r := s.rebuilds[v]; r != nil && !r.snapshot().ended {
		s.mu.Unlock()
		return nil, refuse(domain.KindRejected, ReasonRebuildRunning, "a rebuild of %s is running since %s: watch it (WatchRebuild)", v, r.started.UTC().Format(time.RFC3339))
	}
	r := newRebuild(v)
	s.rebuilds[v] = r
	s.mu.Unlock()

	s.jobs.Go(func() {
		s.opts.Log.Info("admin: rebuild started", "view", string(v))
		err := s.opts.Projector.RebuildReporting(s.base, r.update, v)
		r.end(err)
		if err != nil {
			s.opts.Log.Warn("admin: rebuild failed; the live view is as it was", "view", string(v), "err", err)
			return
		}
		s.opts.Log.Info("admin: rebuild done", "view", string(v), "took", time.Since(r.started).Round(time.Millisecond).String())
	})
	return &orderlyv1.StartRebuildResponse{Progress: r.snapshot().progress}, nil
}

// WatchRebuild streams the progress of the view's latest rebuild in this
// process until it ends (the last message says how) or the client leaves.
func (s *Service) WatchRebuild(req *orderlyv1.WatchRebuildRequest, stream orderlyv1.AdminService_WatchRebuildServer) error {
	ctx := stream.Context()
	if err := invalid("WatchRebuild", checkView("view", req.GetView())); err != nil {
		return err
	}
	v := views.View(req.GetView())
	if s.opts.Projector == nil {
		return s.elsewhere(string(v))
	}
	r := s.rebuildOf(v)
	if r == nil {
		return refuse(domain.KindNotFound, ReasonNoRebuild, "no rebuild of %s has been started in this process since it started (StartRebuild starts one)", v)
	}
	for {
		snap := r.snapshot()
		if err := stream.Send(&orderlyv1.WatchRebuildResponse{Progress: snap.progress}); err != nil {
			return err
		}
		if snap.ended {
			return nil
		}
		select {
		case <-snap.changed:
		case <-ctx.Done():
			return s.failed(ctx, ctx.Err(), "watch rebuild")
		}
	}
}
