package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// security is how the bench reaches a system with TLS and authentication
// on: the CA it trusts (-tls-ca) and the bearer token it sends (-token).
type security struct {
	tls   *tls.Config // nil: plain text
	token string
}

func newSecurity(c Config) (security, error) {
	s := security{token: c.Token}
	if c.TLSCA == "" {
		return s, nil
	}
	pem, err := os.ReadFile(c.TLSCA)
	if err != nil {
		return s, fmt.Errorf("-tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return s, fmt.Errorf("-tls-ca %s: no PEM certificate in it", c.TLSCA)
	}
	s.tls = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return s, nil
}

func (s security) dialOptions() []grpc.DialOption {
	creds := insecure.NewCredentials()
	if s.tls != nil {
		creds = credentials.NewTLS(s.tls)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if s.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: s.token, secure: s.tls != nil}))
	}
	return opts
}

// transport is base with the CA trusted and the token added to every
// request (REST calls and metric scrapes alike).
func (s security) transport(base *http.Transport) http.RoundTripper {
	if s.tls != nil {
		base.TLSClientConfig = s.tls
		base.ForceAttemptHTTP2 = true
	}
	if s.token == "" {
		return base
	}
	return authTransport{base: base, header: "Bearer " + s.token}
}

// bearer sends the token as gRPC metadata. Without TLS it is sent in plain
// text too, as the system allows on loopback.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }

type authTransport struct {
	base   *http.Transport
	header string
}

func (t authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", t.header)
	return t.base.RoundTrip(req)
}

func (t authTransport) CloseIdleConnections() { t.base.CloseIdleConnections() }
