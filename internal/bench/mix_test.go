package bench

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// Draws follow the weights; an operation left out is never drawn.
func TestMixDraw(t *testing.T) {
	m, err := parseMix("place=6, cancel=3,get_order_rest=1")
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	var n [numOps]int
	const draws = 100_000
	for range draws {
		n[m.draw(r)]++
	}
	for o, want := range map[op]float64{opPlace: 0.6, opCancel: 0.3, opGetOrderREST: 0.1} {
		if got := float64(n[o]) / draws; got < want-0.01 || got > want+0.01 {
			t.Errorf("%s drawn %.3f of the time, want %.1f", o, got, want)
		}
	}
	if n[opPlace]+n[opCancel]+n[opGetOrderREST] != draws {
		t.Errorf("operations outside the mix drawn: %v", n)
	}
	if got := m.String(); got != "place=6,cancel=3,get_order_rest=1" {
		t.Errorf("String() = %q", got)
	}
}

func TestMixErrors(t *testing.T) {
	for spec, want := range map[string]string{
		"place":           "not name=weight",
		"ship=1":          "unknown operation",
		"place=1,place=2": "given twice",
		"place=-1":        "integer from 0",
		"place=0":         "every weight is 0",
	} {
		if _, err := parseMix(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseMix(%q) = %v, want an error with %q", spec, err, want)
		}
	}
	if _, err := parseMix(DefaultMix); err != nil {
		t.Errorf("default mix: %v", err)
	}
}
