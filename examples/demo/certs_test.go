package demo

import (
	"crypto/x509"
	"path/filepath"
	"testing"
)

func TestLoadOrCreateCertsIsStableAndVerifiable(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadOrCreateCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	second, err := LoadOrCreateCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	if string(first.Certificate[0]) != string(second.Certificate[0]) {
		t.Error("second start made a new certificate; want the stored one")
	}
	pool, err := CertPool(filepath.Join(dir, CAFile))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(first.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "example.com"}); err == nil {
		t.Error("certificate verified for example.com")
	}
}
