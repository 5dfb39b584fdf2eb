// Package tlsconf gives every listener of Orderly the same TLS: one
// certificate pair read from files and reloaded when they change, optional
// verification of client certificates, and the rule that a listener off
// loopback serves TLS unless the operator says -insecure.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"

	"github.com/orderly/orderly/internal/watchfile"
)

// Flags are the TLS settings every command takes.
type Flags struct {
	CertFile, KeyFile string
	// ClientCAFile, when set, makes the listeners require client
	// certificates signed by one of its CAs.
	ClientCAFile string
	// Insecure allows plain text on an address other than loopback.
	Insecure bool
}

// Register declares -tls-cert, -tls-key, -tls-client-ca and -insecure
// (config.Parse adds their ORDERLY_* variables).
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.CertFile, "tls-cert", "", "PEM certificate (chain) every listener serves TLS with; reloaded when the file changes")
	fs.StringVar(&f.KeyFile, "tls-key", "", "PEM private key of -tls-cert")
	fs.StringVar(&f.ClientCAFile, "tls-client-ca", "", "PEM CA certificates: with it, clients must present a certificate they signed")
	fs.BoolVar(&f.Insecure, "insecure", false, "allow serving plain text (no -tls-cert) on an address other than loopback")
}

// Enabled reports whether the listeners serve TLS.
func (f Flags) Enabled() bool { return f.CertFile != "" }

// Server returns the certificates the flags name, loaded once now (a bad
// pair fails the start) and reloaded on change; nil when TLS is off.
func (f Flags) Server(log *slog.Logger) (*Certs, error) {
	switch {
	case f.CertFile == "" && f.KeyFile == "" && f.ClientCAFile == "":
		return nil, nil
	case f.CertFile == "" || f.KeyFile == "":
		return nil, errors.New("TLS: -tls-cert and -tls-key go together")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Certs{cert: watch(f.CertFile), key: watch(f.KeyFile), ca: watch(f.ClientCAFile), log: log}
	if _, _, err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

// CheckListen refuses to serve plain text on an address other than
// loopback unless -insecure was given, and then warns: such a port carries
// commands and data unencrypted to whoever can reach it.
func (f Flags) CheckListen(log *slog.Logger, addrs ...string) error {
	if f.Enabled() {
		return nil
	}
	for _, addr := range addrs {
		if addr == "" || loopback(addr) {
			continue
		}
		if !f.Insecure {
			return fmt.Errorf("listening on %s, not a loopback address, without TLS: give -tls-cert and -tls-key, or -insecure to serve plain text anyway", addr)
		}
		log.Warn("serving plain text on an address other than loopback (-insecure)", "addr", addr)
	}
	return nil
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Certs is a certificate pair (and client CAs) read from files. Every
// handshake checks the files' modification times and sizes, a stat each,
// and reads them again when they changed: a renewed certificate is served
// from the next connection on, without a restart. A pair that does not load
// (a half-written renewal, a key that does not match) keeps the previous
// one in service, and is logged once per change.
type Certs struct {
	log *slog.Logger

	mu        sync.Mutex
	cert, key watched
	ca        watched
	pair      *tls.Certificate
	clientCAs *x509.CertPool
	// lastFailure is the last reload error logged, so that one bad
	// renewal is logged once, not on every handshake.
	lastFailure string
}

// watched is a file whose changes are noticed; an empty path is no file.
type watched struct{ watchfile.File }

func watch(path string) watched { return watched{watchfile.File{Path: path}} }

func (w *watched) changed() (bool, error) {
	if w.Path == "" {
		return false, nil
	}
	return w.Changed()
}

// load returns the current pair and client CAs, reading the files again if
// they changed since the last call.
func (c *Certs) load() (*tls.Certificate, *x509.CertPool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	certChanged, err1 := c.cert.changed()
	keyChanged, err2 := c.key.changed()
	caChanged, err3 := c.ca.changed()
	var errs []error
	if err := errors.Join(err1, err2, err3); err != nil {
		errs = append(errs, err)
	}
	first := c.pair == nil
	if certChanged || keyChanged || first {
		pair, err := tls.LoadX509KeyPair(c.cert.Path, c.key.Path)
		if err != nil {
			errs = append(errs, fmt.Errorf("TLS certificate %s, key %s: %w", c.cert.Path, c.key.Path, err))
		} else {
			c.pair = &pair
			if !first {
				c.log.Info("TLS certificate reloaded", "cert", c.cert.Path)
			}
		}
	}
	if caChanged || c.ca.Path != "" && c.clientCAs == nil {
		pool, err := readPool(c.ca.Path)
		if err != nil {
			errs = append(errs, err)
		} else {
			c.clientCAs = pool
			if !first {
				c.log.Info("TLS client CAs reloaded", "client_ca", c.ca.Path)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		if c.pair == nil || c.ca.Path != "" && c.clientCAs == nil {
			return nil, nil, err // nothing to serve with: the start fails
		}
		if msg := err.Error(); msg != c.lastFailure {
			c.log.Error("TLS files could not be reloaded; serving the previous ones", "err", err)
			c.lastFailure = msg
		}
	} else {
		c.lastFailure = ""
	}
	return c.pair, c.clientCAs, nil
}

// readPool reads PEM CA certificates.
func readPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("TLS client CAs: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("TLS client CAs %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// Config returns a server configuration for a listener whose ALPN
// protocols are nextProtos ("h2" for gRPC; "h2", "http/1.1" for HTTP). Each
// handshake gets the files' current contents.
func (c *Certs) Config(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			pair, pool, err := c.load()
			if err != nil {
				return nil, err
			}
			cfg := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: nextProtos, Certificates: []tls.Certificate{*pair}}
			if pool != nil {
				cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
			}
			return cfg, nil
		},
	}
}
