package saga_test

import (
	"fmt"
	"testing"

	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/command/commandtest"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/saga"
)

// TestCompensationsByCause pins each compensation (and rejection) to the
// path that issues it, by the causation its event carries. Outcomes alone
// cannot: a release issued on the wrong path (on OrderCancelled instead of
// on a CreditReserved that met a cancelled order) settles the same books.
// Each customer has its own lane, where events are handled in log order, so
// which event causes which is deterministic.
func TestCompensationsByCause(t *testing.T) {
	t.Parallel()
	env := commandtest.Start(t, command.Options{})

	// Written before the saga runs: a CreditReserved (taken as the saga
	// would) followed by the order's cancellation, so the saga handles the
	// reservation when its order is already cancelled; and an order over
	// the limit cancelled before the saga saw it.
	custReserved := env.RegisterCustomer(t, 10_000)
	reserved := cancelledWhileReserved(t, env, custReserved)
	custLate := env.RegisterCustomer(t, 1_000)
	refusedLate := place(t, env, custLate, 5_000)
	cancel(t, env, &refusedLate)

	s := startSaga(t, env, saga.Options{})
	custApproved := env.RegisterCustomer(t, 10_000)
	approved := place(t, env, custApproved, 3_000)
	eventually(t, converge, func() (bool, string) {
		st := env.Order(t, approved.id).Status
		return st == domain.StatusApproved, fmt.Sprintf("order is %v", st)
	})
	cancel(t, env, &approved)
	custRefused := env.RegisterCustomer(t, 1_000)
	refused := place(t, env, custRefused, 5_000)

	all := []placed{reserved, refusedLate, approved, refused}
	eventually(t, converge, func() (bool, string) { return settled(t, env, all) })

	t.Run("release of a reservation met by a cancelled order", func(t *testing.T) {
		h := histories(t, env, reserved)
		cause := h.one(t, domain.TypeCreditReserved)
		h.causedBy(t, domain.TypeCreditReleased, cause)
	})
	t.Run("release of a cancelled approved order", func(t *testing.T) {
		h := histories(t, env, approved)
		cause := h.one(t, domain.TypeOrderCancelled)
		h.causedBy(t, domain.TypeCreditReleased, cause)
		h.causedBy(t, domain.TypeOrderApproved, h.one(t, domain.TypeCreditReserved))
	})
	t.Run("rejection over the limit", func(t *testing.T) {
		h := histories(t, env, refused)
		exceeded := h.one(t, domain.TypeCreditLimitExceeded)
		h.causedBy(t, domain.TypeCreditLimitExceeded, h.one(t, domain.TypeOrderPlaced))
		h.causedBy(t, domain.TypeOrderRejected, exceeded)
		h.none(t, domain.TypeCreditReleased)
	})
	t.Run("over the limit and cancelled first: nothing to undo", func(t *testing.T) {
		h := histories(t, env, refusedLate)
		h.causedBy(t, domain.TypeCreditLimitExceeded, h.one(t, domain.TypeOrderPlaced))
		h.none(t, domain.TypeOrderRejected)
		h.none(t, domain.TypeCreditReleased)
	})
	if got := s.metric(t, "orderly_saga_errors_total") + s.metric(t, "orderly_saga_dead_letters_total"); got != 0 {
		t.Errorf("saga errors and dead letters = %v; want none", got)
	}
}

// history is what the log holds about one order: its own stream and the
// events of its customer's stream that name it.
type history []eventlog.Recorded

func histories(t *testing.T, env *commandtest.Env, o placed) history {
	t.Helper()
	h := history(env.History(t, eventlog.OrderStream(o.id)))
	for _, r := range env.History(t, eventlog.CustomerStream(o.customer)) {
		var about string
		switch e := r.Event.(type) {
		case domain.CreditReserved:
			about = e.OrderID
		case domain.CreditReleased:
			about = e.OrderID
		case domain.CreditLimitExceeded:
			about = e.OrderID
		}
		if about == o.id {
			h = append(h, r)
		}
	}
	return h
}

func (h history) all(typ string) []eventlog.Recorded {
	var out []eventlog.Recorded
	for _, r := range h {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

func (h history) one(t *testing.T, typ string) eventlog.Recorded {
	t.Helper()
	got := h.all(typ)
	if len(got) != 1 {
		t.Fatalf("%d %s events, want exactly one", len(got), typ)
	}
	return got[0]
}

func (h history) none(t *testing.T, typ string) {
	t.Helper()
	if got := h.all(typ); len(got) != 0 {
		t.Fatalf("%d %s events, want none", len(got), typ)
	}
}

// causedBy checks that exactly one event of type typ exists, caused by cause.
func (h history) causedBy(t *testing.T, typ string, cause eventlog.Recorded) {
	t.Helper()
	effect := h.one(t, typ)
	if effect.Meta.CausationID != cause.EventID.String() {
		by := "an event outside this order's history"
		for _, r := range h {
			if r.EventID.String() == effect.Meta.CausationID {
				by = r.Type
			}
		}
		t.Fatalf("%s was caused by %s (%s), want %s %s", typ, by, effect.Meta.CausationID, cause.Type, cause.EventID)
	}
}
