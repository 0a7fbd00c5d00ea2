package iamserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
)

func writePEM(t *testing.T, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func ecKeyFile(t *testing.T, curve elliptic.Curve, sec1 bool) (string, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if sec1 {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return writePEM(t, "EC PRIVATE KEY", der), k
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, "PRIVATE KEY", der), k
}

func TestSigningKeyFiles(t *testing.T) {
	first, firstKey := ecKeyFile(t, elliptic.P256(), false)
	second, _ := ecKeyFile(t, elliptic.P256(), true)
	start := func() *testEnv {
		return newTestEnv(t, func(o *Options) { o.SigningKeyFiles = []string{first, second} })
	}
	env := start()
	firstKID, err := thumbprint(firstKey)
	if err != nil {
		t.Fatal(err)
	}
	if got := env.srv.CurrentKeyID(); got != firstKID {
		t.Errorf("signing with %s, want the first file's thumbprint %s", got, firstKID)
	}
	if n := len(jwksKIDs(t, env.srv.JWKS())); n != 2 {
		t.Errorf("JWKS has %d keys, want both files'", n)
	}
	tok, err := env.srv.IssueToken("user-alice", iamjwt.SubjectUserAccount)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verifyWithJWKS(t, env.srv.JWKS(), tok.Value, env.clock.Now()); err != nil {
		t.Errorf("token: %v", err)
	}
	if err := env.srv.Rotate(context.Background()); !errors.Is(err, errStaticKeys) {
		t.Errorf("Rotate: %v, want errStaticKeys", err)
	}
	stored, err := env.store.SigningKeys(context.Background())
	if err != nil || len(stored) != 0 {
		t.Errorf("the store holds %d signing keys (%v), want none", len(stored), err)
	}
	// Another process with the same files publishes the same key set.
	if diff := cmp.Diff(string(env.srv.JWKS()), string(start().srv.JWKS())); diff != "" {
		t.Errorf("JWKS of a second server (-want +got):\n%s", diff)
	}
}

func TestSigningKeyFilesRefused(t *testing.T) {
	p384, _ := ecKeyFile(t, elliptic.P384(), false)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	good, _ := ecKeyFile(t, elliptic.P256(), false)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	os.WriteFile(garbage, []byte("not a key"), 0o600)
	tests := []struct {
		name  string
		files []string
	}{
		{name: "P-384", files: []string{p384}},
		{name: "RSA", files: []string{writePEM(t, "PRIVATE KEY", rsaDER)}},
		{name: "public key", files: []string{writePEM(t, "PUBLIC KEY", []byte{1, 2, 3})}},
		{name: "not PEM", files: []string{garbage}},
		{name: "missing", files: []string{filepath.Join(t.TempDir(), "nope.pem")}},
		{name: "listed twice", files: []string{good, good}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(context.Background(), Options{Store: NewMemoryStore(), Logger: discardLogger, SigningKeyFiles: tt.files})
			if err == nil {
				s.Close()
				t.Fatal("New accepted the files")
			}
		})
	}
}
