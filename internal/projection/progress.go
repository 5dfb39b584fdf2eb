package projection

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/views"
)

// Progress is how far a rebuild has come, reported after every batch.
type Progress struct {
	View views.View
	// Events is how many events of $all the rebuild has been through.
	Events uint64
	// Position is its checkpoint; Head the last position of $all when last
	// read (at most once a second).
	Position, Head uint64
	// Rate is events applied per second since the rebuild started.
	Rate float64
	// ETA estimates the time left to reach Head; 0 when unknown.
	ETA time.Duration
	// Done is set once the rebuilt version is live.
	Done bool
}

// Fraction is how far Position is toward Head, from 0 to 1.
func (p Progress) Fraction() float64 {
	if p.Done || p.Head == 0 {
		return 1
	}
	return min(1, float64(p.Position)/float64(p.Head))
}

func (l *viewLane[D]) report(ctx context.Context, done bool) {
	if l.f.progress == nil {
		return
	}
	head, _ := l.f.head.get(ctx, l.f.p.conn, l.f.p.opts.EventStoreTimeout)
	pr := Progress{View: l.t.View, Events: l.events, Position: l.cp, Head: max(head, l.cp), Done: done}
	if elapsed := time.Since(l.f.started).Seconds(); elapsed > 0 {
		pr.Rate = float64(pr.Events) / elapsed
		// A shadow starts at position 0, so positions per second over the
		// whole run estimate what is left, in whatever unit positions are.
		if speed := float64(l.cp) / elapsed; speed > 0 && !done {
			pr.ETA = time.Duration(float64(pr.Head-l.cp) / speed * float64(time.Second))
		}
	}
	l.f.progress(pr)
}

// headCache reads the last position of $all, at most once a second.
type headCache struct {
	at  time.Time
	pos uint64
	ok  bool
}

func (h *headCache) get(ctx context.Context, conn *eventlog.Conn, timeout time.Duration) (uint64, bool) {
	if time.Since(h.at) < time.Second {
		return h.pos, h.ok
	}
	h.at = time.Now()
	pos, err := storeHead(ctx, conn, timeout)
	if err == nil {
		h.pos, h.ok = pos, true
	}
	return h.pos, h.ok
}

// storeHead reads the last position of $all; an empty store is at 0.
func storeHead(ctx context.Context, conn *eventlog.Conn, timeout time.Duration) (uint64, error) {
	return eventlog.CallWithin(ctx, conn, timeout, eventlog.Op{Method: "ReadAll", Stream: eventlog.AllStream}, func(ctx context.Context, c *esdb.Client) (uint64, error) {
		p, _, err := eventlog.AllHead(ctx, c)
		return p.Commit, err
	})
}

// ProgressPrinter returns a Progress callback for humans. On a terminal
// (tty) it redraws one line with a bar per view, events/s and ETA, a few
// times a second; otherwise it logs a line per view every logEvery, and one
// when a view is done. It is safe for concurrent rebuilds.
func ProgressPrinter(w io.Writer, tty bool, log *slog.Logger) func(Progress) {
	pp := &printer{w: w, tty: tty, log: log, last: map[views.View]Progress{}, logged: map[views.View]time.Time{}}
	return pp.update
}

const (
	redrawEvery = 200 * time.Millisecond
	logEvery    = 5 * time.Second
)

type printer struct {
	mu     sync.Mutex
	w      io.Writer
	tty    bool
	log    *slog.Logger
	last   map[views.View]Progress
	drawn  time.Time
	logged map[views.View]time.Time
}

func (pp *printer) update(p Progress) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	pp.last[p.View] = p
	if !pp.tty {
		if p.Done || time.Since(pp.logged[p.View]) >= logEvery {
			pp.logged[p.View] = time.Now()
			pp.log.Info("rebuild progress", "view", string(p.View), "events", p.Events, "position", p.Position,
				"head", p.Head, "events_per_second", int64(p.Rate), "eta", p.ETA.Round(time.Second).String(), "done", p.Done)
		}
		return
	}
	if !p.Done && time.Since(pp.drawn) < redrawEvery {
		return
	}
	pp.drawn = time.Now()
	var line strings.Builder
	allDone := true
	for _, v := range views.All() {
		q, ok := pp.last[v]
		if !ok {
			continue
		}
		allDone = allDone && q.Done
		if line.Len() > 0 {
			line.WriteString("  |  ")
		}
		line.WriteString(formatProgress(q))
	}
	end := ""
	if allDone {
		end = "\n"
	}
	// \r and erase-line redraw in place.
	fmt.Fprintf(pp.w, "\r\x1b[K%s%s", line.String(), end)
}

func formatProgress(p Progress) string {
	const width = 20
	filled := int(p.Fraction() * width)
	bar := strings.Repeat("#", filled) + strings.Repeat(".", width-filled)
	var state string
	switch {
	case p.Done:
		state = "live"
	case p.Head > 0 && p.Position >= p.Head:
		state = "caught up, switching"
	case p.ETA > 0:
		state = "ETA " + p.ETA.Round(time.Second).String()
	default:
		state = "starting"
	}
	return fmt.Sprintf("%-9s [%s] %3.0f%% %d events %.0f ev/s %s", p.View, bar, 100*p.Fraction(), p.Events, p.Rate, state)
}
