package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/orderly/orderly/gen/orderly/v1" // registers the services' descriptors
)

// Every RPC of every service of the API has its permission in the table: a
// method added without one would need admin (closed, but surely a mistake).
func TestEveryRPCHasAPermission(t *testing.T) {
	n := 0
	protoregistry.GlobalFiles.RangeFilesByPackage("orderly.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			svc := fd.Services().Get(i)
			for j := range svc.Methods().Len() {
				full := "/" + string(svc.FullName()) + "/" + string(svc.Methods().Get(j).Name())
				n++
				if p, ok := methods[full]; !ok || p == open {
					t.Errorf("%s has no permission in the table (or is open)", full)
				}
			}
		}
		return true
	})
	if n < 11 {
		t.Fatalf("found %d RPCs; the descriptors were not registered", n)
	}
	if required("/orderly.v1.Future/Method") != Admin {
		t.Error("a method missing from the table does not need admin")
	}
}

func TestPermissions(t *testing.T) {
	admin := Principal{Permissions: []Permission{Admin}}
	reader := Principal{Permissions: []Permission{Read}}
	for _, perm := range known {
		if !admin.Allows(perm) {
			t.Errorf("admin does not allow %s", perm)
		}
	}
	if reader.Allows(OrdersWrite) || reader.Allows(CustomersWrite) || reader.Allows(Admin) || !reader.Allows(Read) {
		t.Error("read allows the wrong things")
	}
}

func writeFile(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func code(err error) codes.Code { return status.Code(err) }

// The key file: comments and blank lines, several permissions; an edit
// takes effect at the next call; a broken edit keeps the keys in force and
// is logged; a bad file at start fails the start, naming the line.
func TestAPIKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	now := time.Now()
	writeFile(t, path, "# operators\n\nkey-0123456789abcdef alice read,orders:write\nkey-fedcba9876543210 bob admin # all\n", now)
	var logs strings.Builder
	g, err := Flags{APIKeysFile: path}.New(context.Background(), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := g.authenticate("key-0123456789abcdef")
	if err != nil || p.Subject != "alice" || !p.Allows(OrdersWrite) || p.Allows(CustomersWrite) {
		t.Fatalf("alice = %+v, %v", p, err)
	}
	if _, err := g.authenticate("key-0123456789abcdeX"); code(err) != codes.Unauthenticated {
		t.Fatalf("a wrong key: %v", err)
	}

	writeFile(t, path, "key-0123456789abcdef alice read\nkey-new-0123456789ab carol customers:write\n", now.Add(time.Second))
	if p, err := g.authenticate("key-new-0123456789ab"); err != nil || p.Subject != "carol" {
		t.Fatalf("after reload, carol = %+v, %v", p, err)
	}
	if _, err := g.authenticate("key-fedcba9876543210"); code(err) != codes.Unauthenticated {
		t.Fatalf("after reload, bob's removed key: %v", err)
	}
	if p, _ := g.authenticate("key-0123456789abcdef"); p.Allows(OrdersWrite) {
		t.Fatal("after reload, alice keeps a permission taken away")
	}

	writeFile(t, path, "key-0123456789abcdef alice read\nkey-other-0123456789 dave superuser\n", now.Add(2*time.Second))
	if p, err := g.authenticate("key-new-0123456789ab"); err != nil || p.Subject != "carol" {
		t.Fatalf("after a broken edit, carol = %+v, %v (the previous keys should stay)", p, err)
	}
	if !strings.Contains(logs.String(), `line 2: unknown permission \"superuser\"`) {
		t.Errorf("the broken edit was not logged with its line:\n%s", logs.String())
	}

	for content, want := range map[string]string{
		"short alice read\n":                                         "line 1: key shorter than 16",
		"key-0123456789abcdef alice\n":                               "line 1: want KEY SUBJECT",
		"key-0123456789abcdef a read\nkey-0123456789abcdef b read\n": "line 2: the key of line 1 again",
	} {
		writeFile(t, path, content, now)
		if _, err := (Flags{APIKeysFile: path}).New(context.Background(), slog.Default()); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", content, err, want)
		}
	}
}

