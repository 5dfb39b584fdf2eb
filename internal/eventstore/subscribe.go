package eventstore

import (
	"math"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
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
	catchUp, stream, live, err := s.catchUpFunc(o, w)
	if err != nil {
		return err
	}
	sub := newSubscriber(s.cfg.SubscriberBuffer)
	defer s.broker.leave(sub)
	if err := w.out.Send(&streams.ReadResp{Content: &streams.ReadResp_Confirmation{Confirmation: &streams.ReadResp_SubscriptionConfirmation{
		SubscriptionId: uuid.NewString(),
	}}}); err != nil {
		return err
	}

	for {
		head := s.broker.Head()
		if err := catchUp(head); err != nil {
			return statusFor(ctx, s.log, stream, err)
		}
		joined, err := s.broker.join(sub, head)
		if err != nil {
			return statusFor(ctx, s.log, stream, err)
		}
		if joined {
			if err := w.checkpoint(head); err != nil {
				return err
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
		if live != nil {
			live.observe(entries)
		}
		now := time.Now()
		for _, e := range entries {
			// Live entries are always decoded (see entry).
			if live != nil {
				if string(e.rec.GetStreamIdentifier().GetStreamName()) != stream {
					continue
				}
				if keep, err := live.keeps(e, now); err != nil || !keep {
					if err != nil {
						return statusFor(ctx, s.log, stream, err)
					}
					continue
				}
			}
			if err := w.deliver(e); err != nil {
				return err
			}
		}
	}
}

// catchUpFunc validates the subscription's start and returns the function
// that delivers stored events up to a head position, resuming where the
// previous call stopped. Starting points are exclusive, as in EventStoreDB.
// A stream subscription also gets the retention its live feed applies, as
// the last catch-up left it; $all applies none.
func (s *Server) catchUpFunc(o *streams.ReadReq_Options, w *eventWriter) (func(head uint64) error, string, *liveRetention, error) {
	if o.GetReadDirection() != streams.ReadReq_Options_Forwards {
		return nil, "", nil, status.Error(codes.InvalidArgument, "subscribe: subscriptions read forwards only")
	}
	if o.GetAll() != nil {
		var cursor uint64 // last position delivered
		switch v := o.GetAll().GetAllOption().(type) {
		case *streams.ReadReq_Options_AllOptions_Start:
		case *streams.ReadReq_Options_AllOptions_End:
			cursor = math.MaxUint64
		case *streams.ReadReq_Options_AllOptions_Position:
			cursor = v.Position.GetCommitPosition()
		default:
			return nil, "", nil, status.Error(codes.InvalidArgument, "subscribe: $all position option is missing")
		}
		return func(head uint64) error {
			if cursor == math.MaxUint64 || cursor >= head {
				return nil
			}
			err := scanLog(s.db, cursor+1, head, false, w.visit)
			cursor = head
			return err
		}, allStream, nil, nil
	}

	so := o.GetStream()
	name := string(so.GetStreamIdentifier().GetStreamName())
	if err := validateStreamName(name); err != nil {
		return nil, "", nil, err
	}
	view, err := s.durable.acquire()
	if err != nil {
		return nil, "", nil, statusFor(w.out.Context(), s.log, name, err)
	}
	meta, err := readView(view.snap, name)
	s.durable.release(view)
	if err != nil {
		return nil, "", nil, statusFor(w.out.Context(), s.log, name, err)
	}
	if meta.tombstoned {
		return nil, "", nil, statusFor(w.out.Context(), s.log, name, errStreamDeleted)
	}
	var next uint64 // next revision to deliver
	switch v := so.GetRevisionOption().(type) {
	case *streams.ReadReq_Options_StreamOptions_Start:
	case *streams.ReadReq_Options_StreamOptions_End:
		next = math.MaxUint64
	case *streams.ReadReq_Options_StreamOptions_Revision:
		next = v.Revision + 1
	default:
		return nil, "", nil, status.Error(codes.InvalidArgument, "subscribe: stream revision option is missing")
	}
	live := &liveRetention{stream: name, meta: meta}
	return func(head uint64) error {
		// The metadata may have changed since the last round.
		meta, err := readView(s.db, name)
		if err != nil {
			return err
		}
		live.meta = meta
		if next == math.MaxUint64 {
			return nil
		}
		// Events past head are committed but not yet published: they come live.
		return scanStream(s.db, name, max(next, meta.firstKept()), math.MaxUint64, false, func(e *entry) (bool, error) {
			if e.pos > head {
				return false, nil
			}
			rec, err := e.record()
			if err != nil {
				return false, err
			}
			next = rec.StreamRevision + 1
			gone, err := meta.expired(e, time.Now())
			if err != nil || gone {
				return err == nil, err
			}
			return true, w.send(e)
		})
	}, name, live, nil
}

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
