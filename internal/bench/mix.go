package bench

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
)

// op is one kind of operation the clients send.
type op int

const (
	opRegister op = iota
	opPlace
	opPlaceOver
	opCancel
	opCreditLimit
	opGetOrder
	opListOrders
	opGetOrderREST
	numOps
)

// opNames are the names of the operations in -mix and in the report. They
// are part of the -json format: do not rename them.
var opNames = [numOps]string{
	opRegister:     "register",
	opPlace:        "place",
	opPlaceOver:    "place_over",
	opCancel:       "cancel",
	opCreditLimit:  "credit_limit",
	opGetOrder:     "get_order",
	opListOrders:   "list_orders",
	opGetOrderREST: "get_order_rest",
}

func (o op) String() string { return opNames[o] }

// isRead tells the reads, reported apart from the commands.
func (o op) isRead() bool { return o >= opGetOrder }

// DefaultMix is mostly orders, some of them over the limit, with the cancels,
// limit changes and registrations of a live shop and a read-heavy query side.
const DefaultMix = "place=50,place_over=5,cancel=5,credit_limit=3,register=2,get_order=15,list_orders=5,get_order_rest=15"

// mix draws operations in proportion to their weights.
type mix struct {
	cumulative [numOps]int // running total of the weights, in op order
	weights    [numOps]int
}

// parseMix reads "name=weight,..."; an operation left out has weight 0.
func parseMix(spec string) (mix, error) {
	var m mix
	seen := map[string]bool{}
	for part := range strings.SplitSeq(spec, ",") {
		name, w, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return m, fmt.Errorf("mix %q: %q is not name=weight", spec, part)
		}
		o, found := lookupOp(name)
		if !found {
			return m, fmt.Errorf("mix %q: unknown operation %q (known: %s)", spec, name, strings.Join(opNames[:], ", "))
		}
		if seen[name] {
			return m, fmt.Errorf("mix %q: %s given twice", spec, name)
		}
		seen[name] = true
		n, err := strconv.Atoi(w)
		if err != nil || n < 0 || n > 1_000_000 {
			return m, fmt.Errorf("mix %q: weight of %s must be an integer from 0 to 1000000", spec, name)
		}
		m.weights[o] = n
	}
	total := 0
	for o := range numOps {
		total += m.weights[o]
		m.cumulative[o] = total
	}
	if total == 0 {
		return m, fmt.Errorf("mix %q: every weight is 0", spec)
	}
	return m, nil
}

func lookupOp(name string) (op, bool) {
	for o, n := range opNames {
		if n == name {
			return op(o), true
		}
	}
	return 0, false
}

func (m *mix) has(o op) bool { return m.weights[o] > 0 }

func (m *mix) hasReads() bool {
	return m.has(opGetOrder) || m.has(opListOrders) || m.has(opGetOrderREST)
}

func (m *mix) draw(r *rand.Rand) op {
	n := r.IntN(m.cumulative[numOps-1])
	return op(sort.SearchInts(m.cumulative[:], n+1))
}

// String is the mix in -mix syntax, weights of 0 left out.
func (m *mix) String() string {
	var parts []string
	for o := range numOps {
		if m.weights[o] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", o, m.weights[o]))
		}
	}
	return strings.Join(parts, ",")
}