// tokens signs test tokens.
type tokens struct {
	key *rsa.PrivateKey
	kid string
}

func newTokens(t *testing.T, kid string) tokens {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return tokens{key: k, kid: kid}
}

func (k tokens) sign(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	if k.kid != "" {
		tok.Header["kid"] = k.kid
	}
	s, err := tok.SignedString(k.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (k tokens) publicPEM(t *testing.T) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&k.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func (k tokens) jwks(t *testing.T) []byte {
	t.Helper()
	n := jwtB64(k.key.N.Bytes())
	e := jwtB64([]byte{1, 0, 1})
	b, err := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "RSA", "kid": k.kid, "alg": "RS256", "use": "sig", "n": n, "e": e}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jwtB64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func valid(extra jwt.MapClaims) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "alice", "iss": "https://issuer.example", "aud": "orderly", "exp": time.Now().Add(time.Hour).Unix(), "permissions": []string{"read", "orders:write"}}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// checkTokens runs the refusals every token verifier must make.
func checkTokens(t *testing.T, g *Guard, signer tokens) {
	t.Helper()
	p, err := g.authenticate(signer.sign(t, valid(nil)))
	if err != nil || p.Subject != "alice" || !p.Allows(Read) || !p.Allows(OrdersWrite) || p.Allows(CustomersWrite) {
		t.Fatalf("valid token: %+v, %v", p, err)
	}
	if p, err := g.authenticate(signer.sign(t, valid(jwt.MapClaims{"permissions": "customers:write read other:thing"}))); err != nil || !p.Allows(CustomersWrite) || p.Allows(OrdersWrite) {
		t.Errorf("space-separated permissions: %+v, %v", p, err)
	}

	foreign := newTokens(t, signer.kid)
	good := signer.sign(t, valid(nil))
	parts := strings.Split(good, ".")
	tamperedClaims := jwtB64([]byte(`{"sub":"mallory","iss":"https://issuer.example","aud":"orderly","exp":9999999999,"permissions":["admin"]}`))
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, valid(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, valid(nil))
	hs.Header["kid"] = signer.kid
	hmacWithPublicKey, err := hs.SignedString(signer.publicPEM(t))
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	es, err := jwt.NewWithClaims(jwt.SigningMethodES256, valid(nil)).SignedString(ec)
	if err != nil {
		t.Fatal(err)
	}
	for name, token := range map[string]string{
		"expired":                     signer.sign(t, valid(jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()})),
		"no exp":                      signer.sign(t, valid(jwt.MapClaims{"exp": nil})),
		"not yet valid":               signer.sign(t, valid(jwt.MapClaims{"nbf": time.Now().Add(time.Hour).Unix()})),
		"wrong issuer":                signer.sign(t, valid(jwt.MapClaims{"iss": "https://other.example"})),
		"wrong audience":              signer.sign(t, valid(jwt.MapClaims{"aud": "another-app"})),
		"no subject":                  signer.sign(t, valid(jwt.MapClaims{"sub": nil})),
		"foreign key":                 foreign.sign(t, valid(nil)),
		"tampered":                    parts[0] + "." + tamperedClaims + "." + parts[2],
		"alg none":                    none,
		"HS256, public key as secret": hmacWithPublicKey,
		"another algorithm family":    es,
		"garbage":                     "a.b.c",
	} {
		_, err := g.authenticate(token)
		if code(err) != codes.Unauthenticated {
			t.Errorf("%s token: %v, want UNAUTHENTICATED", name, err)
		}
	}
}

