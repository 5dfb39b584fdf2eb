package main

import (
	"bufio"
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	orderlyv1 "github.com/orderly/orderly/gen/orderly/v1"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/tlsconf/tlstest"
)

// startSystem runs the all-in-one on loopback ports the OS picks, with
// args added, until the test ends.
func startSystem(t *testing.T, args ...string) (allAddrs, *syncBuffer) {
	t.Helper()
	addrs, logs, _ := startStoppable(t, args...)
	return addrs, logs
}

// startStoppable is startSystem, also returning a stop that waits for the
// system to shut down (the test's end stops it otherwise).
func startStoppable(t *testing.T, args ...string) (allAddrs, *syncBuffer, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	listening := make(chan allAddrs, 1)
	stopped := make(chan error, 1)
	go func() {
		stopped <- startAll(ctx, append([]string{"-data", t.TempDir(), "-log-level", "info",
			"-eventstore-listen", "127.0.0.1:0", "-commands-listen", "127.0.0.1:0",
			"-queries-listen", "127.0.0.1:0", "-http-listen", "127.0.0.1:0"}, args...), func(a allAddrs) { listening <- a }, logs)
	}()
	select {
	case a := <-listening:
		var once sync.Once
		stop := func() {
			once.Do(func() {
				cancel()
				if err := <-stopped; err != nil {
					t.Errorf("startAll: %v", err)
				}
			})
		}
		t.Cleanup(stop)
		return a, logs, stop
	case err := <-stopped:
		cancel()
		t.Fatalf("startAll: %v\n%s", err, logs.String())
		return allAddrs{}, nil, nil
	}
}

func dialGRPC(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func usd(n int64) *orderlyv1.Money { return &orderlyv1.Money{CurrencyCode: "USD", MinorUnits: n} }

// With -tls-cert and -tls-key every listener of the all-in-one serves TLS
// and refuses plain text: commands and queries over gRPC, REST (its watch
// stream too, which reaches the query server through the gateway's
// in-memory connection), and the event store, which the official client
// reaches with tls=true and tlsCAFile.
func TestAllInOneTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := tlstest.Pair(t, dir, "server")
	addrs, _ := startSystem(t, "-tls-cert", certFile, "-tls-key", keyFile)
	tlsCfg := tlstest.Client(t, certFile)
	ctx := callCtx(t)

	commands := orderlyv1.NewCommandServiceClient(dialGRPC(t, addrs.commands, credentials.NewTLS(tlsCfg)))
	reg, err := commands.RegisterCustomer(ctx, &orderlyv1.RegisterCustomerRequest{CommandId: "tls-1", Name: "Ada", Email: "ada@example.com", CreditLimit: usd(1000)})
	if err != nil {
		t.Fatalf("RegisterCustomer over TLS: %v", err)
	}
	order, err := commands.PlaceOrder(ctx, &orderlyv1.PlaceOrderRequest{CommandId: "tls-order", CustomerId: reg.GetCustomerId(),
		Lines: []*orderlyv1.OrderLine{{Sku: "A", Quantity: 1, UnitPrice: usd(10)}}})
	if err != nil {
		t.Fatalf("PlaceOrder over TLS: %v", err)
	}
	queries := orderlyv1.NewQueryServiceClient(dialGRPC(t, addrs.queries, credentials.NewTLS(tlsCfg)))
	if _, err := queries.GetCustomer(ctx, &orderlyv1.GetCustomerRequest{CustomerId: reg.GetCustomerId(), MinPosition: reg.GetPosition()}); err != nil {
		t.Fatalf("GetCustomer over TLS: %v", err)
	}
	for name, addr := range map[string]string{"commands": addrs.commands, "queries": addrs.queries} {
		plain := orderlyv1.NewQueryServiceClient(dialGRPC(t, addr, insecure.NewCredentials()))
		if _, err := plain.ListCustomers(ctx, &orderlyv1.ListCustomersRequest{}); status.Code(err) != codes.Unavailable {
			t.Errorf("%s over plain text: %v, want UNAVAILABLE", name, err)
		}
	}

	https := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true}}
	resp, err := https.Get("https://" + addrs.http + "/v1/customers/" + reg.GetCustomerId())
	if err != nil {
		t.Fatalf("REST over TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Errorf("REST over TLS: %s %s, want 200 over HTTP/2", resp.Proto, resp.Status)
	}
	if resp, err := http.Get("http://" + addrs.http + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("REST answered plain HTTP")
		}
	}
	watch, err := https.Get("https://" + addrs.http + "/v1/orders/" + order.GetOrderId() + ":watch")
	if err != nil {
		t.Fatalf("REST watch over TLS: %v", err)
	}
	line, err := bufio.NewReader(watch.Body).ReadString('\n')
	watch.Body.Close()
	if err != nil || !strings.Contains(line, order.GetOrderId()) {
		t.Errorf("REST watch over TLS: %q, %v", line, err)
	}

	secure := estest.Client(t, "esdb://"+addrs.eventStore+"?tls=true&tlsCAFile="+url.QueryEscape(certFile))
	if err := readOne(ctx, secure, "customer-"+reg.GetCustomerId()); err != nil {
		t.Fatalf("event store over TLS: %v", err)
	}
	plainStore := estest.Client(t, "esdb://"+addrs.eventStore+"?tls=false")
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := readOne(short, plainStore, "customer-"+reg.GetCustomerId()); err == nil {
		t.Error("event store answered plain text")
	}
}

