package serve_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/orderly/orderly/internal/loopback"
	"github.com/orderly/orderly/internal/serve"
)

// TestRun serves gRPC and HTTP, checks health, recovery, metrics and the
// OpenAPI document over real connections, then stops on cancel.
func TestRun(t *testing.T) {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	metrics := serve.NewMetrics()
	gs, hs := serve.NewGRPCServer(log, metrics, serve.Security{})
	hs.SetServingStatus("orderly.v1.Test", healthpb.HealthCheckResponse_SERVING)

	glis, hlis := loopback.Listen(t), loopback.Listen(t)
	hsrv := &http.Server{Handler: serve.NewHTTPHandler(http.NotFoundHandler(), metrics, serve.Security{}), ReadHeaderTimeout: time.Second}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	workStopped := make(chan struct{})
	work := serve.Task{Name: "work", Run: func(ctx context.Context) error {
		<-ctx.Done()
		close(workStopped)
		return nil
	}}
	go func() {
		done <- serve.Run(ctx, log, 5*time.Second, serve.Plan{
			Servers:    []serve.Server{serve.GRPC("grpc", gs, glis), serve.HTTP("http", hsrv, hlis)},
			Background: []serve.Task{work},
		})
	}()

	conn, err := grpc.NewClient(glis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "orderly.v1.Test"})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", resp, err)
	}

	base := "http://" + hlis.Addr().String()
	for path, want := range map[string]string{
		"/healthz":      "ok",
		"/openapi.json": `"/v1/orders/{orderId}"`,
		"/metrics":      `orderly_grpc_server_handling_seconds_count{code="OK",method="/grpc.health.v1.Health/Check"} 1`,
	} {
		body := get(t, base+path)
		if !strings.Contains(body, want) {
			t.Errorf("GET %s: body lacks %q", path, want)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop after cancel")
	}
	select {
	case <-workStopped:
	default:
		t.Fatal("Run returned before stopping its background work")
	}
}

func TestPanicBecomesInternal(t *testing.T) {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	srv, _ := serve.NewGRPCServer(log, serve.NewMetrics(), serve.Security{})
	testgrpc.RegisterTestServiceServer(srv, echo{})
	lis := loopback.Listen(t)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)
	for range 2 { // the server survives the first panic
		_, err = client.EmptyCall(context.Background(), &testgrpc.Empty{})
		if status.Code(err) != codes.Internal {
			t.Fatalf("panicking handler: %v, want Internal", err)
		}
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return string(b)
}

// echo answers UnaryCall with the correlation header it received, and says
// whether any outgoing metadata leaked into its own context. Its EmptyCall
// panics, to exercise recovery.
type echo struct {
	testgrpc.UnimplementedTestServiceServer
}

func (echo) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	panic("boom")
}

func (echo) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if req.GetResponseStatus().GetCode() != 0 {
		return nil, status.Error(codes.Code(req.ResponseStatus.Code), req.ResponseStatus.Message)
	}
	if req.GetFillUsername() {
		return nil, context.DeadlineExceeded // a bare error, as a store call may return
	}
	in, _ := metadata.FromIncomingContext(ctx)
	out, _ := metadata.FromOutgoingContext(ctx)
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-header", "h"))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t"))
	req.Payload = nil // the caller's request must not change
	return &testgrpc.SimpleResponse{
		Username:   strings.Join(in.Get(serve.CorrelationHeader), ","),
		OauthScope: fmt.Sprint(len(out)),
	}, nil
}

func (echo) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) error {
	in, _ := metadata.FromIncomingContext(stream.Context())
	for range 3 {
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: []byte(strings.Join(in.Get(serve.CorrelationHeader), ","))}}); err != nil {
			return err
		}
	}
	return nil
}

// TestGatewayCallsInProcess checks the connection the gateway gets: unary
// calls run in process under the server's interceptor (metrics, panic
// recovery), with metadata, headers, trailers and statuses as over the wire;
// streams still work.
func TestGatewayCallsInProcess(t *testing.T) {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	metrics := serve.NewMetrics()
	gs, _ := serve.NewGRPCServer(log, metrics, serve.Security{})
	testgrpc.RegisterTestServiceServer(gs, echo{})
	defer gs.Stop()
	var conn grpc.ClientConnInterface
	_, closeConns, err := serve.NewGateway(context.Background(), metrics, serve.Security{}, serve.Upstream{Server: gs,
		Register: func(_ context.Context, _ *runtime.ServeMux, cc grpc.ClientConnInterface) error { conn = cc; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer closeConns()
	client := testgrpc.NewTestServiceClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), serve.CorrelationHeader, "c-1")

	req := &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("keep")}}
	var header, trailer metadata.MD
	resp, err := client.UnaryCall(ctx, req, grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Username != "c-1" || resp.OauthScope != "0" {
		t.Errorf("handler saw correlation %q and %s outgoing keys; want c-1 and 0", resp.Username, resp.OauthScope)
	}
	if string(req.GetPayload().GetBody()) != "keep" {
		t.Error("the handler changed the caller's request")
	}
	if header.Get("x-header")[0] != "h" || trailer.Get("x-trailer")[0] != "t" {
		t.Errorf("header %v, trailer %v", header, trailer)
	}

	_, err = client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "no such order"}})
	if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "no such order" {
		t.Errorf("status error came back as %v", err)
	}
	if _, err = client.UnaryCall(ctx, &testgrpc.SimpleRequest{FillUsername: true}); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("bare context error came back as %v, want DeadlineExceeded", err)
	}

	if _, err = client.EmptyCall(ctx, &testgrpc.Empty{}); status.Code(err) != codes.Internal {
		t.Errorf("panicking handler: %v, want Internal", err)
	}

	stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if i != 3 {
				t.Errorf("stream ended after %d messages, want 3", i)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if string(msg.Payload.Body) != "c-1" {
			t.Errorf("stream handler saw correlation %q", msg.Payload.Body)
		}
	}

	hlis := loopback.Listen(t)
	go func() { _ = http.Serve(hlis, serve.NewHTTPHandler(http.NotFoundHandler(), metrics, serve.Security{})) }()
	body := get(t, "http://"+hlis.Addr().String()+"/metrics")
	for _, want := range []string{
		`orderly_grpc_server_handling_seconds_count{code="OK",method="/grpc.testing.TestService/UnaryCall"} 1`,
		`orderly_grpc_server_handling_seconds_count{code="NotFound",method="/grpc.testing.TestService/UnaryCall"} 1`,
		`orderly_grpc_server_handling_seconds_count{code="OK",method="/grpc.testing.TestService/StreamingOutputCall"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