func TestJWTKeyFile(t *testing.T) {
	signer := newTokens(t, "")
	path := filepath.Join(t.TempDir(), "key.pem")
	writeFile(t, path, string(signer.publicPEM(t)), time.Now())
	g, err := Flags{JWTKeyFile: path, JWTIssuer: "https://issuer.example", JWTAudience: "orderly", JWTPermissionsClaim: "permissions"}.New(context.Background(), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	checkTokens(t, g, signer)
}

func TestJWTKeyFileJWKS(t *testing.T) {
	signer := newTokens(t, "k1")
	path := filepath.Join(t.TempDir(), "jwks.json")
	writeFile(t, path, string(signer.jwks(t)), time.Now())
	g, err := Flags{JWTKeyFile: path, JWTIssuer: "https://issuer.example", JWTAudience: "orderly", JWTPermissionsClaim: "permissions"}.New(context.Background(), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	checkTokens(t, g, signer)
}

// A JWKS URL (a loopback server here) is fetched at start; a key added
// later (rotation) is fetched when a token first names it.
func TestJWKSURL(t *testing.T) {
	first, second := newTokens(t, "k1"), newTokens(t, "k2")
	current := first.jwks(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(current)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := (Flags{JWKSURL: srv.URL}).New(ctx, slog.Default()); err == nil || !strings.Contains(err.Error(), "-jwt-issuer and -jwt-audience") {
		t.Fatalf("a JWKS URL without issuer and audience: %v", err)
	}
	g, err := Flags{JWKSURL: srv.URL, JWTIssuer: "https://issuer.example", JWTAudience: "orderly", JWTPermissionsClaim: "permissions"}.New(ctx, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	checkTokens(t, g, first)

	var both struct{ Keys []json.RawMessage }
	var k2 struct{ Keys []json.RawMessage }
	_ = json.Unmarshal(first.jwks(t), &both)
	_ = json.Unmarshal(second.jwks(t), &k2)
	both.Keys = append(both.Keys, k2.Keys...)
	current, _ = json.Marshal(map[string]any{"keys": both.Keys})
	if p, err := g.authenticate(second.sign(t, valid(nil))); err != nil || p.Subject != "alice" {
		t.Fatalf("a token of the rotated-in key: %+v, %v", p, err)
	}
}

func TestMissingCredentials(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	writeFile(t, path, "key-0123456789abcdef alice read\n", time.Now())
	g, err := Flags{APIKeysFile: path}.New(context.Background(), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.authenticate(bearer(nil))
	if code(err) != codes.Unauthenticated || Challenge(status.Convert(err)) != `Bearer realm="orderly"` {
		t.Errorf("no header: %v, challenge %q", err, Challenge(status.Convert(err)))
	}
	_, err = g.authenticate(bearer([]string{"Basic dXNlcjpwYXNz"}))
	if code(err) != codes.Unauthenticated {
		t.Errorf("basic auth: %v", err)
	}
	_, err = g.authenticate(bearer([]string{"Bearer nope"}))
	if Challenge(status.Convert(err)) != `Bearer realm="orderly", error="invalid_token"` {
		t.Errorf("bad token challenge: %q", Challenge(status.Convert(err)))
	}
	if p, err := g.authenticate(bearer([]string{"bearer key-0123456789abcdef"})); err != nil || p.Subject != "alice" {
		t.Errorf("lower-case scheme: %+v, %v", p, err)
	}
}

// size is how many callers have a limiter.
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.byKey)
}

// The limiter holds at most its bound of callers, dropping the least
// recently seen; a caller over its rate is told how long to wait.
func TestLimiterBounded(t *testing.T) {
	now := time.Now()
	l := newLimiter(1, 2, 100)
	for i := range 10_000 {
		l.allow("addr-"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+time.Duration(i).String(), now)
	}
	if n := l.size(); n != 100 {
		t.Fatalf("limiter holds %d callers, want its bound of 100", n)
	}
	for i := range 2 {
		if ok, _ := l.allow("busy", now); !ok {
			t.Fatalf("call %d within the burst refused", i+1)
		}
	}
	ok, wait := l.allow("busy", now)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("third call at once: ok=%v wait=%v, want refused for up to 1s", ok, wait)
	}
	if ok, _ := l.allow("busy", now.Add(wait)); !ok {
		t.Fatal("refused after waiting the time it was told")
	}
	if RetryAfter(status.Convert(rateLimited(1500*time.Millisecond))) != "2" || RetryAfter(status.Convert(rateLimited(time.Millisecond))) != "1" {
		t.Error("Retry-After does not round up to whole seconds")
	}
}
