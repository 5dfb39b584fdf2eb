// Package tlstest writes the certificates tests serve and trust: made at
// run time, never committed.
package tlstest

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/tlsconf"
)

// Pair writes a self-signed pair for 127.0.0.1 and localhost into dir as
// NAME.crt and NAME.key and returns their paths.
func Pair(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := tlsconf.WriteSelfSigned(certFile, keyFile, []string{"127.0.0.1", "localhost"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// Pool is a pool of the certificates in certFile.
func Pool(t testing.TB, certFile string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("no certificate in %s", certFile)
	}
	return pool
}

// Client is a client configuration trusting certFile, presenting the
// client pair when one is given (two more paths).
func Client(t testing.TB, certFile string, clientPair ...string) *tls.Config {
	t.Helper()
	cfg := &tls.Config{RootCAs: Pool(t, certFile), MinVersion: tls.VersionTLS12}
	if len(clientPair) == 2 {
		pair, err := tls.LoadX509KeyPair(clientPair[0], clientPair[1])
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}
