package tlsconf_test

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/orderly/orderly/internal/tlsconf"
	"github.com/orderly/orderly/internal/tlsconf/tlstest"
)

// serve accepts TLS connections with cfg on loopback and writes a byte on
// each once its handshake succeeds, until the test ends.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if c.(*tls.Conn).Handshake() == nil {
					_, _ = c.Write([]byte{1})
				}
			}()
		}
	}()
	return lis.Addr().String()
}

// served is the certificate a handshake with addr gets, or the error.
func served(addr string, cfg *tls.Config) ([]byte, error) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Raw, nil
}

func leaf(t *testing.T, certFile string) []byte {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, strings.TrimSuffix(certFile, ".crt")+".key")
	if err != nil {
		t.Fatal(err)
	}
	return pair.Certificate[0]
}

// A renewed pair is served from the next handshake on; a broken renewal
// leaves the previous pair in service (and is logged); fixing it takes.
func TestReloadsOnChange(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := tlstest.Pair(t, dir, "server")
	var logs bytes.Buffer
	certs, err := tlsconf.Flags{CertFile: certFile, KeyFile: keyFile}.Server(slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, certs.Config("http/1.1"))
	first := leaf(t, certFile)
	trustAll := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the test compares the certificate itself
	if got, err := served(addr, trustAll); err != nil || !bytes.Equal(got, first) {
		t.Fatalf("served another certificate (err %v); want the first pair", err)
	}

	// Renewed: a new pair in the same files.
	renewDir := t.TempDir()
	newCert, newKey := tlstest.Pair(t, renewDir, "server")
	second := leaf(t, newCert)
	replace(t, newCert, certFile)
	replace(t, newKey, keyFile)
	if got, err := served(addr, trustAll); err != nil || !bytes.Equal(got, second) {
		t.Fatalf("after renewal served another certificate (err %v); want the new pair", err)
	}

	// A broken renewal: a certificate whose key is not there.
	thirdCert, _ := tlstest.Pair(t, t.TempDir(), "server")
	replace(t, thirdCert, certFile)
	if got, err := served(addr, trustAll); err != nil || !bytes.Equal(got, second) {
		t.Fatalf("after a broken renewal served another certificate (err %v); want the previous pair", err)
	}
	if !strings.Contains(logs.String(), "could not be reloaded") {
		t.Fatalf("the broken renewal was not logged:\n%s", logs.String())
	}
	// Fixed: the new pair is complete.
	replace(t, newCert, certFile)
	if got, err := served(addr, trustAll); err != nil || !bytes.Equal(got, second) {
		t.Fatalf("after the fix served another certificate (err %v); want the renewed pair", err)
	}
}

// replace puts src's content at dst, with a modification time that differs
// from dst's whatever the file system's resolution.
func replace(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	later := fi.ModTime().Add(time.Second)
	if err := os.Chtimes(dst, later, later); err != nil {
		t.Fatal(err)
	}
}

// With -tls-client-ca, a client without a certificate, or with one the CA
// did not sign, is refused; one the CA signed is served.
func TestClientCertificates(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := tlstest.Pair(t, dir, "server")
	clientCert, clientKey := tlstest.Pair(t, dir, "client")
	strangerCert, strangerKey := tlstest.Pair(t, dir, "stranger")
	certs, err := tlsconf.Flags{CertFile: certFile, KeyFile: keyFile, ClientCAFile: clientCert}.Server(nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, certs.Config("http/1.1"))
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{"no certificate", tlstest.Client(t, certFile), false},
		{"foreign certificate", tlstest.Client(t, certFile, strangerCert, strangerKey), false},
		{"signed certificate", tlstest.Client(t, certFile, clientCert, clientKey), true},
	} {
		// TLS 1.3 reports a refused client certificate on the first read.
		c, err := tls.Dial("tcp", addr, tc.cfg)
		if err == nil {
			_, err = c.Read(make([]byte, 1))
			_ = c.Close()
		}
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestFlagsRefuseHalfAPair(t *testing.T) {
	for _, f := range []tlsconf.Flags{{CertFile: "a.crt"}, {KeyFile: "a.key"}, {ClientCAFile: "ca.crt"}} {
		if _, err := f.Server(nil); err == nil || !strings.Contains(err.Error(), "-tls-cert and -tls-key") {
			t.Errorf("%+v: err = %v", f, err)
		}
	}
	if _, err := (tlsconf.Flags{CertFile: "missing.crt", KeyFile: "missing.key"}).Server(nil); err == nil {
		t.Error("missing files: no error")
	}
}

// Plain text off loopback takes -insecure, and is logged; loopback needs
// nothing.
func TestCheckListen(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	plain := tlsconf.Flags{}
	for _, addr := range []string{"127.0.0.1:80", "localhost:80", "[::1]:80", ""} {
		if err := plain.CheckListen(log, addr); err != nil {
			t.Errorf("%q: %v", addr, err)
		}
	}
	for _, addr := range []string{"0.0.0.0:80", ":80", "10.1.2.3:80", "example.com:80"} {
		if err := plain.CheckListen(log, addr); err == nil || !strings.Contains(err.Error(), "-insecure") {
			t.Errorf("%q: err = %v, want one naming -insecure", addr, err)
		}
	}
	if logs.Len() != 0 {
		t.Errorf("logged without -insecure: %s", logs.String())
	}
	if err := (tlsconf.Flags{Insecure: true}).CheckListen(log, "0.0.0.0:80"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "plain text") {
		t.Errorf("-insecure was not logged: %q", logs.String())
	}
	if err := (tlsconf.Flags{CertFile: "a.crt", KeyFile: "a.key"}).CheckListen(log, "0.0.0.0:80"); err != nil {
		t.Errorf("with TLS: %v", err)
	}
}

// WriteWithCA's pair verifies against its CA, for server and client
// authentication, and serves.
func TestWriteWithCA(t *testing.T) {
	dir := t.TempDir()
	if err := tlsconf.WriteWithCA(dir, "node", []string{"eventstore", "127.0.0.1"}, time.Hour, 0o644); err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile := dir+"/ca/ca.crt", dir+"/node.crt", dir+"/node.key"
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("key mode: %v, %v", fi, err)
	}
	certs, err := tlsconf.Flags{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile}.Server(nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, certs.Config("http/1.1"))
	c, err := tls.Dial("tcp", addr, tlstest.Client(t, caFile, certFile, keyFile))
	if err == nil {
		_, err = c.Read(make([]byte, 1))
		_ = c.Close()
	}
	if err != nil {
		t.Fatalf("a client trusting the CA, with the pair as its certificate: %v", err)
	}
}