// readOne reads the first event of stream.
func readOne(ctx context.Context, c *esdb.Client, stream string) error {
	rs, err := c.ReadStream(ctx, stream, esdb.ReadStreamOptions{}, 1)
	if err != nil {
		return err
	}
	defer rs.Close()
	_, err = rs.Recv()
	return err
}

// With -tls-client-ca every listener refuses a client without a
// certificate the CA signed; the all-in-one's own clients (services to the
// event store) present theirs, so the system works end to end.
func TestAllInOneClientCertificates(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := tlstest.Pair(t, dir, "server")
	clientCert, clientKey := tlstest.Pair(t, dir, "client")
	cas := filepath.Join(dir, "client-cas.pem")
	concat(t, cas, certFile, clientCert)
	addrs, _ := startSystem(t, "-tls-cert", certFile, "-tls-key", keyFile, "-tls-client-ca", cas)
	ctx := callCtx(t)

	withCert := credentials.NewTLS(tlstest.Client(t, certFile, clientCert, clientKey))
	commands := orderlyv1.NewCommandServiceClient(dialGRPC(t, addrs.commands, withCert))
	reg, err := commands.RegisterCustomer(ctx, &orderlyv1.RegisterCustomerRequest{CommandId: "mtls-1", Name: "Ada", Email: "ada@example.com", CreditLimit: usd(1000)})
	if err != nil {
		t.Fatalf("RegisterCustomer with a client certificate: %v", err)
	}
	queries := orderlyv1.NewQueryServiceClient(dialGRPC(t, addrs.queries, withCert))
	if _, err := queries.GetCustomer(ctx, &orderlyv1.GetCustomerRequest{CustomerId: reg.GetCustomerId(), MinPosition: reg.GetPosition()}); err != nil {
		t.Fatalf("GetCustomer with a client certificate (the projector reached the store): %v", err)
	}

	noCert := orderlyv1.NewCommandServiceClient(dialGRPC(t, addrs.commands, credentials.NewTLS(tlstest.Client(t, certFile))))
	if _, err := noCert.RegisterCustomer(ctx, &orderlyv1.RegisterCustomerRequest{CommandId: "mtls-2", Name: "Bob", Email: "bob@example.com", CreditLimit: usd(1)}); status.Code(err) != codes.Unavailable {
		t.Errorf("gRPC without a client certificate: %v, want UNAVAILABLE", err)
	}
	noCertHTTP := &http.Client{Transport: &http.Transport{TLSClientConfig: tlstest.Client(t, certFile)}}
	if resp, err := noCertHTTP.Get("https://" + addrs.http + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("REST without a client certificate: %s", resp.Status)
	}
	withCertHTTP := &http.Client{Transport: &http.Transport{TLSClientConfig: tlstest.Client(t, certFile, clientCert, clientKey)}}
	resp, err := withCertHTTP.Get("https://" + addrs.http + "/v1/customers/" + reg.GetCustomerId())
	if err != nil {
		t.Fatalf("REST with a client certificate: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("REST with a client certificate: %s", resp.Status)
	}
	storeNoCert := estest.Client(t, "esdb://"+addrs.eventStore+"?tls=true&tlsCAFile="+url.QueryEscape(certFile))
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := readOne(short, storeNoCert, "customer-"+reg.GetCustomerId()); err == nil {
		t.Error("event store answered a client without a certificate")
	}
	storeWithCert := estest.Client(t, "esdb://"+addrs.eventStore+"?"+url.Values{"tls": {"true"}, "tlsCAFile": {certFile}, "userCertFile": {clientCert}, "userKeyFile": {clientKey}}.Encode())
	if err := readOne(ctx, storeWithCert, "customer-"+reg.GetCustomerId()); err != nil {
		t.Errorf("event store with a client certificate: %v", err)
	}
}

func concat(t *testing.T, dst string, srcs ...string) {
	t.Helper()
	var all []byte
	for _, s := range srcs {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	if err := os.WriteFile(dst, all, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Plain text on an address other than loopback needs -insecure (refused
// before anything listens; tlsconf's tests show -insecure logged); the
// loopback quickstart needs no flag (every other test).
func TestAllInOneRefusesPlainTextOffLoopback(t *testing.T) {
	args := []string{"-data", t.TempDir(), "-eventstore-listen", "127.0.0.1:0", "-commands-listen", "127.0.0.1:0",
		"-queries-listen", "127.0.0.1:0", "-http-listen", "0.0.0.0:0"}
	err := startAll(context.Background(), args, func(allAddrs) { t.Error("started") }, &syncBuffer{})
	if err == nil || !strings.Contains(err.Error(), "-insecure") || !strings.Contains(err.Error(), "0.0.0.0:0") {
		t.Fatalf("err = %v, want one naming the address and -insecure", err)
	}
}

// With ORDERLY_EVENTSTORE_ADMIN_PASSWORD the embedded store's access
// control is on: the all-in-one's own services connect as admin (the saga
// and the projector read $all) and the system works end to end, while an
// official client without credentials, or with others, is refused. Without
// TLS it does not start: the client would send no credentials.
func TestAllInOneStoreAccess(t *testing.T) {
	t.Setenv(AdminPasswordEnv, "admin-secret-1")
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("# name password groups\nreader reader-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := startAll(context.Background(), []string{"-data", t.TempDir(), "-eventstore-listen", "127.0.0.1:0", "-commands-listen", "127.0.0.1:0",
		"-queries-listen", "127.0.0.1:0", "-http-listen", "127.0.0.1:0"}, func(allAddrs) { t.Error("started") }, &syncBuffer{}); err == nil || !strings.Contains(err.Error(), "needs TLS") {
		t.Fatalf("access control without TLS: %v, want a refusal", err)
	}
	certFile, keyFile := tlstest.Pair(t, dir, "server")
	addrs, _ := startSystem(t, "-tls-cert", certFile, "-tls-key", keyFile, "-eventstore-users", users)
	ctx := callCtx(t)
	commands := orderlyv1.NewCommandServiceClient(dialGRPC(t, addrs.commands, credentials.NewTLS(tlstest.Client(t, certFile))))
	reg, err := commands.RegisterCustomer(ctx, &orderlyv1.RegisterCustomerRequest{CommandId: "acl-1", Name: "Ada", Email: "ada@example.com", CreditLimit: usd(1000)})
	if err != nil {
		t.Fatalf("RegisterCustomer: %v", err)
	}
	queries := orderlyv1.NewQueryServiceClient(dialGRPC(t, addrs.queries, credentials.NewTLS(tlstest.Client(t, certFile))))
	if _, err := queries.GetCustomer(ctx, &orderlyv1.GetCustomerRequest{CustomerId: reg.GetCustomerId(), MinPosition: reg.GetPosition()}); err != nil {
		t.Fatalf("GetCustomer after the projector read $all as admin: %v", err)
	}
	store := func(userinfo string) *esdb.Client {
		return estest.Client(t, "esdb://"+userinfo+addrs.eventStore+"?tls=true&tlsCAFile="+url.QueryEscape(certFile))
	}
	stream := "customer-" + reg.GetCustomerId()
	for who, userinfo := range map[string]string{"anonymous": "", "a wrong password": "admin:nope@"} {
		if err := readOne(ctx, store(userinfo), stream); err == nil {
			t.Errorf("%s read the store", who)
		}
	}
	if err := readOne(ctx, store("reader:reader-secret@"), stream); err != nil {
		t.Errorf("a user of -eventstore-users reads a stream without $acl: %v", err)
	}
	if err := readOne(ctx, store("admin:admin-secret-1@"), stream); err != nil {
		t.Errorf("admin: %v", err)
	}
}
