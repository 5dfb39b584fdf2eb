package eventstore_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/orderly/orderly/gen/event_store/client/operations"

	"github.com/orderly/orderly/internal/eventstore"
	"github.com/orderly/orderly/internal/eventstore/estest"
	"github.com/orderly/orderly/internal/tlsconf/tlstest"
)

// secureStore serves a store over TLS with access control for admin,
// alice and bob (in group "ops"), and returns a client factory by user
// ("" for none).
func secureStore(t *testing.T) func(user, password string) *esdb.Client {
	connect, _ := secureStoreOps(t)
	return connect
}

// secureStoreOps is secureStore, also returning a factory of Operations
// clients by user (the official client has none), and with carol in $ops.
func secureStoreOps(t *testing.T) (func(user, password string) *esdb.Client, func(user, password string) operations.OperationsClient) {
	t.Helper()
	certFile, keyFile := tlstest.Pair(t, t.TempDir(), "store")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	access, err := eventstore.NewAccess([]eventstore.User{
		{Name: "admin", Password: "admin-secret", Groups: []string{eventstore.AdminsGroup}},
		{Name: "alice", Password: "alice-secret"},
		{Name: "bob", Password: "bob-secret", Groups: []string{"ops"}},
		{Name: "carol", Password: "carol-secret", Groups: []string{eventstore.OpsGroup}},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, plain := estest.Serve(t, estest.WithConfig(func(c *eventstore.Config) {
		c.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
		c.Access = access
	}))
	u, err := url.Parse(plain)
	if err != nil {
		t.Fatal(err)
	}
	connect := func(user, password string) *esdb.Client {
		cs := url.URL{Scheme: "esdb", Host: u.Host, RawQuery: url.Values{"tls": {"true"}, "tlsCAFile": {certFile}}.Encode()}
		if user != "" {
			cs.User = url.UserPassword(user, password)
		}
		return estest.Client(t, cs.String())
	}
	ops := func(user, password string) operations.OperationsClient {
		opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tlstest.Client(t, certFile)))}
		if user != "" {
			basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
			opts = append(opts, grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				return invoker(metadata.AppendToOutgoingContext(ctx, "authorization", "Basic "+basic), method, req, reply, cc, opts...)
			}))
		}
		cc, err := grpc.NewClient(u.Host, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		return operations.NewOperationsClient(cc)
	}
	return connect, ops
}

