package bench

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// stats is everything a run measures; every field is safe for concurrent use.
type stats struct {
	latency [numOps]Histogram // answered calls, from their due time
	ok      [numOps]atomic.Uint64
	// skipped counts operations with nothing to act on yet (a cancel before
	// any order was placed, a read before any order was seen in the views).
	skipped [numOps]atomic.Uint64
	// late is how long after its due time each operation was sent, at a
	// target rate: when it grows, the clients are too few for the rate.
	late Histogram

	decision  Histogram        // PlaceOrder acknowledged → APPROVED/REJECTED readable
	decided   [2]atomic.Uint64 // approved, rejected
	undecided outcomes
	visible   Histogram // PlaceOrder acknowledged → GetOrder with min_position answered
	invisible outcomes
	errMu     sync.Mutex
	errs      map[errKey]uint64
	// errExample is the message of the first error of each kind: the code
	// alone rarely says what went wrong.
	errExample map[errKey]string
}

// outcomes counts samples that gave no time.
type outcomes struct {
	cancelled atomic.Uint64 // the order was cancelled before it was decided
	timedOut  atomic.Uint64 // DeadlineExceeded: the system did not answer in time
	busy      atomic.Uint64 // every watcher or prober was busy: not sampled
	failed    atomic.Uint64 // any other error (also in errs)
	cut       atomic.Uint64 // still waiting when the bench stopped
}

// errKey is one kind of error: the operation, the gRPC code and, for a
// business refusal, its google.rpc.ErrorInfo reason.
type errKey struct {
	op     string
	code   codes.Code
	reason string
}

// expected are the refusals the mix provokes by design: a cancel may find
// its order already rejected, and a lower credit limit may fall below what
// is reserved.
var expected = map[errKey]bool{
	{opNames[opCancel], codes.FailedPrecondition, "ORDER_REJECTED"}:                   true,
	{opNames[opCreditLimit], codes.FailedPrecondition, "CREDIT_LIMIT_BELOW_RESERVED"}: true,
}

func keyOf(opName string, err error) errKey {
	st := status.Convert(err)
	k := errKey{op: opName, code: codeOf(err)}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			k.reason = info.GetReason()
		}
	}
	return k
}

// codeOf is err's gRPC code, also for a REST call past its deadline.
func codeOf(err error) codes.Code {
	if errors.Is(err, context.DeadlineExceeded) {
		return codes.DeadlineExceeded
	}
	return status.Code(err)
}

// fail records an error and reports whether it was an expected refusal.
func (s *stats) fail(opName string, err error) bool {
	k := keyOf(opName, err)
	s.errMu.Lock()
	if s.errs[k] == 0 {
		s.errExample[k] = err.Error()
	}
	s.errs[k]++
	s.errMu.Unlock()
	return expected[k]
}

func (s *stats) unexpected() uint64 {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	var n uint64
	for k, c := range s.errs {
		if !expected[k] {
			n += c
		}
	}
	return n
}

// pool holds up to a fixed number of items for clients to pick at random;
// once full, a new item replaces the oldest, so it stays fresh and bounded.
type pool[T any] struct {
	mu    sync.RWMutex
	items []T
	limit int
	next  int // the oldest item, once full
}

func newPool[T any](limit int) *pool[T] { return &pool[T]{limit: limit} }

func (p *pool[T]) add(v T) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.items) < p.limit {
		p.items = append(p.items, v)
		return
	}
	p.items[p.next] = v
	p.next = (p.next + 1) % p.limit
}

func (p *pool[T]) pick(r *rand.Rand) (T, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if len(p.items) == 0 {
		var zero T
		return zero, false
	}
	return p.items[r.IntN(len(p.items))], true
}

func (p *pool[T]) len() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.items)
}
