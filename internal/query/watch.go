package query

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/apierr"
	"github.com/orderly/orderly/internal/eventlog"
	"github.com/orderly/orderly/internal/views"
)

// hub fans one subscription to the order streams out to every WatchOrder
// call: a thousand watchers cost one subscription, and a watcher wakes only
// when its own order changes.
type hub struct {
	store *eventlog.Conn
	log   *slog.Logger
	// timeout bounds reading the head and opening a subscription.
	timeout time.Duration

	mu       sync.Mutex
	watchers map[string]map[*watcher]struct{} // by order ID
	ready    chan struct{}                    // closed once the first subscription is confirmed
	done     chan struct{}                    // closed when run returns
}

// watcher receives the commit position of its order's latest event. The
// channel holds one value and a newer one replaces it, so a slow client
// never blocks the hub: it just skips to the latest state.
type watcher struct {
	positions chan uint64
}

func newHub(store *eventlog.Conn, log *slog.Logger, timeout time.Duration) *hub {
	return &hub{store: store, log: log, timeout: timeout, watchers: map[string]map[*watcher]struct{}{},
		ready: make(chan struct{}), done: make(chan struct{})}
}

func (h *hub) add(orderID string) *watcher {
	w := &watcher{positions: make(chan uint64, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.watchers[orderID] == nil {
		h.watchers[orderID] = map[*watcher]struct{}{}
	}
	h.watchers[orderID][w] = struct{}{}
	return w
}

func (h *hub) remove(orderID string, w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.watchers[orderID], w)
	if len(h.watchers[orderID]) == 0 {
		delete(h.watchers, orderID)
	}
}

func (h *hub) notify(orderID string, pos uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers[orderID] {
		select {
		case <-w.positions: // drop the older position: the newer one covers it
		default:
		}
		w.positions <- pos
	}
}

// run follows the order streams from the head until ctx ends, resubscribing
// after a drop from the last position seen, with capped backoff.
func (h *hub) run(ctx context.Context) error {
	defer close(h.done)
	var from esdb.AllPosition // the last position seen, once there is one
	backoff := 50 * time.Millisecond
	var once sync.Once
	for {
		start := from
		if start == nil {
			// Not End: a subscription dropped before its first event or
			// checkpoint would resume at the new end and never announce
			// what was appended meanwhile.
			start = h.head(ctx)
		}
		last, err := h.follow(ctx, start, func() { once.Do(func() { close(h.ready) }) })
		if ctx.Err() != nil {
			return nil
		}
		if last != nil {
			from, backoff = *last, 50*time.Millisecond
		} else if _, atEnd := start.(esdb.End); !atEnd {
			from = start
		}
		h.log.Warn("order watch subscription dropped; resubscribing", "err", err, "backoff", backoff.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// head is where a subscription following the store from now starts: after
// its last event, at the start of an empty store, or (the store not
// answering) at its end.
func (h *hub) head(ctx context.Context) esdb.AllPosition {
	from, err := eventlog.CallWithin(ctx, h.store, h.timeout, eventlog.Op{Method: "ReadAll", Stream: eventlog.AllStream}, func(ctx context.Context, c *esdb.Client) (esdb.AllPosition, error) {
		p, ok, err := eventlog.AllHead(ctx, c)
		if !ok {
			return esdb.Start{}, err
		}
		return p, err
	})
	if err != nil {
		return esdb.End{}
	}
	return from
}

// follow serves one subscription, calling confirmed once it is; it returns
// the last position seen.
func (h *hub) follow(ctx context.Context, from esdb.AllPosition, confirmed func()) (*esdb.Position, error) {
	// A subscription that hangs is cut at h.timeout, and run subscribes again.
	subCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sub, err := eventlog.SubscribeToAll(subCtx, func() { cancel(eventlog.ErrTimeout) }, h.store, h.timeout, esdb.SubscribeToAllOptions{
		From:   from,
		Filter: &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{eventlog.OrderPrefix}},
	})
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	confirmed()
	var last *esdb.Position
	for {
		ev := sub.Recv()
		switch {
		case ev.EventAppeared != nil:
			rec := ev.EventAppeared.OriginalEvent()
			if _, id, ok := eventlog.StreamID(rec.StreamID); ok {
				h.notify(id, rec.Position.Commit)
			}
			p := rec.Position
			last = &p
		case ev.CheckPointReached != nil:
			p := *ev.CheckPointReached
			last = &p
		case ev.SubscriptionDropped != nil:
			return last, ev.SubscriptionDropped.Error
		}
	}
}

// WatchOrder sends the order view now, then each time it changes, until the
// client cancels or the server stops.
func (s *Service) WatchOrder(req *orderlyv1.WatchOrderRequest, stream orderlyv1.QueryService_WatchOrderServer) error {
	ctx := stream.Context()
	id := req.GetOrderId()
	if err := checkOrderID(id); err != nil {
		return err
	}
	if err := s.await(ctx, req.GetMinPosition()); err != nil {
		return err
	}
	// The first answer is bounded as a min_position wait is: a client that
	// set no deadline learns within max-wait that the store or the views are
	// not answering, rather than wait without a word.
	first := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		first, cancel = context.WithTimeout(ctx, s.maxWait)
		defer cancel()
	}
	// With the hub subscribed, every change after registration is announced;
	// one announced and also read first is skipped by revision.
	select {
	case <-s.hub.ready:
	case <-s.hub.done:
		return status.Error(codes.Unavailable, "server is shutting down; watch again")
	case <-first.Done(): // the store is unreachable
		return apierr.From(ctx, s.log, eventlog.ErrTimeout, "watch order: waiting for the event store")
	}
	w := s.hub.add(id)
	defer s.hub.remove(id, w)

	var sent *uint64
	send := func() error {
		doc, err := s.views.GetOrder(ctx, id)
		if errors.Is(err, views.ErrNotFound) {
			return nil // placed but not projected yet: its event will wake us
		}
		if err != nil {
			return s.viewErr(ctx, err, "watch order")
		}
		if sent != nil && doc.Revision <= *sent {
			return nil
		}
		if err := stream.Send(&orderlyv1.WatchOrderResponse{Order: orderPB(doc)}); err != nil {
			return err
		}
		sent = &doc.Revision
		return nil
	}
	// A change recorded before the watch was registered was announced to
	// no one, and the views may not show it yet: the first read waits for
	// the views to reach the order's last event.
	head, err := s.orderHead(first, id)
	if err != nil {
		return err
	}
	if seen, err := views.WaitCheckpoint(first, s.views, s.notifier, head); err != nil {
		switch {
		case ctx.Err() != nil:
			return nil
		case first.Err() != nil:
			return status.Errorf(codes.DeadlineExceeded, "views have not reached the order's last event at %d yet (they are at %d); watch again later", head, seen)
		}
		return s.viewErr(ctx, err, "watch order")
	}
	if err := send(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.hub.done:
			return status.Error(codes.Unavailable, "server is shutting down; watch again")
		case pos := <-w.positions:
			if _, err := views.WaitCheckpoint(ctx, s.views, s.notifier, pos); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return s.viewErr(ctx, err, "watch order")
			}
			if err := send(); err != nil {
				return err
			}
		}
	}
}

// orderHead is the commit position of the order's last event; an order
// that was never placed is NotFound.
func (s *Service) orderHead(ctx context.Context, id string) (uint64, error) {
	stream := eventlog.OrderStream(id)
	pos, err := storeCall(ctx, s, eventlog.Op{Method: "ReadStream", Stream: stream}, func(ctx context.Context, c *esdb.Client) (uint64, error) {
		return eventlog.Head(ctx, c, stream)
	})
	switch {
	case errors.Is(err, eventlog.ErrStreamNotFound):
		return 0, status.Errorf(codes.NotFound, "order %s not found", id)
	case err != nil:
		return 0, apierr.From(ctx, s.log, err, "watch order "+id)
	}
	return pos, nil
}
