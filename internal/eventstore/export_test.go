package eventstore

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// GroupCommits reports how many groups s has committed and how many ops
// they answered, so benchmarks can show what group commit did.
func GroupCommits(s *Server) (groups, ops uint64) {
	return s.seq.groups.Load(), s.seq.grouped.Load()
}

// SetHandlerHook makes fn run before every handler of s, inside its panic
// recovery, so a test can make a handler panic.
func SetHandlerHook(s *Server, fn func(method string)) {
	s.testHook.Store(&fn)
}

// Panics, SlowDrops and Refused read s's counters of the same names.
func Panics(t testing.TB, s *Server) float64 { return counterValue(t, s.metrics.panics) }

func SlowDrops(t testing.TB, s *Server) float64 {
	return counterValue(t, s.metrics.drops.WithLabelValues(dropSlow))
}

func Refused(t testing.TB, s *Server) float64 { return counterValue(t, s.metrics.refused) }

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
