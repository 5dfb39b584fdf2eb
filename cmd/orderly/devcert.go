package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/orderly/orderly/internal/tlsconf"
)

// runDevCert writes development certificates for trying TLS (see README:
// Security): a self-signed pair, or with -ca a throwaway CA and a pair it
// signed, the shape EventStoreDB wants. Production certificates come from
// a real CA.
func runDevCert(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("dev-cert", flag.ContinueOnError)
	out := fs.String("out", ".orderly/tls", "directory to write orderly.crt and orderly.key into (and ca/ with -ca)")
	hosts := fs.String("hosts", "localhost,127.0.0.1", "comma-separated DNS names and IP addresses the certificate names; the first is its common name")
	valid := fs.Duration("valid", 90*24*time.Hour, "how long the certificates are valid")
	withCA := fs.Bool("ca", false, "write a throwaway CA (ca/ca.crt) and a certificate it signed, instead of a self-signed one")
	keyMode := fs.String("key-mode", "0600", "file mode of the keys (with -ca; 0644 lets services running as other users of a shared volume read them: development only)")
	ifMissing := fs.Bool("if-missing", false, "do nothing when the certificate exists already (a compose init step run on every start)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	mode, err := strconv.ParseUint(*keyMode, 8, 32)
	if err != nil || mode&^0o777 != 0 {
		return fmt.Errorf("dev-cert: -key-mode %q: want an octal file mode such as 0600", *keyMode)
	}
	cert, key := filepath.Join(*out, "orderly.crt"), filepath.Join(*out, "orderly.key")
	if _, err := os.Stat(cert); *ifMissing && err == nil {
		fmt.Printf("%s exists; left as it is\n", cert)
		return nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("dev-cert: %w", err)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("dev-cert: %w", err)
	}
	names := strings.Split(*hosts, ",")
	if *withCA {
		err = tlsconf.WriteWithCA(*out, "orderly", names, *valid, os.FileMode(mode))
	} else {
		err = tlsconf.WriteSelfSigned(cert, key, names, *valid)
	}
	if err != nil {
		return fmt.Errorf("dev-cert: %w", err)
	}
	fmt.Printf("wrote %s and %s for %s (development only)\n", cert, key, *hosts)
	return nil
}
