// Package devpki makes a throwaway certificate authority and a server
// certificate it issued, for TLS on loopback: the tests' servers and the demo
// server. Nothing here is meant for production certificates.
package devpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"testing"
	"time"
)

// Bundle is a CA and a server certificate it issued.
type Bundle struct {
	// CA is the authority's certificate; clients trust it.
	CA *x509.Certificate
	// Cert is the server's certificate chain and key, Leaf set.
	Cert tls.Certificate
	// CAPEM, CertPEM and KeyPEM are the same in PEM (the key as PKCS #8),
	// for writing to files.
	CAPEM, CertPEM, KeyPEM []byte
}

// Loopback are the names a loopback server answers to.
var Loopback = []string{"localhost", "127.0.0.1", "::1"}

// Issue makes a P-256 CA and a server certificate for names (DNS names or IP
// addresses; Loopback when none), both valid from an hour ago until validity
// from now.
func Issue(validity time.Duration, names ...string) (*Bundle, error) {
	if validity <= 0 {
		return nil, errors.New("devpki: validity must be positive")
	}
	if len(names) == 0 {
		names = Loopback
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "iamtoken-go throwaway CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("devpki: CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("devpki: server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Bundle{
		CA:      ca,
		Cert:    tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		CAPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// ForTest issues a bundle valid for an hour, failing tb on error.
func ForTest(tb testing.TB, names ...string) *Bundle {
	tb.Helper()
	b, err := Issue(time.Hour, names...)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Pool is a certificate pool holding the CA.
func (b *Bundle) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(b.CA)
	return pool
}

// ServerConfig is a TLS 1.2+ server configuration with the certificate. Each
// call returns a new one: servers may change the config they are given.
func (b *Bundle) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{b.Cert}, MinVersion: tls.VersionTLS12}
}

// ClientConfig is a TLS 1.2+ client configuration trusting the CA.
func (b *Bundle) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: b.Pool(), MinVersion: tls.VersionTLS12}
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
