package devpki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestIssueVerifiesForItsNamesOnly(t *testing.T) {
	b := ForTest(t)
	for _, name := range Loopback {
		if _, err := b.Cert.Leaf.Verify(x509.VerifyOptions{Roots: b.Pool(), DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := b.Cert.Leaf.Verify(x509.VerifyOptions{Roots: b.Pool(), DNSName: "example.com"}); err == nil {
		t.Error("verified for example.com")
	}
	if _, err := b.Cert.Leaf.Verify(x509.VerifyOptions{Roots: x509.NewCertPool(), DNSName: "localhost"}); err == nil {
		t.Error("verified without the CA")
	}
	other := ForTest(t, "storage.test")
	if _, err := other.Cert.Leaf.Verify(x509.VerifyOptions{Roots: other.Pool(), DNSName: "storage.test"}); err != nil {
		t.Errorf("verify for storage.test: %v", err)
	}
	if _, err := Issue(0); err == nil {
		t.Error("Issue(0) succeeded")
	}
}

func TestPEMRoundTrip(t *testing.T) {
	b := ForTest(t)
	cert, err := tls.X509KeyPair(b.CertPEM, b.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.Leaf.Equal(b.Cert.Leaf) {
		t.Error("PEM certificate differs")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b.CAPEM) {
		t.Fatal("CA PEM not parsed")
	}
}

func TestHandshake(t *testing.T) {
	b := ForTest(t)
	lis, err := tls.Listen("tcp", "127.0.0.1:0", b.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	done := make(chan error, 1)
	go func() {
		c, err := lis.Accept()
		if err == nil {
			err = c.(*tls.Conn).Handshake()
			c.Close()
		}
		done <- err
	}()
	cfg := b.ClientConfig()
	cfg.ServerName = "127.0.0.1"
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", lis.Addr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := <-done; err != nil {
		t.Errorf("server handshake: %v", err)
	}
}
