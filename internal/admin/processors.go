package admin

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/lease"
	"github.com/orderly/orderly/internal/projection"
	"github.com/orderly/orderly/internal/saga"
	"github.com/orderly/orderly/internal/views"
)

// ListProcessors lists every processor: those of this process with their
// state, those of other processes as ELSEWHERE.
func (s *Service) ListProcessors(ctx context.Context, _ *orderlyv1.ListProcessorsRequest) (*orderlyv1.ListProcessorsResponse, error) {
	// One head for all, read after their positions: lag is never negative.
	var projections []projection.ViewStatus
	if s.opts.Projector != nil {
		projections = s.opts.Projector.Status()
	}
	var credit *saga.Status
	if s.opts.Saga != nil {
		st := s.opts.Saga.Status()
		credit = &st
	}
	head, err := s.head(ctx)
	if err != nil {
		// The processors' own figures still stand; the head they last saw
		// takes its place.
		s.opts.Log.WarnContext(ctx, "admin: event store head unknown", "err", err)
	}
	var out []*orderlyv1.Processor
	for _, v := range views.All() {
		p := &orderlyv1.Processor{Name: string(v), Kind: orderlyv1.ProcessorKind_PROCESSOR_KIND_PROJECTION, State: orderlyv1.ProcessorState_PROCESSOR_STATE_ELSEWHERE}
		for _, st := range projections {
			if st.View == v {
				p = s.projectionProcessor(st, head)
				setShare(p, s.opts.Projector.Share())
			}
		}
		out = append(out, p)
	}
	p := &orderlyv1.Processor{Name: SagaName, Kind: orderlyv1.ProcessorKind_PROCESSOR_KIND_SAGA, State: orderlyv1.ProcessorState_PROCESSOR_STATE_ELSEWHERE}
	if credit != nil {
		p = sagaProcessor(*credit, head)
		setShare(p, s.opts.Saga.Share())
	}
	return &orderlyv1.ListProcessorsResponse{Processors: append(out, p)}, nil
}

func (s *Service) projectionProcessor(st projection.ViewStatus, head uint64) *orderlyv1.Processor {
	p := &orderlyv1.Processor{
		Name: string(st.View), Kind: orderlyv1.ProcessorKind_PROCESSOR_KIND_PROJECTION,
		Position: st.Position, LagSeconds: st.LagSeconds, EventsPerSecond: st.EventsPerSecond,
		DeadLetters: st.DeadLetters, LastError: st.LastError, LastErrorAt: stamp(st.LastErrorAt),
	}
	setLag(p, max(head, st.Head), st.CaughtUp)
	rb := s.rebuildOf(st.View)
	if rb != nil {
		p.Rebuild = rb.snapshot().progress
	}
	switch {
	case !st.Started:
		p.State = orderlyv1.ProcessorState_PROCESSOR_STATE_STARTING
	case st.Paused:
		p.State = orderlyv1.ProcessorState_PROCESSOR_STATE_PAUSED
	case rb != nil && !rb.snapshot().ended:
		p.State = orderlyv1.ProcessorState_PROCESSOR_STATE_REBUILDING
	default:
		p.State = runState(st.LastError, st.CaughtUp)
	}
	return p
}

func sagaProcessor(st saga.Status, head uint64) *orderlyv1.Processor {
	p := &orderlyv1.Processor{
		Name: SagaName, Kind: orderlyv1.ProcessorKind_PROCESSOR_KIND_SAGA,
		Position: st.Position, LagSeconds: st.LagSeconds, EventsPerSecond: st.EventsPerSecond,
		DeadLetters: uint64(st.DeadLetters), LastError: st.LastError, LastErrorAt: stamp(st.LastErrorAt),
	}
	setLag(p, head, st.CaughtUp)
	switch {
	case !st.Started:
		p.State = orderlyv1.ProcessorState_PROCESSOR_STATE_STARTING
	case st.Paused:
		p.State = orderlyv1.ProcessorState_PROCESSOR_STATE_PAUSED
	default:
		p.State = runState(st.LastError, st.CaughtUp)
	}
	return p
}

func setShare(p *orderlyv1.Processor, sh lease.Share) {
	p.Instance, p.PartitionsHeld, p.Partitions, p.Instances = sh.Owner, uint32(sh.Held), uint32(sh.Partitions), uint32(sh.Members)
}

// setLag fills head and lag_events. A caught-up processor lags by none:
// its position moves only with the events it follows (and the server's
// checkpoints), while the head moves with every event of the store.
func setLag(p *orderlyv1.Processor, head uint64, caughtUp bool) {
	p.Head = max(head, p.Position)
	if !caughtUp {
		p.LagEvents = p.Head - p.Position
	}
}

func runState(lastError string, caughtUp bool) orderlyv1.ProcessorState {
	switch {
	case lastError != "":
		return orderlyv1.ProcessorState_PROCESSOR_STATE_FAILING
	case caughtUp:
		return orderlyv1.ProcessorState_PROCESSOR_STATE_CAUGHT_UP
	}
	return orderlyv1.ProcessorState_PROCESSOR_STATE_RUNNING
}

func stamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// PauseProcessor pauses a processor of this process.
func (s *Service) PauseProcessor(ctx context.Context, req *orderlyv1.PauseProcessorRequest) (*orderlyv1.PauseProcessorResponse, error) {
	p, err := s.setPaused(ctx, "PauseProcessor", req.GetName(), true)
	if err != nil {
		return nil, err
	}
	return &orderlyv1.PauseProcessorResponse{Processor: p}, nil
}

// ResumeProcessor resumes a paused processor of this process.
func (s *Service) ResumeProcessor(ctx context.Context, req *orderlyv1.ResumeProcessorRequest) (*orderlyv1.ResumeProcessorResponse, error) {
	p, err := s.setPaused(ctx, "ResumeProcessor", req.GetName(), false)
	if err != nil {
		return nil, err
	}
	return &orderlyv1.ResumeProcessorResponse{Processor: p}, nil
}

// setPaused pauses or resumes processor name and returns it as it is then.
// Pausing a paused processor (or resuming a running one) changes nothing
// and is no error: the caller wants it in that state, and it is.
func (s *Service) setPaused(ctx context.Context, op, name string, paused bool) (*orderlyv1.Processor, error) {
	if err := invalid(op, checkProcessor("name", name)); err != nil {
		return nil, err
	}
	var err error
	switch {
	case name == SagaName && s.opts.Saga == nil, name != SagaName && s.opts.Projector == nil:
		return nil, s.elsewhere(name)
	case name == SagaName && paused:
		_, err = s.opts.Saga.Pause(ctx)
	case name == SagaName:
		_, err = s.opts.Saga.Resume(ctx)
	case paused:
		_, err = s.opts.Projector.Pause(ctx, views.View(name))
	default:
		_, err = s.opts.Projector.Resume(ctx, views.View(name))
	}
	if err != nil {
		return nil, s.failed(ctx, err, op)
	}
	list, err := s.ListProcessors(ctx, nil)
	if err != nil {
		return nil, err
	}
	for _, p := range list.Processors {
		if p.Name == name {
			return p, nil
		}
	}
	return nil, s.failed(ctx, fmt.Errorf("processor %s is not listed", name), op) // every name is listed
}
