package eventstore

import (
	"errors"
	"io"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Append reads the whole request (options, then events) before writing, so a
// request that breaks a limit or drops half-way writes nothing.
func (s *Server) Append(stream streams.Streams_AppendServer) error {
	name, expect, events, held, err := s.readAppend(stream)
	defer s.admission.release(held)
	if err != nil {
		// The client sends every event before it reads the answer; answering
		// while it still sends would fail its next send with a bare EOF that
		// hides our status. So a refused request is read to its end first,
		// as far as a legal request could go.
		drain(stream, s.cfg.MaxAppendSize+s.cfg.MaxEventSize)
		s.metrics.appends.WithLabelValues("error").Inc()
		return err
	}
	ret, err := retentionOf(name, events)
	if err != nil {
		return err
	}
	res, err := s.seq.submit(stream.Context(), &op{kind: opAppend, stream: name, expect: expect, events: events, retention: ret})
	if err == nil {
		err = res.err
	}
	if err != nil {
		outcome := "error"
		if errors.Is(err, errStreamDeleted) {
			outcome = "deleted"
		}
		s.metrics.appends.WithLabelValues(outcome).Inc()
		return statusFor(stream.Context(), s.log, name, err)
	}
	if res.verdict == verdictWrong {
		s.metrics.appends.WithLabelValues("wrong_version").Inc()
	} else {
		s.metrics.appends.WithLabelValues("ok").Inc()
	}
	return stream.SendAndClose(appendResponse(expect, res))
}

// readAppend reads and checks an append request: the options, then events
// within the size limits, each admitted (see admission) before the next is
// read. held is what the request holds of the admission budget, whatever
// the outcome; the caller releases it once the append is answered.
func (s *Server) readAppend(stream streams.Streams_AppendServer) (name string, expect expectation, events []*record, held int, err error) {
	first, err := stream.Recv()
	if err != nil {
		return "", expectation{}, nil, 0, status.Errorf(codes.InvalidArgument, "append: no options message: %v", err)
	}
	opts := first.GetOptions()
	if opts == nil {
		return "", expectation{}, nil, 0, status.Error(codes.InvalidArgument, "append: the first message must be the options")
	}
	name = string(opts.GetStreamIdentifier().GetStreamName())
	if err := validateStreamName(name); err != nil {
		return "", expectation{}, nil, 0, err
	}
	if expect, err = appendExpectation(opts); err != nil {
		return "", expectation{}, nil, 0, err
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return name, expect, events, held, nil
		}
		if err != nil {
			return "", expectation{}, nil, held, statusFor(stream.Context(), s.log, name, err)
		}
		rec, err := s.proposedRecord(name, msg.GetProposedMessage())
		if err != nil {
			return "", expectation{}, nil, held, err
		}
		size := eventSize(rec)
		if held+size > s.cfg.MaxAppendSize {
			return "", expectation{}, nil, held, errAppendTooLarge(s.cfg.MaxAppendSize)
		}
		if err := s.admit(stream, name, held, size); err != nil {
			return "", expectation{}, nil, held, err
		}
		held += size
		events = append(events, rec)
	}
}

// admit takes size bytes of the admission budget for a request holding held.
func (s *Server) admit(stream streams.Streams_AppendServer, name string, held, size int) error {
	if held == 0 {
		if err := s.admission.wait(stream.Context(), size); err != nil {
			return statusFor(stream.Context(), s.log, name, err)
		}
		return nil
	}
	if !s.admission.try(size) {
		s.metrics.refused.Inc()
		return status.Errorf(codes.ResourceExhausted,
			"append to %q refused: concurrent appends hold the store's %d bytes (MaxPendingAppendBytes); retry", name, s.cfg.MaxPendingAppendBytes)
	}
	return nil
}

func (s *Server) proposedRecord(stream string, m *streams.AppendReq_ProposedMessage) (*record, error) {
	if m == nil {
		return nil, status.Error(codes.InvalidArgument, "append: expected an event after the options")
	}
	id, ok := parseEventID(m.GetId())
	if !ok {
		return nil, status.Error(codes.InvalidArgument, "append: event has no valid id")
	}
	eventType := m.GetMetadata()[metaType]
	if eventType == "" {
		return nil, status.Error(codes.InvalidArgument, "append: event has no type")
	}
	contentType := m.GetMetadata()[metaContentType]
	if contentType == "" {
		return nil, status.Error(codes.InvalidArgument, "append: event has no content-type")
	}
	rec := newRecord(stream, id, eventType, contentType, m.GetCustomMetadata(), m.GetData())
	if size := eventSize(rec); size > s.cfg.MaxEventSize {
		return nil, errEventTooLarge(size, s.cfg.MaxEventSize)
	}
	return rec, nil
}

func appendExpectation(o *streams.AppendReq_Options) (expectation, error) {
	switch v := o.GetExpectedStreamRevision().(type) {
	case *streams.AppendReq_Options_Any:
		return expectation{kind: expectAny}, nil
	case *streams.AppendReq_Options_NoStream:
		return expectation{kind: expectNoStream}, nil
	case *streams.AppendReq_Options_StreamExists:
		return expectation{kind: expectExists}, nil
	case *streams.AppendReq_Options_Revision:
		return expectation{kind: expectRevision, rev: v.Revision}, nil
	}
	return expectation{}, status.Error(codes.InvalidArgument, "append: expected stream revision is missing")
}

func appendResponse(expect expectation, r result) *streams.AppendResp {
	if r.verdict == verdictWrong {
		w := &streams.AppendResp_WrongExpectedVersion{}
		if r.noStream {
			w.CurrentRevisionOption = &streams.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: &shared.Empty{}}
		} else {
			w.CurrentRevisionOption = &streams.AppendResp_WrongExpectedVersion_CurrentRevision{CurrentRevision: r.current}
		}
		switch expect.kind {
		case expectAny:
			w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedAny{ExpectedAny: &shared.Empty{}}
		case expectNoStream:
			w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedNoStream{ExpectedNoStream: &shared.Empty{}}
		case expectExists:
			w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedStreamExists{ExpectedStreamExists: &shared.Empty{}}
		case expectRevision:
			w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision{ExpectedRevision: expect.rev}
		}
		return &streams.AppendResp{Result: &streams.AppendResp_WrongExpectedVersion_{WrongExpectedVersion: w}}
	}
	ok := &streams.AppendResp_Success{
		PositionOption: &streams.AppendResp_Success_Position{Position: &streams.AppendResp_Position{
			CommitPosition: r.pos, PreparePosition: r.pos,
		}},
	}
	if r.noStream {
		ok.CurrentRevisionOption = &streams.AppendResp_Success_NoStream{NoStream: &shared.Empty{}}
	} else {
		ok.CurrentRevisionOption = &streams.AppendResp_Success_CurrentRevision{CurrentRevision: r.current}
	}
	return &streams.AppendResp{Result: &streams.AppendResp_Success_{Success: ok}}
}

// drain discards the rest of a rejected request, up to limit bytes: a
// client sending more than any legal request gets no status, only a reset.
// Messages are read as Empty, which skips the append decoder and keeps
// their bytes as unknown fields, so proto.Size counts them.
func drain(stream grpc.ServerStream, limit int) {
	for limit > 0 {
		var msg emptypb.Empty
		if err := stream.RecvMsg(&msg); err != nil {
			return
		}
		limit -= proto.Size(&msg)
	}
}
