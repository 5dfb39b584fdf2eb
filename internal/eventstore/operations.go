package eventstore

import (
	"context"

	"github.com/orderly/orderly/gen/event_store/client/operations"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// operationsServer answers the scavenge calls of EventStoreDB's Operations
// service; the scavenge itself is storage's (scavenge.go). Its other calls
// reach no handler and answer UNIMPLEMENTED.
type operationsServer struct {
	operations.UnimplementedOperationsServer
	s *Server
}

// StartScavenge starts a scavenge, or reports the one already running as
// InProgress, as EventStoreDB does. Thread count and start chunk are
// accepted and ignored: one scavenger walks every stream.
func (o operationsServer) StartScavenge(context.Context, *operations.StartScavengeReq) (*operations.ScavengeResp, error) {
	id, started, err := o.s.scavenges.start()
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "start scavenge: %v", err)
	}
	res := operations.ScavengeResp_Started
	if !started {
		res = operations.ScavengeResp_InProgress
	}
	return &operations.ScavengeResp{ScavengeId: id, ScavengeResult: res}, nil
}

// StopScavenge stops the scavenge with the given id ("current": the one
// running) and answers once it has stopped; an id that is not running is
// NOT_FOUND, as in EventStoreDB.
func (o operationsServer) StopScavenge(ctx context.Context, req *operations.StopScavengeReq) (*operations.ScavengeResp, error) {
	id := req.GetOptions().GetScavengeId()
	stopped, err := o.s.scavenges.stop(ctx, id)
	switch {
	case stopped == "":
		return nil, status.Errorf(codes.NotFound, "scavenge %q is not running", id)
	case err != nil:
		return nil, status.FromContextError(err).Err()
	}
	return &operations.ScavengeResp{ScavengeId: stopped, ScavengeResult: operations.ScavengeResp_Stopped}, nil
}
