package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// Signing algorithms tokens may use: asymmetric only. Without a list a
// token could name "none", or HS256 with our public key as its secret.
var (
	rsaAlgs   = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	ecAlgs    = []string{"ES256", "ES384", "ES512"}
	edAlgs    = []string{"EdDSA"}
	jwksAlgs  = append(append(append([]string{}, rsaAlgs...), ecAlgs...), edAlgs...)
	clockSkew = 30 * time.Second
)

// jwtVerifier checks bearer tokens signed by a known key.
type jwtVerifier struct {
	keyfunc jwt.Keyfunc
	parser  *jwt.Parser
	claim   string
}

// jwtConfig is what Flags say about tokens.
type jwtConfig struct {
	jwksURL, keyFile, issuer, audience, claim string
}

// newJWTVerifier verifies against a JWKS URL (fetched now, refreshed
// hourly and when a token names a key it does not know, as keyfunc does,
// until ctx ends) or a key file: a PEM public key or certificate, or a JWKS
// document.
func newJWTVerifier(ctx context.Context, c jwtConfig, log *slog.Logger) (*jwtVerifier, error) {
	var (
		kf   jwt.Keyfunc
		algs []string
	)
	switch {
	case c.jwksURL != "" && c.keyFile != "":
		return nil, errors.New("-jwt-jwks-url and -jwt-key-file: give one")
	case c.jwksURL != "":
		if c.issuer == "" || c.audience == "" {
			// A shared identity provider signs tokens for every
			// application it serves: only issuer and audience say which
			// are ours.
			return nil, errors.New("-jwt-jwks-url needs -jwt-issuer and -jwt-audience")
		}
		k, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{c.jwksURL}, keyfunc.Override{
			// A token naming an unknown key triggers one refresh; the
			// next ones within the limit fail at once rather than hold
			// their calls for the default minute.
			RateLimitWaitMax: 10 * time.Millisecond,
			RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
				return func(_ context.Context, err error) {
					log.Error("JWKS refresh failed; the keys fetched before stay in use", "url", u, "err", err)
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("JWKS %s: %w", c.jwksURL, err)
		}
		kf, algs = k.Keyfunc, jwksAlgs
	case c.keyFile != "":
		var err error
		if kf, algs, err = readKeyFile(c.keyFile); err != nil {
			return nil, fmt.Errorf("JWT key file %s: %w", c.keyFile, err)
		}
	default:
		return nil, nil
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(algs), jwt.WithExpirationRequired(), jwt.WithLeeway(clockSkew)}
	if c.issuer != "" {
		opts = append(opts, jwt.WithIssuer(c.issuer))
	}
	if c.audience != "" {
		opts = append(opts, jwt.WithAudience(c.audience))
	}
	return &jwtVerifier{keyfunc: kf, parser: jwt.NewParser(opts...), claim: c.claim}, nil
}

// readKeyFile reads a JWKS document or a PEM public key (or certificate),
// and the algorithms its key signs with.
func readKeyFile(path string) (jwt.Keyfunc, []string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if strings.HasPrefix(strings.TrimSpace(string(b)), "{") {
		k, err := keyfunc.NewJWKSetJSON(b)
		if err != nil {
			return nil, nil, err
		}
		return k.Keyfunc, jwksAlgs, nil
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, nil, errors.New("neither a JWKS document nor PEM")
	}
	var pub any
	switch block.Type {
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, err
		}
		pub = cert.PublicKey
	case "PUBLIC KEY":
		if pub, err = x509.ParsePKIXPublicKey(block.Bytes); err != nil {
			return nil, nil, err
		}
	default:
		return nil, nil, fmt.Errorf("PEM block %q: want PUBLIC KEY or CERTIFICATE", block.Type)
	}
	var algs []string
	switch pub.(type) {
	case *rsa.PublicKey:
		algs = rsaAlgs
	case *ecdsa.PublicKey:
		algs = ecAlgs
	case ed25519.PublicKey:
		algs = edAlgs
	default:
		return nil, nil, fmt.Errorf("unsupported public key %T", pub)
	}
	return func(*jwt.Token) (any, error) { return pub, nil }, algs, nil
}

// verify returns the principal of a valid token: signed by a known key
// with an allowed algorithm, not expired (exp required), of the configured
// issuer and audience, with a subject.
func (v *jwtVerifier) verify(raw string) (Principal, error) {
	claims := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(raw, claims, v.keyfunc); err != nil {
		return Principal{}, err
	}
	sub, err := claims.GetSubject()
	if err != nil || sub == "" {
		return Principal{}, errors.New("token has no subject (sub)")
	}
	perms, err := permissionsClaim(claims[v.claim])
	if err != nil {
		return Principal{}, fmt.Errorf("claim %q: %w", v.claim, err)
	}
	return Principal{Subject: sub, Permissions: perms}, nil
}

// permissionsClaim reads a JSON array of strings or a space-separated
// string (the OAuth "scope" style). Unknown permissions are ignored: an
// identity provider's tokens may carry other applications' too.
func permissionsClaim(v any) ([]Permission, error) {
	var names []string
	switch v := v.(type) {
	case nil:
	case string:
		names = strings.Fields(v)
	case []any:
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("not a string: %v", e)
			}
			names = append(names, s)
		}
	default:
		return nil, fmt.Errorf("want an array of strings or a space-separated string, got %T", v)
	}
	var perms []Permission
	for _, n := range names {
		if p, err := parsePermission(n); err == nil {
			perms = append(perms, p)
		}
	}
	return perms, nil
}
