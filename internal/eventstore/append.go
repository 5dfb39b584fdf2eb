package eventstore

import (
	"errors"
	"io"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Append reads the whole request (options, then events) before writing, so a
// request that breaks a limit or drops half-way writes nothing.
func (s *Server) Append(stream streams.Streams_AppendServer) error {
	name, expect, events, err := s.readAppend(stream)
	if err != nil {
		// The client sends every event before it reads the answer; answering
		// while it still sends would fail its next send with a bare EOF that
		// hides our status. So a refused request is read to its end first.
		drain(stream)
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
		return statusFor(stream.Context(), s.log, name, err)
	}
	return stream.SendAndClose(appendResponse(expect, res))
}

// readAppend reads and checks an append request: the options, then events
// within the size limits.
func (s *Server) readAppend(stream streams.Streams_AppendServer) (name string, expect expectation, events []*record, err error) {
	first, err := stream.Recv()
	if err != nil {
		return "", expectation{}, nil, status.Errorf(codes.InvalidArgument, "append: no options message: %v", err)
	}
	opts := first.GetOptions()
	if opts == nil {
		return "", expectation{}, nil, status.Error(codes.InvalidArgument, "append: the first message must be the options")
	}
	name = string(opts.GetStreamIdentifier().GetStreamName())
	if err := validateStreamName(name); err != nil {
		return "", expectation{}, nil, err
	}
	if expect, err = appendExpectation(opts); err != nil {
		return "", expectation{}, nil, err
	}
	total := 0
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return name, expect, events, nil
		}
		if err != nil {
			return "", expectation{}, nil, statusFor(stream.Context(), s.log, name, err)
		}
		rec, err := s.proposedRecord(name, msg.GetProposedMessage())
		if err != nil {
			return "", expectation{}, nil, err
		}
		if total += eventSize(rec); total > s.cfg.MaxAppendSize {
			return "", expectation{}, nil, errAppendTooLarge(s.cfg.MaxAppendSize)
		}
		events = append(events, rec)
	}
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

// drain discards the rest of a rejected request.
func drain(stream streams.Streams_AppendServer) {
	for {
		if _, err := stream.Recv(); err != nil {
			return
		}
	}
}
