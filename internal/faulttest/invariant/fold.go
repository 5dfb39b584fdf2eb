// Package invariant checks what Orderly promises once the dust of a fault
// has settled, by pure reads: it folds the whole event store ($all, through
// the official client) with the domain's own aggregates and compares the
// fold with the views and with the commands the clients saw acknowledged.
//
//   - every view document equals the fold of its stream, and the views hold
//     no document the store has no stream for;
//   - each customer's reserved credit is the sum of its APPROVED orders'
//     totals, and exactly those orders hold a reservation;
//   - no order is PENDING (once the saga is idle: see Settle);
//   - every acknowledged command's events are in the store where its
//     answer said, written whole: one run of consecutive revisions, ending
//     at the acknowledged one; every stream's revisions have no gap, and
//     every event decodes.
//
// The fold is deliberately not the projector's: it uses the domain
// aggregates (domain.Order, domain.Customer), so a bug in the projection's
// fold, batching or checkpoints shows as a difference.
package invariant

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderly/orderly/internal/domain"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventlog"
)

// stored is what the fold keeps of each event of an aggregate stream.
type stored struct {
	position  uint64
	commandID string
}

// head is what every folded document shares: when its stream was created
// and last written, and the last event's revision and position.
type head struct {
	createdAt, updatedAt time.Time
	created, revision    uint64 // created: position of the creating event
	position             uint64
}

func (h *head) advance(rec eventlog.Recorded, creates bool) {
	if creates {
		h.createdAt, h.created = rec.RecordedAt, rec.Position
	}
	h.updatedAt, h.revision, h.position = rec.RecordedAt, rec.Revision, rec.Position
}

type order struct {
	*domain.Order
	head
}

type customer struct {
	*domain.Customer
	head
	// decided counts each order's credit decisions (reserved or exceeded).
	decided map[string]int
}

// fold is the state of the store as the domain sees it.
type fold struct {
	events    int
	orders    map[string]*order
	customers map[string]*customer
	// streams holds each aggregate stream's events by revision.
	streams  map[string][]stored
	problems []string
}

func (f *fold) problem(format string, args ...any) {
	f.problems = append(f.problems, fmt.Sprintf(format, args...))
}

// readFold reads $all from the start and folds every aggregate stream.
func readFold(ctx context.Context, c *esdb.Client) (*fold, error) {
	f := &fold{orders: map[string]*order{}, customers: map[string]*customer{}, streams: map[string][]stored{}}
	rs, err := c.ReadAll(ctx, esdb.ReadAllOptions{Direction: esdb.Forwards, From: esdb.Start{}}, ^uint64(0))
	if err != nil {
		return nil, fmt.Errorf("read $all: %w", err)
	}
	defer rs.Close()
	reg := eventcodec.Default()
	var last uint64
	for {
		re, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return f, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read $all after position %d: %w", last, err)
		}
		raw := re.OriginalEvent()
		f.events++
		if f.events > 1 && raw.Position.Commit <= last {
			f.problem("$all goes back: position %d after %d", raw.Position.Commit, last)
		}
		last = raw.Position.Commit
		f.add(reg, raw)
	}
}

// add folds one event of $all; events outside the aggregate streams
// (checkpoints, snapshot pages) only count.
func (f *fold) add(reg *eventcodec.Registry, raw *esdb.RecordedEvent) {
	prefix, id, ok := eventlog.StreamID(raw.StreamID)
	if !ok {
		return
	}
	rec, err := eventlog.Decode(reg, raw)
	if err != nil {
		f.problem("undecodable: %v", err)
	}
	if rec.Event == nil && err == nil {
		f.problem("event %s@%d has a type this build does not know: %s", rec.Stream, rec.Revision, rec.Type)
	}
	evs := f.streams[rec.Stream]
	if rec.Revision != uint64(len(evs)) {
		f.problem("stream %s: revision %d follows %d events (a gap or a repeat)", rec.Stream, rec.Revision, len(evs))
	}
	f.streams[rec.Stream] = append(evs, stored{position: rec.Position, commandID: rec.Meta.CommandID})
	if rec.Event == nil {
		return
	}
	switch prefix {
	case eventlog.OrderPrefix:
		o := f.orders[id]
		if o == nil {
			o = &order{Order: domain.NewOrder(id)}
			f.orders[id] = o
		}
		o.Apply(rec.Event)
		o.advance(rec, rec.Type == domain.TypeOrderPlaced)
	case eventlog.CustomerPrefix:
		c := f.customers[id]
		if c == nil {
			c = &customer{Customer: domain.NewCustomer(id), decided: map[string]int{}}
			f.customers[id] = c
		}
		c.Apply(rec.Event)
		c.advance(rec, rec.Type == domain.TypeCustomerRegistered)
		switch e := rec.Event.(type) {
		case domain.CreditReserved:
			c.decided[e.OrderID]++
		case domain.CreditLimitExceeded:
			c.decided[e.OrderID]++
		}
	}
}
