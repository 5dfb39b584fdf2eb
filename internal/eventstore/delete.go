package eventstore

import (
	"context"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// removeOptions is what DeleteReq and TombstoneReq options share in shape,
// though not in Go type.
type removeOptions interface {
	proto.Message
	GetStreamIdentifier() *shared.StreamIdentifier
	GetRevision() uint64
	GetNoStream() *shared.Empty
	GetAny() *shared.Empty
	GetStreamExists() *shared.Empty
}

// Delete is a soft delete: the stream reads as not found, and a later append
// recreates it from the next revision.
func (s *Server) Delete(ctx context.Context, req *streams.DeleteReq) (*streams.DeleteResp, error) {
	pos, err := s.remove(ctx, opDelete, req.GetOptions())
	if err != nil {
		return nil, err
	}
	return &streams.DeleteResp{PositionOption: &streams.DeleteResp_Position_{Position: &streams.DeleteResp_Position{
		CommitPosition: pos, PreparePosition: pos,
	}}}, nil
}

// Tombstone is a hard delete: the stream can never be read or written again.
func (s *Server) Tombstone(ctx context.Context, req *streams.TombstoneReq) (*streams.TombstoneResp, error) {
	pos, err := s.remove(ctx, opTombstone, req.GetOptions())
	if err != nil {
		return nil, err
	}
	return &streams.TombstoneResp{PositionOption: &streams.TombstoneResp_Position_{Position: &streams.TombstoneResp_Position{
		CommitPosition: pos, PreparePosition: pos,
	}}}, nil
}

func (s *Server) remove(ctx context.Context, kind opKind, opts removeOptions) (uint64, error) {
	name := string(opts.GetStreamIdentifier().GetStreamName())
	if err := validateStreamName(name); err != nil {
		return 0, err
	}
	if _, ok := originalOf(name); ok {
		return 0, status.Errorf(codes.InvalidArgument, "%s is a metadata stream: delete its stream instead", name)
	}
	expect, err := removeExpectation(opts)
	if err != nil {
		return 0, err
	}
	res, err := s.seq.submit(ctx, &op{kind: kind, stream: name, expect: expect})
	if err == nil {
		err = res.err
	}
	if err != nil {
		return 0, statusFor(ctx, s.log, name, err)
	}
	if res.verdict == verdictWrong {
		return 0, wrongVersionStatus(ctx, name, expect, res)
	}
	return res.pos, nil
}

func removeExpectation(o removeOptions) (expectation, error) {
	switch {
	case o.GetAny() != nil:
		return expectation{kind: expectAny}, nil
	case o.GetNoStream() != nil:
		return expectation{kind: expectNoStream}, nil
	case o.GetStreamExists() != nil:
		return expectation{kind: expectExists}, nil
	}
	m := o.ProtoReflect()
	if m.WhichOneof(m.Descriptor().Oneofs().ByName("expected_stream_revision")) == nil {
		return expectation{}, status.Error(codes.InvalidArgument, "delete: expected stream revision is missing")
	}
	return expectation{kind: expectRevision, rev: o.GetRevision()}, nil
}
