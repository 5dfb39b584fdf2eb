package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Summary is a run's result. Its JSON field names are stable: runs are
// compared by them.
type Summary struct {
	Config         SummaryConfig  `json:"config"`
	Started        time.Time      `json:"started"`
	Seconds        float64        `json:"seconds"` // of load, setup excluded
	Stopped        string         `json:"stopped"` // "duration" or "interrupted"
	Commands       OpGroup        `json:"commands"`
	Reads          OpGroup        `json:"reads"`
	OpenLoop       *OpenLoop      `json:"open_loop,omitempty"` // at a target rate only
	Decision       Decision       `json:"decision"`
	WriteToVisible WriteToVisible `json:"write_to_visible"`
	Lag            *Lag           `json:"lag,omitempty"`
	Drain          *Drain         `json:"drain,omitempty"`
	Errors         Errors         `json:"errors"`
}

// SummaryConfig is what the run was asked to do.
type SummaryConfig struct {
	Embedded        bool    `json:"embedded"`
	Clients         int     `json:"clients"`
	Rate            float64 `json:"rate"` // 0: flat out
	DurationSeconds float64 `json:"duration_seconds"`
	Customers       int     `json:"customers"`
	Mix             string  `json:"mix"`
	Seed            uint64  `json:"seed"`
	DecisionSample  float64 `json:"decision_sample"`
	VisibleSample   float64 `json:"visible_sample"`
}

// OpGroup is the commands or the reads: in total and by operation.
type OpGroup struct {
	Total OpStats            `json:"total"`
	ByOp  map[string]OpStats `json:"by_op"`
}

// OpStats is one operation's throughput and latency. OK counts successes;
// Refused, the expected refusals (both are in the latency); Errors, the
// unexpected errors; Skipped, operations with nothing to act on yet.
type OpStats struct {
	OK      uint64  `json:"ok"`
	Refused uint64  `json:"refused"`
	Errors  uint64  `json:"errors"`
	Skipped uint64  `json:"skipped"`
	PerSec  float64 `json:"per_sec"` // answered (OK + Refused) per second
	Latency Latency `json:"latency"`
}

// Latency is a distribution in milliseconds.
type Latency struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func latencyOf(s *Snapshot) Latency {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return Latency{Count: s.Count, P50: ms(s.Quantile(0.5)), P90: ms(s.Quantile(0.9)), P99: ms(s.Quantile(0.99)), Max: ms(s.Max)}
}

// OpenLoop tells whether the clients kept to the target rate: Late is how
// long after their due time operations were sent, Unsent how many were due
// before the end but not sent by then. Either high: too few clients for the
// rate, or a system too slow for it (its latencies say which).
type OpenLoop struct {
	Late   Latency `json:"late"`
	Unsent int64   `json:"unsent"`
}

// Samples accounts for the orders sampled for a measurement that gave no
// time.
type Samples struct {
	Cancelled uint64 `json:"cancelled_first,omitempty"`
	TimedOut  uint64 `json:"timed_out"`
	Busy      uint64 `json:"skipped_busy"`
	Failed    uint64 `json:"failed"`
	Cut       uint64 `json:"unfinished"`
}

func samplesOf(o *outcomes) Samples {
	return Samples{Cancelled: o.cancelled.Load(), TimedOut: o.timedOut.Load(), Busy: o.busy.Load(), Failed: o.failed.Load(), Cut: o.cut.Load()}
}

// Decision is PlaceOrder acknowledged → APPROVED or REJECTED readable from
// query-svc (WatchOrder), over a sample of the orders.
type Decision struct {
	Sample   float64 `json:"sample"`
	Approved uint64  `json:"approved"`
	Rejected uint64  `json:"rejected"`
	Latency  Latency `json:"latency"`
	Samples
}

// WriteToVisible is PlaceOrder acknowledged → GetOrder with min_position
// answered, over a sample of the orders.
type WriteToVisible struct {
	Sample  float64 `json:"sample"`
	Latency Latency `json:"latency"`
	Samples
}

// Lag is the saga's and the projector's lag from the metrics, scraped
// through the run.
type Lag struct {
	Scrapes int      `json:"scrapes"`
	Max     LagPoint `json:"max"`
	Final   LagPoint `json:"final"`
	// PacedOrders counts the PlaceOrder calls the saga held back while it
	// was behind (see -order-pace-lag), and PacedTimedOut those that went
	// ahead after the longest wait with it still behind.
	PacedOrders   float64 `json:"paced_orders"`
	PacedTimedOut float64 `json:"paced_timed_out"`
	Error         string  `json:"error,omitempty"` // the last scrape's failure
}

// LagPoint is one lag reading (or the worst of each figure).
type LagPoint struct {
	SagaSeconds      float64 `json:"saga_seconds"`
	SagaBacklog      float64 `json:"saga_backlog_positions"`
	ProjectorSeconds float64 `json:"projector_seconds"`
	ProjectorBacklog float64 `json:"projector_backlog_positions"`
}

func lagPoint(s lagSample) LagPoint {
	return LagPoint{SagaSeconds: s.sagaLag, SagaBacklog: s.sagaBacklog, ProjectorSeconds: s.projLag, ProjectorBacklog: s.projEvents}
}

// Drain is how long after the load every order of the run was decided and
// readable (none PENDING in the views).
type Drain struct {
	LimitSeconds float64 `json:"limit_seconds"`
	Cleared      bool    `json:"cleared"`
	Seconds      float64 `json:"seconds"`
}

