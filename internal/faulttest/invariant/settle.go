package invariant

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/saga"
)

// sagaReactsTo are the event types the credit saga acts on: once its
// checkpoint has passed the last of them, it has nothing left to do (each
// of its steps writes the event the next step reacts to before the step
// counts as finished).
var sagaReactsTo = map[string]bool{
	domain.TypeOrderPlaced: true, domain.TypeCreditReserved: true,
	domain.TypeCreditLimitExceeded: true, domain.TypeOrderCancelled: true,
}

// settledPoll is the pause between two looks at a system settling.
const settledPoll = 100 * time.Millisecond

// Which processors a wait is for.
type Which int

const (
	Saga Which = 1 << iota
	Views
	Both = Saga | Views
)

// Settle waits until the saga is idle — its saved checkpoints have passed
// the last event it reacts to — and the views' checkpoint has passed the
// last domain event. Stop the load first: it waits for a quiet system. It
// gives up with ctx, saying how far each got.
func Settle(ctx context.Context, src Sources) error { return SettleOf(ctx, src, Both) }

// SettleOf is Settle for the processors of which only.
func SettleOf(ctx context.Context, src Sources, which Which) error {
	t := time.NewTicker(settledPoll)
	defer t.Stop()
	var behind error // the last look's answer, not the deadline's
	for {
		err := settled(ctx, src, which)
		if err == nil {
			return nil
		}
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			behind = err // a call cut short by the deadline says nothing of how far they got
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("system not settled: %w (%w)", behind, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// settled is nil when which have caught up, or says how far they are.
func settled(ctx context.Context, src Sources, which Which) error {
	// The saga's checkpoint is read before the head: whatever a step it
	// counted wrote is then in the head read after.
	var sagaAt, viewsAt uint64
	var err error
	if which&Saga != 0 {
		if sagaAt, err = saga.Checkpoint(ctx, src.Leases, src.SagaProcessor); err != nil {
			return err
		}
	}
	lastReact, lastDomain, err := lastEvents(ctx, src.Store)
	if err != nil {
		return err
	}
	if which&Views != 0 {
		if viewsAt, err = src.Views.Checkpoint(ctx); err != nil {
			return err
		}
	}
	if (which&Saga == 0 || sagaAt >= lastReact) && (which&Views == 0 || viewsAt >= lastDomain) {
		return nil
	}
	return fmt.Errorf("saga checkpoint %d, last event it reacts to %d; views at %d, last domain event %d", sagaAt, lastReact, viewsAt, lastDomain)
}

// lastEvents reads $all backwards to the last event the saga reacts to,
// and returns its position and the last domain event's.
func lastEvents(ctx context.Context, c *esdb.Client) (lastReact, lastDomain uint64, err error) {
	rs, err := c.ReadAll(ctx, esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, ^uint64(0))
	if err != nil {
		return 0, 0, fmt.Errorf("read $all backwards: %w", err)
	}
	defer rs.Close()
	for {
		re, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return lastReact, lastDomain, nil
		}
		if err != nil {
			return 0, 0, fmt.Errorf("read $all backwards: %w", err)
		}
		ev := re.OriginalEvent()
		if !strings.HasPrefix(ev.EventType, "orderly.") {
			continue
		}
		if lastDomain == 0 {
			lastDomain = ev.Position.Commit
		}
		if sagaReactsTo[ev.EventType] {
			return ev.Position.Commit, lastDomain, nil
		}
	}
}