// Scavenges are for $admins and $ops, as in EventStoreDB: anonymous callers,
// wrong passwords and other users are refused, and a refused call starts
// nothing.
func TestAccessOperations(t *testing.T) {
	_, ops := secureStoreOps(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := func(user, password string) error {
		_, err := ops(user, password).StartScavenge(ctx, &operations.StartScavengeReq{Options: &operations.StartScavengeReq_Options{}})
		return err
	}
	for _, c := range []struct {
		user, password string
		want           codes.Code
	}{
		{"", "", codes.PermissionDenied},
		{"alice", "wrong", codes.Unauthenticated},
		{"alice", "alice-secret", codes.PermissionDenied},
		{"bob", "bob-secret", codes.PermissionDenied}, // "ops" is not "$ops"
	} {
		if err := start(c.user, c.password); status.Code(err) != c.want {
			t.Errorf("StartScavenge as %q: %v, want %v", c.user, err, c.want)
		}
	}
	if _, err := ops("alice", "alice-secret").StopScavenge(ctx, &operations.StopScavengeReq{Options: &operations.StopScavengeReq_Options{ScavengeId: "x"}}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("StopScavenge as alice: %v, want PermissionDenied", err)
	}
	for _, u := range [][2]string{{"carol", "carol-secret"}, {"admin", "admin-secret"}} {
		if err := start(u[0], u[1]); err != nil {
			t.Errorf("StartScavenge as %s: %v", u[0], err)
		}
	}
}

func esCode(err error) esdb.ErrorCode {
	var e *esdb.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return -1
}

func event() esdb.EventData {
	return esdb.EventData{EventType: "e", ContentType: esdb.ContentTypeJson, Data: []byte(`{}`)}
}

// readAll reads stream to its end (the first error a read answers).
func readErr(ctx context.Context, c *esdb.Client, stream string) error {
	rs, err := c.ReadStream(ctx, stream, esdb.ReadStreamOptions{}, 10)
	if err != nil {
		return err
	}
	defer rs.Close()
	for {
		if _, err := rs.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func subscribeErr(ctx context.Context, c *esdb.Client, stream string) error {
	sub, err := c.SubscribeToStream(ctx, stream, esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	if err != nil {
		return err
	}
	defer sub.Close()
	ev := sub.Recv()
	if ev.SubscriptionDropped != nil {
		return ev.SubscriptionDropped.Error
	}
	return nil
}

// Through the official client: anonymous calls and wrong passwords are
// refused; a stream without $acl is any user's; a stream's $acl decides
// reads, subscriptions, appends, deletes and its metadata for everyone
// but $admins; $all and system streams are the $admins'.
func TestAccessControl(t *testing.T) {
	t.Parallel()
	connect := secureStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, alice, bob := connect("admin", "admin-secret"), connect("alice", "alice-secret"), connect("bob", "bob-secret")

	if _, err := connect("", "").AppendToStream(ctx, "open-1", esdb.AppendToStreamOptions{}, event()); esCode(err) != esdb.ErrorCodeAccessDenied {
		t.Errorf("anonymous append: %v, want access denied", err)
	}
	if err := readErr(ctx, connect("alice", "wrong-password"), "open-1"); esCode(err) != esdb.ErrorCodeUnauthenticated {
		t.Errorf("wrong password: %v, want unauthenticated", err)
	}
	if _, err := alice.AppendToStream(ctx, "open-1", esdb.AppendToStreamOptions{}, event()); err != nil {
		t.Fatalf("alice appends to a stream without $acl: %v", err)
	}
	if err := readErr(ctx, bob, "open-1"); err != nil {
		t.Errorf("bob reads a stream without $acl: %v", err)
	}

	// secret-1: bob's group reads and writes; deletes are the $admins'.
	if _, err := admin.AppendToStream(ctx, "secret-1", esdb.AppendToStreamOptions{}, event()); err != nil {
		t.Fatal(err)
	}
	acl := esdb.Acl{}
	acl.AddReadRoles("ops")
	acl.AddWriteRoles("bob")
	acl.AddDeleteRoles(eventstore.AdminsGroup)
	acl.AddMetaReadRoles("ops")
	acl.AddMetaWriteRoles(eventstore.AdminsGroup)
	md := esdb.StreamMetadata{}
	md.SetAcl(acl)
	if _, err := admin.SetStreamMetadata(ctx, "secret-1", esdb.AppendToStreamOptions{}, md); err != nil {
		t.Fatal(err)
	}
	denied := map[string]error{}
	denied["read"] = readErr(ctx, alice, "secret-1")
	denied["subscribe"] = subscribeErr(ctx, alice, "secret-1")
	_, denied["append"] = alice.AppendToStream(ctx, "secret-1", esdb.AppendToStreamOptions{}, event())
	_, denied["delete"] = alice.DeleteStream(ctx, "secret-1", esdb.DeleteStreamOptions{})
	_, denied["tombstone"] = alice.TombstoneStream(ctx, "secret-1", esdb.TombstoneStreamOptions{})
	_, denied["get metadata"] = alice.GetStreamMetadata(ctx, "secret-1", esdb.ReadStreamOptions{})
	_, denied["set metadata"] = alice.SetStreamMetadata(ctx, "secret-1", esdb.AppendToStreamOptions{}, esdb.StreamMetadata{})
	_, denied["bob deletes"] = bob.DeleteStream(ctx, "secret-1", esdb.DeleteStreamOptions{})
	_, denied["bob sets metadata"] = bob.SetStreamMetadata(ctx, "secret-1", esdb.AppendToStreamOptions{}, esdb.StreamMetadata{})
	denied["bob reads $all"] = func() error {
		rs, err := bob.ReadAll(ctx, esdb.ReadAllOptions{}, 1)
		if err != nil {
			return err
		}
		defer rs.Close()
		_, err = rs.Recv()
		return err
	}()
	denied["bob reads a system stream"] = readErr(ctx, bob, "$settings")
	for what, err := range denied {
		if esCode(err) != esdb.ErrorCodeAccessDenied {
			t.Errorf("%s: %v, want access denied", what, err)
		}
	}

	if err := readErr(ctx, bob, "secret-1"); err != nil {
		t.Errorf("bob (ops) reads: %v", err)
	}
	if err := subscribeErr(ctx, bob, "secret-1"); err != nil {
		t.Errorf("bob (ops) subscribes: %v", err)
	}
	if _, err := bob.AppendToStream(ctx, "secret-1", esdb.AppendToStreamOptions{}, event()); err != nil {
		t.Errorf("bob writes: %v", err)
	}
	if got, err := bob.GetStreamMetadata(ctx, "secret-1", esdb.ReadStreamOptions{}); err != nil || got.StreamAcl() == nil {
		t.Errorf("bob (ops) reads the metadata: %v, %v", got, err)
	}
	rs, err := admin.ReadAll(ctx, esdb.ReadAllOptions{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs.Recv(); err != nil {
		t.Errorf("admin reads $all: %v", err)
	}
	rs.Close()
	if _, err := admin.DeleteStream(ctx, "secret-1", esdb.DeleteStreamOptions{}); err != nil {
		t.Errorf("admin deletes: %v", err)
	}
}

// Access control without TLS is refused at Open: the official clients
// would send no credentials.
func TestAccessNeedsTLS(t *testing.T) {
	access, err := eventstore.NewAccess([]eventstore.User{{Name: "admin", Password: "admin-secret", Groups: []string{eventstore.AdminsGroup}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eventstore.Open(eventstore.Config{Access: access}); err == nil || !strings.Contains(err.Error(), "needs TLS") {
		t.Fatalf("Open = %v, want an error saying access control needs TLS", err)
	}
	if _, err := eventstore.NewAccess([]eventstore.User{{Name: "a b", Password: "long-enough"}}); err == nil {
		t.Error("a user name with a space was accepted")
	}
	if _, err := eventstore.NewAccess([]eventstore.User{{Name: "ab", Password: "short"}}); err == nil {
		t.Error("a short password was accepted")
	}
}
