package saga

import (
	"sync"

	"github.com/google/uuid"
)

// aheadCap bounds the events remembered as taken ahead. Past it the oldest
// are forgotten, and their delivery runs their step again, which finds it
// done by command ID: forgetting costs a store read, never a wrong answer.
const aheadCap = 1 << 16

// ahead remembers the events whose step a follow-up took successfully, until
// they are delivered, so the delivery can count them done without issuing
// the step's command again (an idempotent replay, but a store read and a
// lane's turn for nothing). It lives in memory only: after a restart every
// delivery runs its step, as it must.
type ahead struct {
	mu    sync.Mutex
	ids   map[uuid.UUID]struct{}
	order []uuid.UUID // ring of the IDs added, oldest at next once full
	next  int
}

func (a *ahead) add(id uuid.UUID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ids == nil {
		a.ids = make(map[uuid.UUID]struct{})
	}
	if len(a.order) < aheadCap {
		a.order = append(a.order, id)
	} else {
		delete(a.ids, a.order[a.next])
		a.order[a.next] = id
		a.next = (a.next + 1) % aheadCap
	}
	a.ids[id] = struct{}{}
}

// take reports whether id's step was taken ahead, and forgets it.
func (a *ahead) take(id uuid.UUID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.ids[id]
	delete(a.ids, id)
	return ok
}