// Errors counts errors by "operation code [reason]".
type Errors struct {
	Unexpected      map[string]uint64 `json:"unexpected"`
	UnexpectedTotal uint64            `json:"unexpected_total"`
	Expected        map[string]uint64 `json:"expected"`
	// Examples holds the first message of each kind of unexpected error.
	Examples map[string]string `json:"examples"`
}

// WriteJSON writes s as indented JSON.
func (s *Summary) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// WriteTable writes s for a person.
func (s *Summary) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	c := s.Config
	mode := "flat out"
	if c.Rate > 0 {
		mode = fmt.Sprintf("%.0f ops/s", c.Rate)
	}
	fmt.Fprintf(w, "orderly bench: %d clients, %s, %.1fs of load (%s), %d customers, mix %s\n\n",
		c.Clients, mode, s.Seconds, s.Stopped, c.Customers, c.Mix)
	fmt.Fprintln(tw, "operation\tok\trefused\terrors\tskipped\tper s\tp50 ms\tp90 ms\tp99 ms\tmax ms\t")
	group := func(title string, g OpGroup) {
		if len(g.ByOp) == 0 {
			return
		}
		for _, name := range slices.Sorted(maps.Keys(g.ByOp)) {
			row(tw, name, g.ByOp[name])
		}
		row(tw, title, g.Total)
	}
	group("commands", s.Commands)
	group("reads", s.Reads)
	if err := tw.Flush(); err != nil {
		return err
	}
	if o := s.OpenLoop; o != nil {
		fmt.Fprintf(w, "\nopen loop: sent late by p50 %.2f ms, p99 %.2f ms, max %.2f ms; %d due but unsent at the end\n",
			o.Late.P50, o.Late.P99, o.Late.Max, o.Unsent)
	}
	d := s.Decision
	fmt.Fprintf(w, "\ndecision (PlaceOrder ack → APPROVED/REJECTED readable, WatchOrder; sample %g):\n"+
		"  %d observed (%d approved, %d rejected); p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n"+
		"  not timed: %d timed out, %d cancelled first, %d skipped (watchers busy), %d failed, %d unfinished at stop\n",
		d.Sample, d.Latency.Count, d.Approved, d.Rejected, d.Latency.P50, d.Latency.P90, d.Latency.P99, d.Latency.Max,
		d.TimedOut, d.Cancelled, d.Busy, d.Failed, d.Cut)
	if d.Busy > 0 || d.TimedOut > 0 {
		fmt.Fprintln(w, "  (orders skipped or timed out are not in the percentiles: those understate)")
	}
	v := s.WriteToVisible
	fmt.Fprintf(w, "write-to-visible (PlaceOrder ack → GetOrder min_position answered; sample %g):\n"+
		"  %d observed; p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n"+
		"  not timed: %d timed out, %d skipped (probers busy), %d failed, %d unfinished at stop\n",
		v.Sample, v.Latency.Count, v.Latency.P50, v.Latency.P90, v.Latency.P99, v.Latency.Max, v.TimedOut, v.Busy, v.Failed, v.Cut)
	if l := s.Lag; l != nil {
		fmt.Fprintf(w, "lag (%d scrapes):  saga max %.2f s, final %.2f s (backlog max %.0f, final %.0f positions);  projector max %.2f s, final %.2f s (backlog max %.0f, final %.0f)\n",
			l.Scrapes, l.Max.SagaSeconds, l.Final.SagaSeconds, l.Max.SagaBacklog, l.Final.SagaBacklog,
			l.Max.ProjectorSeconds, l.Final.ProjectorSeconds, l.Max.ProjectorBacklog, l.Final.ProjectorBacklog)
		if l.PacedOrders > 0 {
			fmt.Fprintf(w, "  %.0f orders held back for the saga before they were placed (%.0f went ahead with it still behind): their acknowledgement latency includes the wait\n",
				l.PacedOrders, l.PacedTimedOut)
		}
		if l.Error != "" {
			fmt.Fprintf(w, "  last scrape failed: %s\n", l.Error)
		}
	} else {
		fmt.Fprintln(w, "lag: not measured (no -metrics)")
	}
	if dr := s.Drain; dr != nil {
		if dr.Cleared {
			fmt.Fprintf(w, "drain: every order decided and readable %.1f s after the load stopped\n", dr.Seconds)
		} else {
			fmt.Fprintf(w, "drain: orders still PENDING after %.1f s (the limit)\n", dr.Seconds)
		}
	}
	fmt.Fprintf(w, "errors: %d unexpected\n", s.Errors.UnexpectedTotal)
	writeCounts(w, "unexpected", s.Errors.Unexpected, s.Errors.Examples)
	writeCounts(w, "expected (refusals by design)", s.Errors.Expected, nil)
	return nil
}

func row(w io.Writer, name string, o OpStats) {
	l := o.Latency
	fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t\n",
		name, o.OK, o.Refused, o.Errors, o.Skipped, o.PerSec, l.P50, l.P90, l.P99, l.Max)
}

func writeCounts(w io.Writer, title string, m map[string]uint64, examples map[string]string) {
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int { return cmp.Or(cmp.Compare(m[b], m[a]), strings.Compare(a, b)) })
	for _, k := range keys {
		fmt.Fprintf(w, "  %s: %s %d\n", title, k, m[k])
		if e, ok := examples[k]; ok {
			fmt.Fprintf(w, "    first: %s\n", e)
		}
	}
}
