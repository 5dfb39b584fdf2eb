package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/eventcodec"
	"github.com/orderly/orderly/internal/eventstore/estest"
)

// The callers of the tests: an API key of each permission, and JWT tokens.
const (
	customersKey = "key-customers-0000001"
	ordersKey    = "key-orders-000000001"
	readKey      = "key-read-00000000001"
	adminKey     = "key-admin-0000000001"
	bothKey      = "key-both-00000000001" // orders:write and read
)

func writeKeys(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "api-keys")
	content := "# test keys\n" +
		customersKey + " writer-c customers:write\n" +
		ordersKey + " writer-o orders:write\n" +
		readKey + " reader read\n" +
		adminKey + " root admin\n" +
		bothKey + " clerk orders:write,read\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issuer signs ES256 tokens; its public key is in a PEM file.
type issuer struct{ key *ecdsa.PrivateKey }

func newIssuer(t *testing.T, dir string) (issuer, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "jwt.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return issuer{k}, path
}

func (i issuer) token(t *testing.T, sub string, exp time.Duration, perms ...string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"sub": sub, "iss": "test-issuer", "aud": "orderly", "exp": time.Now().Add(exp).Unix(), "permissions": perms,
	}).SignedString(i.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rpc is one RPC of the API and its REST route (IDs that do not parse, so
// that an admitted call is refused by validation and writes nothing).
type rpc struct {
	method     protoreflect.MethodDescriptor
	full       string
	httpMethod string
	path       string
	need       string
}

var restRoutes = map[string][2]string{
	"RegisterCustomer":  {"POST", "/v1/customers"},
	"ChangeCreditLimit": {"POST", "/v1/customers/x:changeCreditLimit"},
	"PlaceOrder":        {"POST", "/v1/orders"},
	"CancelOrder":       {"POST", "/v1/orders/x:cancel"},
	"GetOrder":          {"GET", "/v1/orders/x"},
	"ListOrders":        {"GET", "/v1/orders?customer_id=x"},
	"GetCustomer":       {"GET", "/v1/customers/x"},
	"ListCustomers":     {"GET", "/v1/customers?page_size=-1"},
	"GetOrderHistory":   {"GET", "/v1/orders/x/history"},
	"GetOrderAt":        {"GET", "/v1/orders/x/at"},
	"WatchOrder":        {"GET", "/v1/orders/x:watch"},
}

// rpcs lists every RPC of both services, from their descriptors.
func rpcs(t *testing.T) []rpc {
	t.Helper()
	var out []rpc
	for _, svc := range []protoreflect.ServiceDescriptor{
		orderlyv1.File_orderly_v1_command_service_proto.Services().Get(0),
		orderlyv1.File_orderly_v1_query_service_proto.Services().Get(0),
	} {
		need := "read"
		for i := range svc.Methods().Len() {
			m := svc.Methods().Get(i)
			route, ok := restRoutes[string(m.Name())]
			if !ok {
				t.Fatalf("no REST route in the test for %s", m.FullName())
			}
			if svc.Name() == "CommandService" {
				need = "orders:write"
				if strings.Contains(string(m.Name()), "Customer") || m.Name() == "ChangeCreditLimit" {
					need = "customers:write"
				}
			}
			out = append(out, rpc{method: m, full: "/" + string(svc.FullName()) + "/" + string(m.Name()), httpMethod: route[0], path: route[1], need: need})
		}
	}
	return out
}

// callGRPC calls r with an empty request as the caller of token ("" for
// none) and returns the status: the first message's, for a stream.
func callGRPC(ctx context.Context, conn *grpc.ClientConn, r rpc, token string) error {
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	in, out := dynamicpb.NewMessage(r.method.Input()), dynamicpb.NewMessage(r.method.Output())
	if !r.method.IsStreamingServer() {
		return conn.Invoke(ctx, r.full, in, out)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, r.full)
	if err != nil {
		return err
	}
	if err := s.SendMsg(in); err != nil {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	return s.RecvMsg(out)
}

type restAnswer struct {
	code   int
	header http.Header
	body   map[string]any
}

func callREST(t *testing.T, base string, r rpc, token string) restAnswer {
	t.Helper()
	var body io.Reader
	if r.httpMethod == "POST" {
		body = strings.NewReader("{}")
	}
	req, err := http.NewRequest(r.httpMethod, base+r.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := restAnswer{code: resp.StatusCode, header: resp.Header}
	_ = json.Unmarshal([]byte(strings.SplitN(string(b), "\n", 2)[0]), &a.body)
	if e, ok := a.body["error"].(map[string]any); ok {
		a.body = e // a stream's error (WatchOrder), in its envelope
	}
	return a
}

// Every RPC, over gRPC and over REST, is admitted for a caller with its
// permission (or admin) and refused for the others: PERMISSION_DENIED /
// 403 with the gateway's JSON error; a missing, unknown or expired
// credential is UNAUTHENTICATED / 401 with a bearer challenge. Health,
// /metrics, the API description and the console (whose page asks for a
// credential) stay open.
func TestAuthorizationEveryRPC(t *testing.T) {
	dir := t.TempDir()
	iss, keyFile := newIssuer(t, dir)
	addrs, _ := startSystem(t, "-api-keys", writeKeys(t, dir), "-jwt-key-file", keyFile, "-jwt-issuer", "test-issuer", "-jwt-audience", "orderly")
	ctx := callCtx(t)
	conns := map[string]*grpc.ClientConn{
		"/orderly.v1.CommandService/": dialGRPC(t, addrs.commands, insecure.NewCredentials()),
		"/orderly.v1.QueryService/":   dialGRPC(t, addrs.queries, insecure.NewCredentials()),
	}
	connFor := func(r rpc) *grpc.ClientConn {
		for prefix, c := range conns {
			if strings.HasPrefix(r.full, prefix) {
				return c
			}
		}
		t.Fatalf("no connection for %s", r.full)
		return nil
	}
	callers := map[string]struct {
		token string
		perms []string
	}{
		"customers key": {customersKey, []string{"customers:write"}},
		"orders key":    {ordersKey, []string{"orders:write"}},
		"read key":      {readKey, []string{"read"}},
		"admin key":     {adminKey, []string{"customers:write", "orders:write", "read"}},
		"JWT":           {iss.token(t, "jwt-user", time.Hour, "customers:write", "read"), []string{"customers:write", "read"}},
	}
	base := "http://" + addrs.http
	for _, r := range rpcs(t) {
		for name, c := range callers {
			allowed := slices.Contains(c.perms, r.need)
			err := callGRPC(ctx, connFor(r), r, c.token)
			switch code := status.Code(err); {
			case allowed && (code == codes.PermissionDenied || code == codes.Unauthenticated):
				t.Errorf("gRPC %s as %s: %v, want admitted", r.full, name, err)
			case !allowed && code != codes.PermissionDenied:
				t.Errorf("gRPC %s as %s: %v, want PERMISSION_DENIED", r.full, name, err)
			}
			a := callREST(t, base, r, c.token)
			switch {
			case allowed && (a.code == http.StatusForbidden || a.code == http.StatusUnauthorized):
				t.Errorf("REST %s %s as %s: %d %v, want admitted", r.httpMethod, r.path, name, a.code, a.body)
			case !allowed && (a.code != http.StatusForbidden || a.body["code"] != float64(codes.PermissionDenied) || !strings.Contains(a.body["message"].(string), r.need)):
				t.Errorf("REST %s %s as %s: %d %v, want 403 with a JSON error naming %s", r.httpMethod, r.path, name, a.code, a.body, r.need)
			}
		}
		for name, token := range map[string]string{
			"no credentials": "", "an unknown key": "key-unknown-00000000",
			"an expired token": iss.token(t, "jwt-user", -time.Hour, "read", "orders:write", "customers:write"),
		} {
			if err := callGRPC(ctx, connFor(r), r, token); status.Code(err) != codes.Unauthenticated {
				t.Errorf("gRPC %s with %s: %v, want UNAUTHENTICATED", r.full, name, err)
			}
			a := callREST(t, base, r, token)
			challenge := a.header.Get("WWW-Authenticate")
			if a.code != http.StatusUnauthorized || !strings.HasPrefix(challenge, `Bearer realm="orderly"`) || a.body["code"] != float64(codes.Unauthenticated) {
				t.Errorf("REST %s %s with %s: %d %q %v, want 401 with a bearer challenge and a JSON error", r.httpMethod, r.path, name, a.code, challenge, a.body)
			}
			if n := len(a.header.Values("WWW-Authenticate")); n != 1 {
				t.Errorf("REST %s with %s: %d WWW-Authenticate headers, want 1", r.path, name, n)
			}
			if (token != "") != strings.Contains(challenge, `error="invalid_token"`) {
				t.Errorf("REST with %s: challenge %q", name, challenge)
			}
		}
	}

	health := healthpb.NewHealthClient(conns["/orderly.v1.QueryService/"])
	if resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health without credentials: %v, %v", resp, err)
	}
	for _, path := range []string{"/healthz", "/metrics", "/openapi.json", "/console"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s without credentials: %s, want 200", path, resp.Status)
		}
	}
}

// The caller's subject is the actor of the events its command wrote, read
// back with the official client and served in the order's history; the
// saga's steps are recorded as saga:credit.
func TestActorRecorded(t *testing.T) {
	dir := t.TempDir()
	iss, keyFile := newIssuer(t, dir)
	addrs, _ := startSystem(t, "-api-keys", writeKeys(t, dir), "-jwt-key-file", keyFile, "-jwt-issuer", "test-issuer", "-jwt-audience", "orderly")
	ctx := callCtx(t)
	token := iss.token(t, "jwt-user", time.Hour, "customers:write")
	authed := func(token string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	commands := orderlyv1.NewCommandServiceClient(dialGRPC(t, addrs.commands, insecure.NewCredentials()))
	reg, err := commands.RegisterCustomer(authed(token), &orderlyv1.RegisterCustomerRequest{CommandId: "actor-1", Name: "Ada", Email: "ada@example.com", CreditLimit: usd(1000)})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://"+addrs.http+"/v1/orders", strings.NewReader(`{"commandId":"actor-order","customerId":"`+reg.GetCustomerId()+`","lines":[{"sku":"A","quantity":1,"unitPrice":{"currencyCode":"USD","minorUnits":"10"}}]}`))
	req.Header.Set("Authorization", "Bearer "+ordersKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var placed struct{ OrderID string }
	err = json.NewDecoder(resp.Body).Decode(&placed)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("PlaceOrder over REST: %s, %v", resp.Status, err)
	}

	store := estest.Client(t, "esdb://"+addrs.eventStore+"?tls=false")
	actors := func(stream string) []string {
		rs, err := store.ReadStream(ctx, stream, esdb.ReadStreamOptions{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		var out []string
		for {
			ev, err := rs.Recv()
			if err != nil {
				return out
			}
			var m eventcodec.Metadata
			if err := json.Unmarshal(ev.Event.UserMetadata, &m); err != nil {
				t.Fatal(err)
			}
			out = append(out, ev.Event.EventType+" by "+m.Actor)
		}
	}
	// The saga reserves credit, then approves the order.
	var history *orderlyv1.GetOrderHistoryResponse
	queries := orderlyv1.NewQueryServiceClient(dialGRPC(t, addrs.queries, insecure.NewCredentials()))
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		history, err = queries.GetOrderHistory(authed(readKey), &orderlyv1.GetOrderHistoryRequest{OrderId: placed.OrderID})
		if err != nil {
			t.Fatal(err)
		}
		if len(history.GetEvents()) >= 2 || time.Now().After(deadline) {
			break
		}
	}
	want := []string{"orderly.CustomerRegistered by jwt-user", "orderly.CreditReserved by saga:credit"}
	if got := actors("customer-" + reg.GetCustomerId()); !slices.Equal(got, want) {
		t.Errorf("customer stream: %v, want %v", got, want)
	}
	if got, want := actors("order-"+placed.OrderID), []string{"orderly.OrderPlaced by writer-o", "orderly.OrderApproved by saga:credit"}; !slices.Equal(got, want) {
		t.Errorf("order stream: %v, want %v", got, want)
	}
	var shown []string
	for _, e := range history.GetEvents() {
		shown = append(shown, e.GetType()+" by "+e.GetActor())
	}
	if want := []string{"orderly.OrderPlaced by writer-o", "orderly.OrderApproved by saga:credit"}; !slices.Equal(shown, want) {
		t.Errorf("history over gRPC: %v, want %v", shown, want)
	}
	r := callREST(t, "http://"+addrs.http, rpc{httpMethod: "GET", path: "/v1/orders/" + placed.OrderID + "/history"}, readKey)
	if events, _ := r.body["events"].([]any); len(events) < 1 || events[0].(map[string]any)["actor"] != "writer-o" {
		t.Errorf("history over REST: %v", r.body)
	}
}

// Over -rate-limit a caller is refused RESOURCE_EXHAUSTED with a RetryInfo
// (gRPC), 429 with Retry-After in seconds (REST); the bucket is the
// subject's, whichever way it calls, and another subject has its own. With
// -metrics-auth, /metrics needs the read permission.
func TestRateLimitAndMetricsAuth(t *testing.T) {
	dir := t.TempDir()
	// One call per 1,000 s: the burst is all a caller has during the test.
	addrs, _ := startSystem(t, "-api-keys", writeKeys(t, dir), "-rate-limit", "0.001", "-rate-burst", "2", "-metrics-auth")
	ctx := callCtx(t)
	base := "http://" + addrs.http
	list := rpc{httpMethod: "GET", path: "/v1/customers"}
	queries := orderlyv1.NewQueryServiceClient(dialGRPC(t, addrs.queries, insecure.NewCredentials()))
	asReader := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+readKey)
	if _, err := queries.ListCustomers(asReader, &orderlyv1.ListCustomersRequest{}); err != nil {
		t.Fatal(err)
	}
	if a := callREST(t, base, list, readKey); a.code != http.StatusOK {
		t.Fatalf("second call: %d %v", a.code, a.body)
	}
	a := callREST(t, base, list, readKey)
	if n := len(a.header.Values("Retry-After")); n != 1 {
		t.Errorf("%d Retry-After headers, want 1", n)
	}
	after, err := strconv.Atoi(a.header.Get("Retry-After"))
	if a.code != http.StatusTooManyRequests || err != nil || after < 1 || a.body["code"] != float64(codes.ResourceExhausted) {
		t.Errorf("third call over REST: %d, Retry-After %q, %v; want 429 with Retry-After in seconds", a.code, a.header.Get("Retry-After"), a.body)
	}
	_, err = queries.ListCustomers(asReader, &orderlyv1.ListCustomersRequest{})
	st := status.Convert(err)
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if st.Code() != codes.ResourceExhausted || retry == nil || retry.GetRetryDelay().AsDuration() <= 0 {
		t.Errorf("fourth call over gRPC: %v (retry info %v), want RESOURCE_EXHAUSTED with a delay", err, retry)
	}
	if a := callREST(t, base, list, adminKey); a.code != http.StatusOK {
		t.Errorf("another subject: %d %v, want its own bucket", a.code, a.body)
	}

	for token, want := range map[string]int{"": http.StatusUnauthorized, ordersKey: http.StatusForbidden, readKey: http.StatusOK} {
		req, _ := http.NewRequest("GET", base+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || want == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("/metrics with %q: %s, want %d", token, resp.Status, want)
		}
	}
	if resp, err := http.Get(base + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz under -metrics-auth: %v, %v", resp, err)
	}
}

// Without authentication, the rate limit is per client address: REST and
// gRPC calls from one address share a bucket.
func TestRateLimitAnonymous(t *testing.T) {
	addrs, _ := startSystem(t, "-rate-limit", "0.001", "-rate-burst", "2")
	ctx := callCtx(t)
	queries := orderlyv1.NewQueryServiceClient(dialGRPC(t, addrs.queries, insecure.NewCredentials()))
	if _, err := queries.ListCustomers(ctx, &orderlyv1.ListCustomersRequest{}); err != nil {
		t.Fatal(err)
	}
	if a := callREST(t, "http://"+addrs.http, rpc{httpMethod: "GET", path: "/v1/customers"}, ""); a.code != http.StatusOK {
		t.Fatalf("second call: %d %v", a.code, a.body)
	}
	if _, err := queries.ListCustomers(ctx, &orderlyv1.ListCustomersRequest{}); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("third call from the same address: %v, want RESOURCE_EXHAUSTED", err)
	}
	health := healthpb.NewHealthClient(dialGRPC(t, addrs.queries, insecure.NewCredentials()))
	if _, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health is rate limited: %v", err)
	}
}
