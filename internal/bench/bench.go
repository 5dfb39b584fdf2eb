// Package bench is `orderly bench`: a load generator that drives a running
// Orderly (or one it starts in-process) with a realistic mix of commands and
// reads, and measures what users feel: command and read latency, the time
// until an order's credit decision is readable, the time until a write is
// visible, and how far the saga and the projector fall behind.
package bench

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
)

// run is one bench run's shared state.
type run struct {
	cfg        Config
	runID      string
	commands   orderlyv1.CommandServiceClient
	queries    orderlyv1.QueryServiceClient
	http       *http.Client
	restOrders string // REST base URL + "/v1/orders/"
	payloads   *payloads
	customers  *pool[string]
	visible    *pool[string] // orders seen in the views, for reads
	watch      chan placed   // unbuffered: a send succeeds only to an idle watcher
	probe      chan placed   // likewise, to an idle prober
	scraper    *scraper
	stats      stats
	lastPlaced atomic.Uint64 // the highest position a PlaceOrder returned
}

// Run drives the system at t as cfg says until the load ends or ctx is
// cancelled (then it reports what it has), writing a live line to live
// every cfg.ReportEvery.
func Run(ctx context.Context, cfg Config, t Target, live io.Writer, log *slog.Logger) (*Summary, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	sec, err := newSecurity(cfg)
	if err != nil {
		return nil, err
	}
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	b := &run{
		cfg:        cfg,
		runID:      "bench-" + hex.EncodeToString(id),
		http:       &http.Client{Transport: sec.transport(&http.Transport{MaxIdleConnsPerHost: cfg.Clients + 2, IdleConnTimeout: time.Minute})},
		restOrders: strings.TrimSuffix(t.REST, "/") + "/v1/orders/",
		payloads:   newPayloads(mrand.New(mrand.NewPCG(cfg.Seed, 0))),
		customers:  newPool[string](2 * cfg.Customers),
		visible:    newPool[string](visiblePool),
		watch:      make(chan placed),
		probe:      make(chan placed),
		stats:      stats{errs: map[errKey]uint64{}, errExample: map[errKey]string{}},
	}
	defer b.http.CloseIdleConnections()
	cc, err := grpc.NewClient(t.Commands, sec.dialOptions()...)
	if err != nil {
		return nil, fmt.Errorf("commands at %s: %w", t.Commands, err)
	}
	defer cc.Close()
	qc, err := grpc.NewClient(t.Queries, sec.dialOptions()...)
	if err != nil {
		return nil, fmt.Errorf("queries at %s: %w", t.Queries, err)
	}
	defer qc.Close()
	b.commands, b.queries = orderlyv1.NewCommandServiceClient(cc), orderlyv1.NewQueryServiceClient(qc)
	if t.Metrics != "" {
		b.scraper = &scraper{url: t.Metrics, client: b.http}
	}

	setupStart := time.Now()
	if err := b.setup(ctx); err != nil {
		return nil, err
	}
	log.Info("setup done; load starting", "customers", b.customers.len(), "duration", cfg.Duration.String())
	stopProfile, err := startProfile(cfg.CPUProfile, cfg.ExecTrace)
	if err != nil {
		return nil, err
	}

	// Watchers and probers outlive the load: the orders of its last
	// moments are still being decided.
	sampleCtx, stopSamples := context.WithCancel(context.WithoutCancel(ctx))
	var samplers sync.WaitGroup
	for range cfg.Watchers {
		samplers.Go(func() { b.watchDecisions(sampleCtx) })
	}
	for range cfg.Probers {
		samplers.Go(func() { b.probeVisibility(sampleCtx) })
	}
	defer func() { stopSamples(); samplers.Wait() }()

	bgCtx, stopBG := context.WithCancel(ctx)
	var bg sync.WaitGroup
	if b.scraper != nil {
		bg.Go(func() { b.scrapeLoop(bgCtx, log) })
	}
	start := time.Now()
	if cfg.ReportEvery > 0 {
		bg.Go(func() { b.liveLoop(bgCtx, live, start) })
	}

	sched := newSchedule(start, cfg.Duration, cfg.Rate)
	var clients sync.WaitGroup
	for i := range cfg.Clients {
		c := newClient(b, i)
		clients.Go(func() { c.loop(ctx, sched) })
	}
	clients.Wait()
	elapsed := time.Since(start)
	if err := stopProfile(); err != nil {
		log.Error("cpu profile", "err", err)
	}
	if err := writeHeapProfile(cfg.MemProfile); err != nil {
		log.Error("heap profile", "err", err)
	}
	stopped := "duration"
	if ctx.Err() != nil {
		stopped = "interrupted"
	}
	var drain *Drain
	if cfg.Drain > 0 && ctx.Err() == nil {
		drain = b.drain(ctx, cfg.Drain, setupStart)
	}
	stopBG()
	bg.Wait()
	if b.scraper != nil {
		// One last reading, after the load (and the drain).
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.CallTimeout)
		_, _ = b.scraper.scrape(sctx)
		cancel()
	}
	stopSamples()
	samplers.Wait()
	return b.summary(start, elapsed, stopped, drain, sched.unsent()), nil
}

