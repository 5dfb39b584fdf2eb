package projection

import (
	"testing"
	"time"

	"github.com/orderly/orderly/internal/views"
)

// What the benchmarks of package projection_test share with this package's.

// BenchAppend is one append of a generated history.
type BenchAppend = benchAppend

// BenchHistory generates a history of about n events (see benchHistory).
func BenchHistory(prefix string, n int) []BenchAppend { return benchHistory(prefix, n) }

// NewDiscardStore returns a view store that keeps only checkpoints.
func NewDiscardStore() views.Store { return newDiscardStore() }

// CPUMeter measures a benchmark's process CPU time while started.
type CPUMeter struct {
	used, since time.Duration
	running     bool
}

// Start starts (or resumes) measuring.
func (m *CPUMeter) Start() { m.since, m.running = processCPU(), true }

// Stop pauses measuring.
func (m *CPUMeter) Stop() {
	if m.running {
		m.used += processCPU() - m.since
		m.running = false
	}
}

// Report stops measuring and reports the CPU used per event as
// cpu-µs/event (nothing where CPU time is not measured).
func (m *CPUMeter) Report(b *testing.B, events int) {
	m.Stop()
	if m.used > 0 && events > 0 {
		b.ReportMetric(float64(m.used.Microseconds())/float64(events), "cpu-µs/event")
	}
}
