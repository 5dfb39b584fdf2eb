package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Development certificates, for trying TLS on one machine and for tests;
// production certificates come from a real CA.

// SelfSigned returns a PEM certificate and key, self-signed, naming hosts
// (DNS names or IP addresses), good for server and client authentication
// alike: the same pair can serve a listener, be the CA its clients trust and
// be the client certificate of the all-in-one's own connections.
func SelfSigned(hosts []string, validFor time.Duration) (certPEM, keyPEM []byte, err error) {
	key, tmpl, err := template(hosts, validFor)
	if err != nil {
		return nil, nil, err
	}
	tmpl.IsCA = true
	tmpl.KeyUsage |= x509.KeyUsageCertSign
	return sign(tmpl, tmpl, key, key)
}

// template is a leaf certificate for hosts, with its new key.
func template(hosts []string, validFor time.Duration) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0], Organization: []string{"Orderly development"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return key, tmpl, nil
}

// sign makes tmpl's certificate, signed by parent's key, and PEM-encodes
// it with key.
func sign(tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) (certPEM, keyPEM []byte, err error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// WriteSelfSigned writes a SelfSigned pair to certFile and keyFile (the
// key readable by its owner only).
func WriteSelfSigned(certFile, keyFile string, hosts []string, validFor time.Duration) error {
	certPEM, keyPEM, err := SelfSigned(hosts, validFor)
	if err != nil {
		return err
	}
	return writePair(certFile, keyFile, certPEM, keyPEM, 0o600)
}

// WriteWithCA writes a throwaway CA (dir/ca/ca.crt and ca.key) and a
// certificate it signed for hosts, for server and client authentication
// (dir/NAME.crt and NAME.key), keys with mode keyMode. That is the shape
// EventStoreDB wants (a node certificate and a directory of trusted
// roots), so one run serves a whole development stack.
func WriteWithCA(dir, name string, hosts []string, validFor time.Duration, keyMode os.FileMode) error {
	caKey, ca, err := template([]string{"Orderly development CA"}, validFor)
	if err != nil {
		return err
	}
	ca.IsCA, ca.KeyUsage, ca.ExtKeyUsage = true, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, nil
	caPEM, caKeyPEM, err := sign(ca, ca, caKey, caKey)
	if err != nil {
		return err
	}
	// The leaf names its issuer by the parsed CA, as verifiers compare.
	block, _ := pem.Decode(caPEM)
	caCert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("CA certificate: %w", err)
	}
	key, leaf, err := template(hosts, validFor)
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := sign(leaf, caCert, key, caKey)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "ca"), 0o755); err != nil {
		return fmt.Errorf("certificate directory: %w", err)
	}
	if err := writePair(filepath.Join(dir, "ca", "ca.crt"), filepath.Join(dir, "ca", "ca.key"), caPEM, caKeyPEM, 0o600); err != nil {
		return err
	}
	return writePair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"), certPEM, keyPEM, keyMode)
}

func writePair(certFile, keyFile string, certPEM, keyPEM []byte, keyMode os.FileMode) error {
	if err := os.WriteFile(keyFile, keyPEM, keyMode); err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if err := os.Chmod(keyFile, keyMode); err != nil { // past the umask
		return fmt.Errorf("write key: %w", err)
	}
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return fmt.Errorf("write certificate: %w", err)
	}
	return nil
}
