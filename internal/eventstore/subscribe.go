package eventstore

import (
	"math"

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
		for _, e := range entries {
			if !live(e) {
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
// previous call stopped (it returns the position it has seen up to), and the test a live event must pass to be delivered
// after catch-up. Starting points are exclusive, as in EventStoreDB, and a
// start past the end delivers only what comes after it: the live test is what
// holds back the events between the head and such a start.
func (s *Server) catchUpFunc(o *streams.ReadReq_Options, w *eventWriter) (catchUp func(head uint64) (seen uint64, err error), live func(*entry) bool, stream string, err error) {
	if o.GetReadDirection() != streams.ReadReq_Options_Forwards {
		return nil, nil, "", status.Error(codes.InvalidArgument, "subscribe: subscriptions read forwards only")
	}
	if o.GetAll() != nil {
		var cursor uint64 // last position delivered, or the start
		switch v := o.GetAll().GetAllOption().(type) {
		case *streams.ReadReq_Options_AllOptions_Start:
		case *streams.ReadReq_Options_AllOptions_End:
			cursor = s.broker.Head()
		case *streams.ReadReq_Options_AllOptions_Position:
			cursor = v.Position.GetCommitPosition()
		default:
			return nil, nil, "", status.Error(codes.InvalidArgument, "subscribe: $all position option is missing")
		}
		catchUp = func(head uint64) (uint64, error) {
			if cursor >= head {
				return cursor, nil
			}
			err := scanLog(s.db, cursor+1, head, false, w.visit)
			cursor = head
			return cursor, err
		}
		return catchUp, func(e *entry) bool { return e.pos > cursor }, allStream, nil
	}

	so := o.GetStream()
	name := string(so.GetStreamIdentifier().GetStreamName())
	if err := validateStreamName(name); err != nil {
		return nil, nil, "", err
	}
	meta, err := readMeta(s.db, name)
	if err != nil {
		return nil, nil, "", statusFor(w.out.Context(), s.log, name, err)
	}
	if meta.tombstoned {
		return nil, nil, "", statusFor(w.out.Context(), s.log, name, errStreamDeleted)
	}
	next := meta.truncateBefore // next revision to deliver
	switch v := so.GetRevisionOption().(type) {
	case *streams.ReadReq_Options_StreamOptions_Start:
	case *streams.ReadReq_Options_StreamOptions_End:
		next = max(next, meta.next)
	case *streams.ReadReq_Options_StreamOptions_Revision:
		if v.Revision == math.MaxUint64 {
			// No revision comes after it (v.Revision+1 would wrap to 0).
			return func(head uint64) (uint64, error) { return head, nil }, func(*entry) bool { return false }, name, nil
		}
		next = max(next, v.Revision+1)
	default:
		return nil, nil, "", status.Error(codes.InvalidArgument, "subscribe: stream revision option is missing")
	}
	catchUp = func(head uint64) (uint64, error) {
		// Events past head are committed but not yet published: they come live.
		return head, scanStream(s.db, name, next, math.MaxUint64, false, func(e *entry) (bool, error) {
			if e.pos > head {
				return false, nil
			}
			rec, err := e.record()
			if err != nil {
				return false, err
			}
			next = rec.StreamRevision + 1
			return true, w.send(e)
		})
	}
	live = func(e *entry) bool {
		// Live entries are always decoded (see entry).
		return string(e.rec.GetStreamIdentifier().GetStreamName()) == name && e.rec.StreamRevision >= next
	}
	return catchUp, live, name, nil
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
