package serve_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/loopback"
	"github.com/orderly/orderly/internal/serve"
)

// journal records what happened, in order, from any goroutine.
type journal struct {
	mu     sync.Mutex
	events []string
}

func (j *journal) add(e string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events = append(j.events, e)
}

func (j *journal) get() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.events...)
}

// slowServer's unary call (a command) runs until released; its stream (a
// watch) and its min_position read wait for their context like the real
// ones do.
type slowServer struct {
	testgrpc.UnimplementedTestServiceServer
	entered, release chan struct{}
}

func (s slowServer) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	close(s.entered)
	<-s.release
	return &testgrpc.SimpleResponse{Username: "committed"}, nil
}

func (slowServer) StreamingOutputCall(_ *testgrpc.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) error {
	if err := stream.Send(&testgrpc.StreamingOutputCallResponse{}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil // as WatchOrder does when its context ends
}

type waitingReads struct {
	orderlyv1.UnimplementedQueryServiceServer
	waiting chan struct{}
}

func (r waitingReads) GetOrder(ctx context.Context, req *orderlyv1.GetOrderRequest) (*orderlyv1.GetOrderResponse, error) {
	if req.GetMinPosition() > 0 {
		close(r.waiting)
		<-ctx.Done() // the views never get there
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return &orderlyv1.GetOrderResponse{}, nil
}

// TestShutdownPhases stops a server with a stream open, a min_position
// read waiting and a unary call in flight: health turns NOT_SERVING, the
// stream and the wait end at once with UNAVAILABLE while the unary call is
// still running, the unary call gets its real answer, and only then does
// the background work stop and the closers run, last added first.
func TestShutdownPhases(t *testing.T) {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	gs, hs := serve.NewGRPCServer(log, serve.NewMetrics(), serve.Security{})
	slow := slowServer{entered: make(chan struct{}), release: make(chan struct{})}
	testgrpc.RegisterTestServiceServer(gs, slow)
	reads := waitingReads{waiting: make(chan struct{})}
	orderlyv1.RegisterQueryServiceServer(gs, reads)
	hs.SetServingStatus("t", healthpb.HealthCheckResponse_SERVING)
	lis := loopback.Listen(t)

	var j journal
	var closers serve.Closers
	closers.Add("first opened", func() error { j.add("closed first opened"); return nil })
	closers.Add("last opened", func() error { j.add("closed last opened"); return nil })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const grace = time.Minute
	ran := make(chan error, 1)
	go func() {
		ran <- serve.Run(ctx, log, grace, serve.Plan{
			Servers: []serve.Server{serve.GRPC("grpc", gs, lis)},
			Background: []serve.Task{{Name: "work", Run: func(ctx context.Context) error {
				<-ctx.Done()
				j.add("background stopped")
				return nil
			}}},
			Closers: &closers,
		})
	}()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer ccancel()
	health, err := healthpb.NewHealthClient(conn).Watch(cctx, &healthpb.HealthCheckRequest{Service: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if h, err := health.Recv(); err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", h, err)
	}
	client := testgrpc.NewTestServiceClient(conn)
	stream, err := client.StreamingOutputCall(cctx, &testgrpc.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		_, err := orderlyv1.NewQueryServiceClient(conn).GetOrder(cctx, &orderlyv1.GetOrderRequest{OrderId: "o1", MinPosition: 1 << 40})
		read <- err
	}()
	answer := make(chan error, 1)
	go func() {
		resp, err := client.UnaryCall(cctx, &testgrpc.SimpleRequest{})
		if err == nil && resp.Username != "committed" {
			err = errors.New("wrong answer " + resp.Username)
		}
		answer <- err
	}()
	<-slow.entered
	<-reads.waiting
	cancel()

	if h, err := health.Recv(); err != nil || h.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health after shutdown began = %v, %v; want NOT_SERVING", h, err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("stream ended with %v, want UNAVAILABLE server shutting down", err)
	}
	if err := <-read; status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("min_position read ended with %v, want UNAVAILABLE server shutting down", err)
	}
	// The unary call still runs: nothing behind the drain may have started.
	if got := j.get(); len(got) != 0 {
		t.Errorf("with a call in flight, already: %v", got)
	}
	close(slow.release)
	if err := <-answer; err != nil {
		t.Errorf("the call in flight got %v, want its answer", err)
	}
	if err := <-ran; err != nil {
		t.Errorf("Run = %v", err)
	}
	want := []string{"background stopped", "closed last opened", "closed first opened"}
	if got := j.get(); strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("shutdown order %v, want %v", got, want)
	}
	if err := closers.Close(); err != nil {
		t.Errorf("closers ran twice: %v", err)
	}
	if got := j.get(); len(got) != len(want) {
		t.Errorf("Close after Run ran closers again: %v", got)
	}
}

// TestShutdownBounded: a call that never ends and a task that never stops
// cannot hold a shutdown past its grace period; the call is cut.
func TestShutdownBounded(t *testing.T) {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	gs, _ := serve.NewGRPCServer(log, serve.NewMetrics(), serve.Security{})
	slow := slowServer{entered: make(chan struct{}), release: make(chan struct{})}
	defer close(slow.release)
	testgrpc.RegisterTestServiceServer(gs, slow)
	lis := loopback.Listen(t)
	stuck := make(chan struct{})
	defer close(stuck)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	const grace = time.Second
	go func() {
		ran <- serve.Run(ctx, log, grace, serve.Plan{
			Servers: []serve.Server{serve.GRPC("grpc", gs, lis)},
			Background: []serve.Task{{Name: "stuck", Run: func(context.Context) error {
				<-stuck
				return nil
			}}},
		})
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	answer := make(chan error, 1)
	go func() {
		_, err := testgrpc.NewTestServiceClient(conn).UnaryCall(context.Background(), &testgrpc.SimpleRequest{})
		answer <- err
	}()
	<-slow.entered
	cancel()
	// Run must return by itself; the test's own timeout catches a hang.
	if err := <-ran; err != nil {
		t.Errorf("Run = %v", err)
	}
	if err := <-answer; status.Code(err) != codes.Unavailable {
		t.Errorf("a call past the drain deadline got %v, want UNAVAILABLE (cut)", err)
	}
}
