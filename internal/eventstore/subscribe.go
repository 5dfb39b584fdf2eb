package eventstore

import (
	"math"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/cockroachdb/pebble/v2"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// subscribe catches up from storage, then switches to the live feed.
//
// Catch-up reads events up to the broker's head, then tries to join the
// broker at that head; if something was published meanwhile it reads on and
// tries again. Every event is therefore delivered once, in order, whether it
// came from storage or from the live feed.
func (s *Server) subscribe(o *streams.ReadReq_Options, w *eventWriter) error {
	ctx := w.out.Context()
	catchUp, live, stream, err := s.catchUpFunc(o, w)
	if err != nil {
		return err
	}
	sub := newSubscriber(s.cfg.SubscriberBufferBytes)
	defer s.broker.leave(sub)
	if err := w.out.Send(&streams.ReadResp{Content: &streams.ReadResp_Confirmation{Confirmation: &streams.ReadResp_SubscriptionConfirmation{
		SubscriptionId: uuid.NewString(),
	}}}); err != nil {
		return err
	}

	for {
		head := s.broker.Head()
		seen, err := catchUp(head)
		if err != nil {
			return statusFor(ctx, s.log, stream, err)
		}
		joined, err := s.broker.join(sub, head)
		if err != nil {
			return statusFor(ctx, s.log, stream, err)
		}
		if joined {
			// A start past the head has not seen up to head: a checkpoint
			// there would resume it before its start.
			if seen == head {
				if err := w.checkpoint(head); err != nil {
					return err
				}
			}
			break
		}
	}
	if err := w.out.Send(&streams.ReadResp{Content: &streams.ReadResp_CaughtUp_{CaughtUp: &streams.ReadResp_CaughtUp{}}}); err != nil {
		return err
	}

	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-sub.notify:
		}
		entries, err := sub.take()
		if err != nil {
			s.log.Warn("subscription dropped", "stream", stream, "err", err)
			return err
		}
		live.observe(entries)
		now := time.Now()
		for _, e := range entries {
			if keep, err := live.keeps(e, now); err != nil || !keep {
				if err != nil {
					return statusFor(ctx, s.log, stream, err)
				}
				continue
			}
			if err := w.deliver(e); err != nil {
				return err
			}
		}
	}
}

