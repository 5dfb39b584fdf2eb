package auth

import (
	"container/list"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxLimited bounds how many callers have a limiter at once. Past it the
// least recently seen caller's limiter is dropped: it was idle longest,
// and starts again with a full burst when it comes back. So many distinct
// addresses cost at most this many entries (some 200 bytes each).
const maxLimited = 10_000

// limiter holds a token bucket per caller (subject, or client address when
// anonymous), least recently used first out.
type limiter struct {
	limit rate.Limit
	burst int
	max   int

	mu      sync.Mutex
	byKey   map[string]*list.Element
	recency *list.List // of *limited, most recent first
}

type limited struct {
	key string
	lim *rate.Limiter
}

func newLimiter(perSecond float64, burst, max int) *limiter {
	return &limiter{limit: rate.Limit(perSecond), burst: burst, max: max, byKey: map[string]*list.Element{}, recency: list.New()}
}

// allow takes a token of key's bucket, or says how long until one is there.
func (l *limiter) allow(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var lim *rate.Limiter
	if e, found := l.byKey[key]; found {
		l.recency.MoveToFront(e)
		lim = e.Value.(*limited).lim
	} else {
		lim = rate.NewLimiter(l.limit, l.burst)
		l.byKey[key] = l.recency.PushFront(&limited{key: key, lim: lim})
		for l.recency.Len() > l.max {
			oldest := l.recency.Back()
			l.recency.Remove(oldest)
			delete(l.byKey, oldest.Value.(*limited).key)
		}
	}
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		// Refused calls take no token: a client that keeps retrying too
		// early is not pushed further back for it.
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}
