package saga

import (
	"context"
	"fmt"

	"github.com/orderly/orderly/internal/command"
	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
)

// Step names; with the triggering event's ID they make the command ID
// (command.StepCommandID).
const (
	stepReserve = "reserve-credit"
	stepApprove = "approve-order"
	stepReject  = "reject-order"
	stepRelease = "release-credit"
)

// handle acts on one event. A domain refusal is an answer, not a failure:
// the expected ones drive the flow, and an unexpected one would be refused
// again on every retry, so it is logged and skipped. Anything else (the
// store, a conflict) is returned to be retried.
func (s *Saga) handle(ctx context.Context, rec eventlog.Recorded) error {
	switch e := rec.Event.(type) {
	case domain.OrderPlaced:
		_, err := s.commands.ReserveCredit(ctx, domain.ReserveCredit{CustomerID: e.CustomerID, OrderID: e.OrderID, Amount: e.Total}, meta(rec, stepReserve))
		return s.refusalIsFinal(rec, stepReserve, err)

	case domain.CreditReserved:
		_, err := s.commands.ApproveOrder(ctx, e.OrderID, meta(rec, stepApprove))
		if domain.KindOf(err) == domain.KindRejected {
			// The order stopped being PENDING while its credit was being
			// reserved: it was cancelled. Give the credit back.
			_, err = s.commands.ReleaseCredit(ctx, domain.ReleaseCredit{CustomerID: e.CustomerID, OrderID: e.OrderID}, meta(rec, stepRelease))
			return s.refusalIsFinal(rec, stepRelease, err)
		}
		return s.refusalIsFinal(rec, stepApprove, err)

	case domain.CreditLimitExceeded:
		reason := fmt.Sprintf("credit limit exceeded: order total %s, available %s", e.Amount, e.Available)
		_, err := s.commands.RejectOrder(ctx, e.OrderID, reason, meta(rec, stepReject))
		if domain.KindOf(err) == domain.KindRejected {
			return nil // cancelled meanwhile; no credit was held
		}
		return s.refusalIsFinal(rec, stepReject, err)

	case domain.OrderCancelled:
		_, err := s.commands.ReleaseCredit(ctx, domain.ReleaseCredit{CustomerID: e.CustomerID, OrderID: e.OrderID}, meta(rec, stepRelease))
		return s.refusalIsFinal(rec, stepRelease, err)
	}
	return nil
}

// meta is the metadata of the command a step issues: deterministic command
// ID, the triggering event as its cause, and the flow's correlation.
func meta(rec eventlog.Recorded, step string) eventcodec.Metadata {
	return eventcodec.Metadata{
		CommandID:     command.StepCommandID(step, rec.EventID),
		CausationID:   rec.EventID.String(),
		CorrelationID: rec.Meta.CorrelationID,
	}
}

// refusalIsFinal passes store failures through to be retried and drops
// unexpected domain refusals after logging them.
func (s *Saga) refusalIsFinal(rec eventlog.Recorded, step string, err error) error {
	if err == nil || domain.KindOf(err) == 0 {
		return err
	}
	s.metrics.failures.WithLabelValues("refused").Inc()
	s.log.Error("saga step refused; skipping it", "step", step, "event", rec.Type, "stream", rec.Stream,
		"revision", rec.Revision, "reason", domain.ReasonOf(err), "err", err)
	return nil
}
