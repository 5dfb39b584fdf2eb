package bench

import (
	"strings"
	"testing"
)

// The lag figures come out of a page as the system writes it: the worst
// projector view, and the saga's distance from the furthest head known.
func TestLagOf(t *testing.T) {
	page := `# HELP orderly_saga_lag_seconds Age of the event.
# TYPE orderly_saga_lag_seconds gauge
orderly_saga_lag_seconds 2.5
orderly_saga_position 900
orderly_projector_checkpoint_position{run="live",view="customers"} 1000
orderly_projector_checkpoint_position{run="live",view="orders"} 950
orderly_projector_lag_events{run="live",view="customers"} 0
orderly_projector_lag_events{run="live",view="orders"} 100
orderly_projector_lag_seconds{run="live",view="customers"} 0
orderly_projector_lag_seconds{run="live",view="orders"} 0.75 1700000000000
orderly_saga_events_handled_total{type="orderly.OrderPlaced"} 12
orderly_saga_paced_orders_total 7
orderly_saga_paced_orders_timed_out_total 2
`
	want := func(name string) bool {
		return strings.HasPrefix(name, "orderly_saga_lag") || strings.HasPrefix(name, "orderly_saga_position") ||
			strings.HasPrefix(name, "orderly_saga_paced") || strings.HasPrefix(name, "orderly_projector_")
	}
	series, err := parseMetrics(strings.NewReader(page), want)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := lagOf(series)
	if !ok {
		t.Fatal("no saga found")
	}
	if s != (lagSample{sagaLag: 2.5, sagaBacklog: 150, projLag: 0.75, projEvents: 100, paced: 7, pacedOut: 2}) {
		t.Fatalf("got %+v", s)
	}
	if _, ok := lagOf(map[string]float64{}); ok {
		t.Fatal("a page without the saga gives a sample")
	}
	if _, err := parseMetrics(strings.NewReader("orderly_saga_lag_seconds x\n"), want); err == nil {
		t.Fatal("a value that is not a number is accepted")
	}
}
