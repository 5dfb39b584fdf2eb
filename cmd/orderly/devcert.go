package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/orderly/orderly/internal/tlsconf"
)

// runDevCert writes a self-signed certificate pair for trying TLS on one
// machine (see README: Security). Production certificates come from a CA.
func runDevCert(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("dev-cert", flag.ContinueOnError)
	out := fs.String("out", ".orderly/tls", "directory to write orderly.crt and orderly.key into")
	hosts := fs.String("hosts", "localhost,127.0.0.1", "comma-separated DNS names and IP addresses the certificate names")
	valid := fs.Duration("valid", 90*24*time.Hour, "how long the certificate is valid")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return fmt.Errorf("dev-cert: %w", err)
	}
	cert, key := filepath.Join(*out, "orderly.crt"), filepath.Join(*out, "orderly.key")
	if err := tlsconf.WriteSelfSigned(cert, key, strings.Split(*hosts, ","), *valid); err != nil {
		return fmt.Errorf("dev-cert: %w", err)
	}
	fmt.Printf("wrote %s and %s (self-signed, for %s; development only)\n", cert, key, *hosts)
	return nil
}
