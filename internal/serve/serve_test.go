package serve_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/orderly/orderly/internal/serve"
)

// panicky is a test service whose EmptyCall panics, to exercise recovery.
type panicky struct {
	testgrpc.UnimplementedTestServiceServer
}

func (panicky) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	panic("boom")
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// TestRun serves gRPC and HTTP, checks health, recovery, metrics and the
// OpenAPI document over real connections, then stops on cancel.
func TestRun(t *testing.T) {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	metrics := serve.NewMetrics()
	gs, hs := serve.NewGRPCServer(log, metrics)
	hs.SetServingStatus("orderly.v1.Test", healthpb.HealthCheckResponse_SERVING)

	glis, hlis := listen(t), listen(t)
	hsrv := &http.Server{Handler: serve.NewHTTPHandler(http.NotFoundHandler(), metrics), ReadHeaderTimeout: time.Second}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	workStopped := make(chan struct{})
	work := serve.Background(func(ctx context.Context) error {
		<-ctx.Done()
		close(workStopped)
		return nil
	})
	go func() {
		done <- serve.Run(ctx, log, 5*time.Second, map[string]serve.Server{
			"grpc": serve.GRPC(gs, glis), "http": serve.HTTP(hsrv, hlis), "work": work,
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
	srv, _ := serve.NewGRPCServer(log, serve.NewMetrics())
	testgrpc.RegisterTestServiceServer(srv, panicky{})
	lis := listen(t)
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