// catchUpFunc validates the subscription's start and returns the function
// that delivers stored events up to a head position, resuming where the
// previous call stopped (it returns the position it has seen up to), and the
// filter of the live feed after catch-up. Starting points are exclusive, as
// in EventStoreDB, and a start past the end delivers only what comes after
// it: the live filter is what holds back the events between the head and
// such a start. Catch-up reads the durable view, which holds every event up
// to the head (it advances before the head is published).
func (s *Server) catchUpFunc(o *streams.ReadReq_Options, w *eventWriter) (catchUp func(head uint64) (seen uint64, err error), live liveFilter, stream string, err error) {
	if o.GetReadDirection() != streams.ReadReq_Options_Forwards {
		return nil, nil, "", status.Error(codes.InvalidArgument, "subscribe: subscriptions read forwards only")
	}
	if o.GetAll() != nil {
		all := &allFeed{}
		switch v := o.GetAll().GetAllOption().(type) {
		case *streams.ReadReq_Options_AllOptions_Start:
		case *streams.ReadReq_Options_AllOptions_End:
			all.cursor = s.broker.Head()
		case *streams.ReadReq_Options_AllOptions_Position:
			all.cursor = v.Position.GetCommitPosition()
		default:
			return nil, nil, "", status.Error(codes.InvalidArgument, "subscribe: $all position option is missing")
		}
		catchUp = func(head uint64) (uint64, error) {
			if all.cursor >= head {
				return all.cursor, nil
			}
			err := s.durable.read(func(snap pebble.Reader) error {
				return scanLog(snap, all.cursor+1, head, false, w.visit)
			})
			all.cursor = head
			return all.cursor, err
		}
		return catchUp, all, allStream, nil
	}

	so := o.GetStream()
	name := string(so.GetStreamIdentifier().GetStreamName())
	if err := validateReadName(name); err != nil {
		return nil, nil, "", err
	}
	var meta streamMeta
	err = s.durable.read(func(snap pebble.Reader) (err error) {
		meta, err = readView(snap, name)
		return err
	})
	if err != nil {
		return nil, nil, "", statusFor(w.out.Context(), s.log, name, err)
	}
	if meta.tombstoned {
		return nil, nil, "", statusFor(w.out.Context(), s.log, name, errStreamDeleted)
	}
	feed := &liveRetention{stream: name, meta: meta}
	switch v := so.GetRevisionOption().(type) {
	case *streams.ReadReq_Options_StreamOptions_Start:
	case *streams.ReadReq_Options_StreamOptions_End:
		feed.next = meta.next
	case *streams.ReadReq_Options_StreamOptions_Revision:
		// No revision comes after MaxUint64 (+1 would wrap to 0): nothing is delivered.
		feed.next = math.MaxUint64
		if v.Revision < math.MaxUint64 {
			feed.next = v.Revision + 1
		}
	default:
		return nil, nil, "", status.Error(codes.InvalidArgument, "subscribe: stream revision option is missing")
	}
	catchUp = func(head uint64) (uint64, error) {
		return head, s.durable.read(func(snap pebble.Reader) error {
			// The metadata may have changed since the last round.
			meta, err := readView(snap, name)
			if err != nil {
				return err
			}
			feed.meta = meta
			// Events past head are durable but not yet published: they come live.
			return scanStream(snap, name, max(feed.next, meta.firstKept()), math.MaxUint64, false, func(e *entry) (bool, error) {
				if e.pos > head {
					return false, nil
				}
				rec, err := e.record()
				if err != nil {
					return false, err
				}
				feed.next = rec.StreamRevision + 1
				gone, err := meta.expired(e, time.Now())
				if err != nil || gone {
					return err == nil, err
				}
				return true, w.send(e)
			})
		})
	}
	return catchUp, feed, name, nil
}

// liveFilter decides which published entries a subscription delivers.
type liveFilter interface {
	// observe takes in a published group before its entries are filtered.
	observe(entries []*entry)
	keeps(e *entry, now time.Time) (bool, error)
}

// allFeed is the live filter of a $all subscription: what follows its cursor.
type allFeed struct {
	cursor uint64 // last position delivered, or the start
}

func (*allFeed) observe([]*entry) {}

func (f *allFeed) keeps(e *entry, _ time.Time) (bool, error) { return e.pos > f.cursor, nil }

// visit delivers a scanned event; it is the catch-up form of deliver.
func (w *eventWriter) visit(e *entry) (bool, error) {
	return true, w.deliver(e)
}

// deliver sends rec if it passes the filter, and a checkpoint whenever the
// filter's interval of scanned events is reached, so a subscriber whose
// filter rarely matches still advances its checkpoint.
func (w *eventWriter) deliver(e *entry) error {
	ok, err := w.filter.match(e)
	if err != nil {
		return err
	}
	if ok {
		if err := w.send(e); err != nil {
			return err
		}
	}
	if w.filter == nil || w.filter.checkpointEvery == 0 {
		return nil
	}
	if w.scanned++; w.scanned >= w.filter.checkpointEvery {
		return w.checkpoint(e.pos)
	}
	return nil
}

// checkpoint tells a filtered subscriber it has seen everything up to pos.
func (w *eventWriter) checkpoint(pos uint64) error {
	if w.filter == nil || w.filter.checkpointEvery == 0 || pos == 0 {
		return nil
	}
	w.scanned = 0
	return w.out.Send(&streams.ReadResp{Content: &streams.ReadResp_Checkpoint_{Checkpoint: &streams.ReadResp_Checkpoint{
		CommitPosition: pos, PreparePosition: pos,
	}}})
}
