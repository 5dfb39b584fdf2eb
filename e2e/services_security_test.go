package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/loopback"
	"github.com/orderly/orderly/internal/tlsconf/tlstest"
)

// process runs a built binary until the test ends.
func process(t *testing.T, pkg string, env []string, args ...string) *syncBuffer {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(binary(t, pkg), args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = append(os.Environ(), env...), out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", pkg, out.String())
		}
	})
	return out
}

// The services run as their own binaries, secured the way the compose
// stack runs them: the event store with TLS and access control, each
// service serving TLS with API keys and reaching the store with
// credentials in its connection string.
func TestServicesSecured(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := tlstest.Pair(t, dir, "dev")
	keys := filepath.Join(dir, "api-keys")
	if err := os.WriteFile(keys, []byte("key-clerk-0000000001 clerk orders:write,customers:write,read\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const password = "store-admin-secret"
	esAddr := loopback.FreeAddr(t)
	process(t, "cmd/orderly", []string{"ORDERLY_EVENTSTORE_ADMIN_PASSWORD=" + password},
		"eventstore", "-listen", esAddr, "-data", ":memory:", "-tls-cert", certFile, "-tls-key", keyFile)
	store := (&url.URL{Scheme: "esdb", User: url.UserPassword("admin", password), Host: esAddr,
		RawQuery: url.Values{"tls": {"true"}, "tlsCAFile": {certFile}}.Encode()}).String()
	secured := []string{"-tls-cert", certFile, "-tls-key", keyFile, "-api-keys", keys, "-eventstore", store, "-log-level", "warn"}
	cmdGRPC, cmdHTTP := loopback.FreeAddr(t), loopback.FreeAddr(t)
	process(t, "command-svc", nil, append([]string{"-grpc-listen", cmdGRPC, "-http-listen", cmdHTTP, "-data", dir}, secured...)...)
	qryGRPC, qryHTTP := loopback.FreeAddr(t), loopback.FreeAddr(t)
	process(t, "query-svc", nil, append([]string{"-grpc-listen", qryGRPC, "-http-listen", qryHTTP, "-data", dir}, secured...)...)
	metricsAddr := loopback.FreeAddr(t)
	process(t, "projector", nil, "-metrics-listen", metricsAddr, "-data", dir, "-tls-cert", certFile, "-tls-key", keyFile, "-eventstore", store, "-log-level", "warn")

	https := &http.Client{Transport: &http.Transport{TLSClientConfig: tlstest.Client(t, certFile)}}
	for _, addr := range []string{cmdHTTP, qryHTTP, metricsAddr} {
		eventually(t, time.Minute, "https://"+addr+"/healthz", func() error {
			resp, err := https.Get("https://" + addr + "/healthz")
			if err == nil {
				resp.Body.Close()
			}
			return err
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := grpc.NewClient(cmdGRPC, grpc.WithTransportCredentials(credentials.NewTLS(tlstest.Client(t, certFile))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	commands := orderlyv1.NewCommandServiceClient(conn)
	req := &orderlyv1.RegisterCustomerRequest{CommandId: "svc-1", Name: "Ada", Email: "ada@example.com", CreditLimit: usd(1000)}
	if _, err := commands.RegisterCustomer(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("without an API key: %v, want UNAUTHENTICATED", err)
	}
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer key-clerk-0000000001")
	reg, err := commands.RegisterCustomer(authed, req)
	if err != nil {
		t.Fatalf("RegisterCustomer with a key: %v", err)
	}
	placed, err := commands.PlaceOrder(authed, &orderlyv1.PlaceOrderRequest{CommandId: "svc-order", CustomerId: reg.GetCustomerId(),
		Lines: []*orderlyv1.OrderLine{{Sku: "A", Quantity: 1, UnitPrice: usd(10)}}})
	if err != nil {
		t.Fatalf("PlaceOrder: %v", err)
	}
	plain, err := grpc.NewClient(cmdGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := orderlyv1.NewCommandServiceClient(plain).RegisterCustomer(authed, req); status.Code(err) != codes.Unavailable {
		t.Errorf("plain text: %v, want UNAVAILABLE", err)
	}

	// query-svc reads the history from the store; the projector fills the
	// views query-svc serves (min_position waits for it).
	get := func(path string, out any) int {
		r, _ := http.NewRequestWithContext(ctx, "GET", "https://"+qryHTTP+path, nil)
		r.Header.Set("Authorization", "Bearer key-clerk-0000000001")
		resp, err := https.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(out)
		return resp.StatusCode
	}
	var history struct {
		Events []struct{ Type, Actor string }
	}
	eventually(t, 30*time.Second, "the saga approves the order", func() error {
		if code := get("/v1/orders/"+placed.GetOrderId()+"/history", &history); code != http.StatusOK || len(history.Events) < 2 {
			return status.Errorf(codes.Unknown, "%d, %+v", code, history)
		}
		return nil
	})
	if history.Events[0].Actor != "clerk" || history.Events[1].Actor != "saga:credit" {
		t.Errorf("history actors: %+v", history.Events)
	}
	var customer map[string]any
	if code := get("/v1/customers/"+reg.GetCustomerId()+"?min_position="+strconv.FormatUint(placed.GetPosition(), 10), &customer); code != http.StatusOK {
		t.Errorf("GetCustomer after the projector: %d %v", code, customer)
	}
}
