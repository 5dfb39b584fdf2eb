package bench

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
)

// sample hands an acknowledged order to an idle watcher or prober; with all
// of them busy it is counted and dropped rather than queued, so in-flight
// measurement stays bounded and a backlog in the bench never adds to the
// time it reports.
func (b *run) sample(to chan placed, p placed, o *outcomes) {
	select {
	case to <- p:
	default:
		o.busy.Add(1)
	}
}

// watchDecisions times, for each order it is handed, from the PlaceOrder
// acknowledgement until query-svc shows it APPROVED or REJECTED, over a
// WatchOrder stream (one call, woken by the server on each change, instead
// of polling).
func (b *run) watchDecisions(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-b.watch:
			b.awaitDecision(ctx, p)
		}
	}
}

func (b *run) awaitDecision(ctx context.Context, p placed) {
	wctx, cancel := context.WithDeadline(ctx, p.acked.Add(b.cfg.DecisionTimeout))
	defer cancel()
	s := &b.stats
	stream, err := b.queries.WatchOrder(wctx, &orderlyv1.WatchOrderRequest{OrderId: p.orderID, MinPosition: p.position})
	for err == nil {
		var resp *orderlyv1.WatchOrderResponse
		resp, err = stream.Recv()
		if err != nil {
			break
		}
		b.visible.add(p.orderID)
		switch resp.GetOrder().GetStatus() {
		case orderlyv1.OrderStatus_ORDER_STATUS_APPROVED:
			s.decision.Record(time.Since(p.acked))
			s.decided[0].Add(1)
			return
		case orderlyv1.OrderStatus_ORDER_STATUS_REJECTED:
			s.decision.Record(time.Since(p.acked))
			s.decided[1].Add(1)
			return
		case orderlyv1.OrderStatus_ORDER_STATUS_CANCELLED:
			s.undecided.cancelled.Add(1)
			return
		}
	}
	if dl, _ := wctx.Deadline(); errors.Is(err, io.EOF) && time.Until(dl) < eofSlack {
		// The server ends a watch with OK when its copy of our deadline
		// passes, which may be a little before ours does.
		err = context.DeadlineExceeded
	}
	b.sampleFailed("watch_order", ctx, err, &s.undecided)
}

// eofSlack is how close to its deadline a watch ended with OK counts as
// timed out rather than failed.
const eofSlack = time.Second

// sampleFailed sorts out why a sample gave no time.
func (b *run) sampleFailed(opName string, ctx context.Context, err error, o *outcomes) {
	switch {
	case ctx.Err() != nil:
		o.cut.Add(1)
	case codeOf(err) == codes.DeadlineExceeded:
		o.timedOut.Add(1)
	default:
		o.failed.Add(1)
		b.stats.fail(opName, err)
	}
}

// probeVisibility times, for each order it is handed, from the PlaceOrder
// acknowledgement until a GetOrder with min_position set to the command's
// position answers: read-your-writes, as a client would do it.
func (b *run) probeVisibility(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-b.probe:
			cctx, cancel := context.WithTimeout(ctx, b.cfg.CallTimeout)
			_, err := b.queries.GetOrder(cctx, &orderlyv1.GetOrderRequest{OrderId: p.orderID, MinPosition: p.position})
			cancel()
			if err != nil {
				b.sampleFailed("visible_get_order", ctx, err, &b.stats.invisible)
				continue
			}
			b.stats.visible.Record(time.Since(p.acked))
			b.visible.add(p.orderID)
		}
	}
}

// restError is the gRPC status behind a REST answer other than 200, read
// from the gateway's error body ({"code": N, "details": [{"reason": ...}]}),
// so errors are counted alike whichever way they came.
func restError(httpCode int, body io.Reader) error {
	var e struct {
		Code    *int32 `json:"code"`
		Details []struct {
			Reason string `json:"reason"`
		} `json:"details"`
	}
	if err := json.NewDecoder(io.LimitReader(body, maxErrorBody)).Decode(&e); err != nil || e.Code == nil {
		return status.Errorf(codes.Unknown, "HTTP %d without a gateway error body", httpCode)
	}
	st := status.Newf(codes.Code(*e.Code), "HTTP %d", httpCode)
	for _, d := range e.Details {
		if d.Reason != "" {
			st, _ = st.WithDetails(&errdetails.ErrorInfo{Reason: d.Reason})
			break
		}
	}
	return st.Err()
}

// maxErrorBody bounds the error body read.
const maxErrorBody = 64 << 10