// setup registers the customers the load works on, cfg.Clients at a time.
func (b *run) setup(ctx context.Context) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan struct{})
	)
	for i := range b.cfg.Clients {
		c := newClient(b, -1-i) // ids apart from the load's clients
		wg.Go(func() {
			for range next {
				cctx, cancel := context.WithTimeout(ctx, b.cfg.CallTimeout)
				err := c.registerOne(cctx)
				cancel()
				if err != nil {
					mu.Lock()
					first = cmp.Or(first, fmt.Errorf("setup: register a customer: %w", err))
					mu.Unlock()
				}
			}
		})
	}
feed:
	for range b.cfg.Customers {
		select {
		case next <- struct{}{}:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = fmt.Errorf("setup interrupted: %w", ctx.Err())
	}
	return first
}

func (b *run) scrapeLoop(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(b.cfg.ScrapeEvery)
	defer t.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, b.cfg.CallTimeout)
		if _, err := b.scraper.scrape(sctx); err != nil && ctx.Err() == nil {
			log.Warn("metrics scrape failed", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// drainPoll is how often the drain looks for pending orders.
const drainPoll = 200 * time.Millisecond

// drain waits, up to limit, until no order placed by this run is PENDING in
// the views read at the position of the last order placed: every decision
// made and readable. (The saga's lag gauge cannot tell this: it moves only
// when the saga handles an event, and an order is decided by the saga's
// second step, on an event the saga itself appends after the load.)
func (b *run) drain(ctx context.Context, limit time.Duration, loadStart time.Time) *Drain {
	start := time.Now()
	d := &Drain{LimitSeconds: limit.Seconds()}
	req := &orderlyv1.ListOrdersRequest{Status: orderlyv1.OrderStatus_ORDER_STATUS_PENDING, PageSize: 1, MinPosition: b.lastPlaced.Load()}
	for {
		cctx, cancel := context.WithTimeout(ctx, b.cfg.CallTimeout)
		resp, err := b.queries.ListOrders(cctx, req)
		cancel()
		d.Seconds = time.Since(start).Seconds()
		if err == nil && (len(resp.GetOrders()) == 0 || resp.GetOrders()[0].GetCreatedAt().AsTime().Before(loadStart)) {
			d.Cleared = true
			return d
		}
		// Views too far behind for min_position within the call's
		// deadline are a slow drain, not an error: poll again.
		if err != nil && ctx.Err() == nil && codeOf(err) != codes.DeadlineExceeded {
			b.stats.fail("drain_list_orders", err)
		}
		if time.Since(start) >= limit {
			return d
		}
		select {
		case <-ctx.Done():
			return d
		case <-time.After(drainPoll):
		}
	}
}

// liveLoop writes one line per interval: the interval's rates and tails.
func (b *run) liveLoop(ctx context.Context, w io.Writer, start time.Time) {
	t := time.NewTicker(b.cfg.ReportEvery)
	defer t.Stop()
	var prevCmd, prevRead, prevDec, prevVis *Snapshot
	prevAt := start
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cmd, read := b.merged(false), b.merged(true)
			dec, vis := b.stats.decision.Snapshot(), b.stats.visible.Snapshot()
			iv := now.Sub(prevAt).Seconds()
			since := func(s, prev *Snapshot) *Snapshot {
				if prev == nil {
					return s
				}
				return s.Since(prev)
			}
			c, r, d, v := since(cmd, prevCmd), since(read, prevRead), since(dec, prevDec), since(vis, prevVis)
			line := fmt.Sprintf("%5.0fs  cmds %6.0f/s p99 %s | reads %6.0f/s p99 %s | decided %5d p99 %s | visible p99 %s",
				now.Sub(start).Seconds(), float64(c.Count)/iv, ms(c.Quantile(0.99)), float64(r.Count)/iv, ms(r.Quantile(0.99)),
				d.Count, ms(d.Quantile(0.99)), ms(v.Quantile(0.99)))
			if b.scraper != nil {
				_, _, last, err := b.scraper.summary()
				if err == nil {
					line += fmt.Sprintf(" | lag saga %.1fs proj %.1fs", last.sagaLag, last.projLag)
				}
			}
			fmt.Fprintf(w, "%s | unexpected errors %d\n", line, b.stats.unexpected())
			prevCmd, prevRead, prevDec, prevVis, prevAt = cmd, read, dec, vis, now
		}
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

// merged is every command's (or every read's) latency in one snapshot.
func (b *run) merged(reads bool) *Snapshot {
	var out *Snapshot
	for o := range numOps {
		if o.isRead() != reads {
			continue
		}
		s := b.stats.latency[o].Snapshot()
		if out == nil {
			out = s
			continue
		}
		out.add(s)
	}
	return out
}

func (b *run) summary(start time.Time, elapsed time.Duration, stopped string, drain *Drain, unsent int64) *Summary {
	c := b.cfg
	secs := elapsed.Seconds()
	s := &Summary{
		Config: SummaryConfig{Embedded: c.Embedded(), Clients: c.Clients, Rate: c.Rate, DurationSeconds: c.Duration.Seconds(),
			Customers: c.Customers, Mix: c.mix.String(), Seed: c.Seed, DecisionSample: c.DecisionSample, VisibleSample: c.VisibleSample},
		Started: start.UTC(), Seconds: secs, Stopped: stopped, Drain: drain,
		Errors: Errors{Unexpected: map[string]uint64{}, Expected: map[string]uint64{}, Examples: map[string]string{}},
	}
	// Errors by operation first: the per-operation rows count them.
	var refused, failed [numOps]uint64
	b.stats.errMu.Lock()
	for k, n := range b.stats.errs {
		name := k.op + " " + k.code.String()
		if k.reason != "" {
			name += " " + k.reason
		}
		o, isOp := lookupOp(k.op)
		if expected[k] {
			s.Errors.Expected[name] += n
			refused[o] += n
			continue
		}
		s.Errors.Unexpected[name] += n
		s.Errors.UnexpectedTotal += n
		s.Errors.Examples[name] = b.stats.errExample[k]
		if isOp {
			failed[o] += n
		}
	}
	b.stats.errMu.Unlock()

	group := func(reads bool) OpGroup {
		g := OpGroup{ByOp: map[string]OpStats{}}
		for o := range numOps {
			if o.isRead() != reads || !c.mix.has(o) {
				continue
			}
			lat := b.stats.latency[o].Snapshot()
			st := OpStats{OK: b.stats.ok[o].Load(), Refused: refused[o], Errors: failed[o], Skipped: b.stats.skipped[o].Load(),
				PerSec: float64(lat.Count) / secs, Latency: latencyOf(lat)}
			g.ByOp[o.String()] = st
			g.Total.OK += st.OK
			g.Total.Refused += st.Refused
			g.Total.Errors += st.Errors
			g.Total.Skipped += st.Skipped
		}
		all := b.merged(reads)
		g.Total.PerSec, g.Total.Latency = float64(all.Count)/secs, latencyOf(all)
		return g
	}
	s.Commands, s.Reads = group(false), group(true)
	if c.Rate > 0 {
		s.OpenLoop = &OpenLoop{Late: latencyOf(b.stats.late.Snapshot()), Unsent: unsent}
	}
	dec := b.stats.decision.Snapshot()
	s.Decision = Decision{Sample: c.DecisionSample, Approved: b.stats.decided[0].Load(), Rejected: b.stats.decided[1].Load(),
		Latency: latencyOf(dec), Samples: samplesOf(&b.stats.undecided)}
	s.WriteToVisible = WriteToVisible{Sample: c.VisibleSample, Latency: latencyOf(b.stats.visible.Snapshot()), Samples: samplesOf(&b.stats.invisible)}
	if b.scraper != nil {
		n, worst, final, err := b.scraper.summary()
		s.Lag = &Lag{Scrapes: n, Max: lagPoint(worst), Final: lagPoint(final)}
		s.Lag.PacedOrders, s.Lag.PacedTimedOut = b.scraper.paced()
		if err != nil {
			s.Lag.Error = err.Error()
		}
	}
	return s
}

// writeHeapProfile writes the heap as the load leaves it to path, when set.
// The GC first makes in-use figures those of live objects, not of garbage
// the last cycle had yet to find; it is taken before the drain, so what it
// shows is what the load kept, not what the drain's reads add.
func writeHeapProfile(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	return errors.Join(pprof.Lookup("heap").WriteTo(f, 0), f.Close())
}

// startProfile profiles the whole process (the embedded system and the
// bench) into cpuPath and traces it into tracePath, each when set, until the
// returned stop.
func startProfile(cpuPath, tracePath string) (stop func() error, err error) {
	var stops []func() error
	stop = func() error {
		var errs []error
		for _, s := range slices.Backward(stops) {
			errs = append(errs, s())
		}
		return errors.Join(errs...)
	}
	for _, p := range []struct {
		path, what   string
		start        func(io.Writer) error
		stopRecorder func()
	}{
		{cpuPath, "cpu profile", pprof.StartCPUProfile, pprof.StopCPUProfile},
		{tracePath, "execution trace", trace.Start, trace.Stop},
	} {
		if p.path == "" {
			continue
		}
		f, err := os.Create(p.path)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("%s: %w", p.what, err), stop())
		}
		if err := p.start(f); err != nil {
			return nil, errors.Join(fmt.Errorf("%s: %w", p.what, err), f.Close(), stop())
		}
		stops = append(stops, func() error { p.stopRecorder(); return f.Close() })
	}
	return stop, nil
}
