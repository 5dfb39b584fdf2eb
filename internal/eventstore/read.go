package eventstore

import (
	"math"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Read serves plain reads (a count) and subscriptions, which share the request.
func (s *Server) Read(req *streams.ReadReq, out streams.Streams_ReadServer) error {
	o := req.GetOptions()
	if o == nil {
		return status.Error(codes.InvalidArgument, "read: options are missing")
	}
	if o.GetStream() == nil && o.GetAll() == nil {
		return status.Error(codes.InvalidArgument, "read: neither a stream nor $all")
	}
	f, err := newFilter(o)
	if err != nil {
		return err
	}
	if f != nil && o.GetStream() != nil {
		return status.Error(codes.InvalidArgument, "read: filters apply to $all only")
	}
	w := &eventWriter{out: out, stringIDs: o.GetUuidOption().GetString_() != nil, filter: f}
	switch o.GetCountOption().(type) {
	case *streams.ReadReq_Options_Count:
		if o.GetStream() != nil {
			return s.readStream(o, w)
		}
		return s.readAll(o, w)
	case *streams.ReadReq_Options_Subscription:
		return s.subscribe(o, w)
	}
	return status.Error(codes.InvalidArgument, "read: neither a count nor a subscription")
}

func (s *Server) readStream(o *streams.ReadReq_Options, w *eventWriter) error {
	so := o.GetStream()
	name := string(so.GetStreamIdentifier().GetStreamName())
	if err := validateReadName(name); err != nil {
		return err
	}
	view, err := s.durable.acquire()
	if err != nil {
		return statusFor(w.out.Context(), s.log, name, err)
	}
	defer s.durable.release(view)
	snap := view.snap
	meta, err := readView(snap, name)
	if err != nil {
		return statusFor(w.out.Context(), s.log, name, err)
	}
	if meta.tombstoned {
		return statusFor(w.out.Context(), s.log, name, errStreamDeleted)
	}
	if !meta.exists() {
		// No events, or soft-deleted. A stream whose events its metadata
		// retired exists and reads empty, as in EventStoreDB.
		return w.out.Send(&streams.ReadResp{Content: &streams.ReadResp_StreamNotFound_{StreamNotFound: &streams.ReadResp_StreamNotFound{
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(name)},
		}}})
	}

	backwards := o.GetReadDirection() == streams.ReadReq_Options_Backwards
	first, last := meta.firstKept(), meta.lastRevision()
	lo, hi := first, last
	switch v := so.GetRevisionOption().(type) {
	case *streams.ReadReq_Options_StreamOptions_Start:
		// Backwards from the start is backwards from revision 0, as in
		// EventStoreDB: event 0 if it is kept, else nothing (lo > hi).
		if backwards {
			hi = 0
		}
	case *streams.ReadReq_Options_StreamOptions_End:
		if !backwards {
			return nil
		}
	case *streams.ReadReq_Options_StreamOptions_Revision:
		if backwards {
			hi = min(v.Revision, last)
		} else {
			lo = max(v.Revision, first)
		}
	default:
		return status.Error(codes.InvalidArgument, "read: stream revision option is missing")
	}
	return scanStream(snap, name, lo, hi, backwards, meta.unexpired(time.Now(), w.limit(o.GetCount())))
}

// readAll reads the global log. From a position, forwards includes it and
// backwards excludes it, as EventStoreDB does, so pages chain without overlap.
func (s *Server) readAll(o *streams.ReadReq_Options, w *eventWriter) error {
	backwards := o.GetReadDirection() == streams.ReadReq_Options_Backwards
	lo, hi := uint64(1), uint64(math.MaxUint64)
	switch v := o.GetAll().GetAllOption().(type) {
	case *streams.ReadReq_Options_AllOptions_Start:
		if backwards {
			return nil
		}
	case *streams.ReadReq_Options_AllOptions_End:
		if !backwards {
			return nil
		}
	case *streams.ReadReq_Options_AllOptions_Position:
		if backwards {
			if v.Position.GetCommitPosition() == 0 {
				return nil
			}
			hi = v.Position.GetCommitPosition() - 1
		} else {
			lo = max(v.Position.GetCommitPosition(), 1)
		}
	default:
		return status.Error(codes.InvalidArgument, "read: $all position option is missing")
	}
	view, err := s.durable.acquire()
	if err != nil {
		return statusFor(w.out.Context(), s.log, allStream, err)
	}
	defer s.durable.release(view)
	return scanLog(view.snap, lo, hi, backwards, w.limit(o.GetCount()))
}

// eventWriter sends events (and, for filtered subscriptions, checkpoints) in
// the form the reader asked for.
type eventWriter struct {
	out       streams.Streams_ReadServer
	stringIDs bool
	filter    *filter
	scanned   uint64 // events scanned since the last checkpoint
}

func (w *eventWriter) send(e *entry) error {
	if !w.stringIDs {
		return w.out.SendMsg(eventResponse(e.raw, e.pos))
	}
	rec, err := e.record()
	if err != nil {
		return err
	}
	return w.out.Send(&streams.ReadResp{Content: &streams.ReadResp_Event{Event: &streams.ReadResp_ReadEvent{
		Event:    withStringID(rec),
		Position: &streams.ReadResp_ReadEvent_CommitPosition{CommitPosition: e.pos},
	}}})
}

// limit is a visit that sends matching events until count have been sent.
func (w *eventWriter) limit(count uint64) visit {
	return func(e *entry) (bool, error) {
		if count == 0 {
			return false, nil
		}
		if ok, err := w.filter.match(e); !ok || err != nil {
			return err == nil, err
		}
		count--
		return count > 0, w.send(e)
	}
}
