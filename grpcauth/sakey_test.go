package grpcauth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/iamtoken/iamtoken-go/grpcauth"
	"github.com/iamtoken/iamtoken-go/iamtest"
)

// testKey is one generated key shared by the package's tests: RSA key
// generation is slow under -race.
var testKey = sync.OnceValue(func() *iamtest.KeyFile { return iamtest.NewKeyFile("ajekey1", "ajesa1") })

// keyJSON is the test key's file with fields changed (nil deletes one).
func keyJSON(t *testing.T, change map[string]any) []byte {
	t.Helper()
	f := testKey().Fields()
	for k, v := range change {
		if v == nil {
			delete(f, k)
		} else {
			f[k] = v
		}
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pkcs8PEM(t *testing.T, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func rsaKey(t *testing.T, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// assertNoKeyMaterial fails if msg holds any part of a PEM body in pems.
func assertNoKeyMaterial(t *testing.T, msg string, pems ...string) {
	t.Helper()
	for _, p := range pems {
		for _, line := range strings.Split(p, "\n") {
			if len(line) >= 16 && !strings.HasPrefix(line, "-----") && !strings.HasPrefix(line, "PLEASE") &&
				strings.Contains(msg, line[:16]) {
				t.Fatalf("error %q contains key material", msg)
			}
		}
	}
}

func TestServiceAccountKeyFromBytes(t *testing.T) {
	k := testKey()
	noWarning := strings.SplitN(k.PrivateKeyPEM(), "\n", 2)[1]
	tests := []struct {
		name string
		data []byte
		want grpcauth.ServiceAccountKey
	}{
		{
			name: "snake_case with the warning line",
			data: k.JSON(),
			want: grpcauth.ServiceAccountKey{ID: "ajekey1", ServiceAccountID: "ajesa1", KeyAlgorithm: "RSA_2048",
				CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		},
		{
			name: "camelCase",
			data: k.CamelJSON(),
			want: grpcauth.ServiceAccountKey{ID: "ajekey1", ServiceAccountID: "ajesa1", KeyAlgorithm: "RSA_2048",
				CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		},
		{
			name: "PEM only, no optional fields, unknown field ignored",
			data: keyJSON(t, map[string]any{"private_key": noWarning, "public_key": nil, "created_at": nil,
				"key_algorithm": nil, "description": "ci", "future_field": 1}),
			want: grpcauth.ServiceAccountKey{ID: "ajekey1", ServiceAccountID: "ajesa1", KeyAlgorithm: "RSA_2048", Description: "ci"},
		},
		{
			name: "user account",
			data: keyJSON(t, map[string]any{"service_account_id": nil, "user_account_id": "ajeuser"}),
			want: grpcauth.ServiceAccountKey{ID: "ajekey1", ServiceAccountID: "ajeuser", UserAccount: true,
				KeyAlgorithm: "RSA_2048", CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		},
		{
			name: "same value in both spellings",
			data: keyJSON(t, map[string]any{"serviceAccountId": "ajesa1"}),
			want: grpcauth.ServiceAccountKey{ID: "ajekey1", ServiceAccountID: "ajesa1", KeyAlgorithm: "RSA_2048",
				CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := grpcauth.ServiceAccountKeyFromBytes(tt.data)
			if err != nil {
				t.Fatalf("ServiceAccountKeyFromBytes: %v", err)
			}
			if !got.PublicKey().Equal(&k.PrivateKey.PublicKey) {
				t.Error("PublicKey is not the key's")
			}
			if diff := cmp.Diff(tt.want, *got, cmp.Comparer(func(a, b grpcauth.ServiceAccountKey) bool {
				return a.ID == b.ID && a.ServiceAccountID == b.ServiceAccountID && a.UserAccount == b.UserAccount &&
					a.KeyAlgorithm == b.KeyAlgorithm && a.CreatedAt.Equal(b.CreatedAt) && a.Description == b.Description
			})); diff != "" {
				t.Errorf("key (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServiceAccountKeyRSA4096(t *testing.T) {
	if testing.Short() {
		t.Skip("RSA 4096 generation is slow")
	}
	priv := rsaKey(t, 4096)
	data := keyJSON(t, map[string]any{"private_key": pkcs8PEM(t, priv), "public_key": nil, "key_algorithm": "RSA_4096"})
	k, err := grpcauth.ServiceAccountKeyFromBytes(data)
	if err != nil {
		t.Fatalf("ServiceAccountKeyFromBytes: %v", err)
	}
	if k.KeyAlgorithm != "RSA_4096" {
		t.Errorf("KeyAlgorithm = %s, want RSA_4096", k.KeyAlgorithm)
	}
}

func TestServiceAccountKeyMalformed(t *testing.T) {
	k := testKey()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	small := rsaKey(t, 1024)
	odd := rsaKey(t, 3072)
	pkcs1 := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.PrivateKey)}))
	other := rsaKey(t, 2048)
	otherPub, _ := x509.MarshalPKIXPublicKey(&other.PublicKey)
	otherPubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: otherPub}))
	der, _ := x509.MarshalPKCS8PrivateKey(k.PrivateKey)
	corrupt := append([]byte(nil), der...)
	corrupt[len(corrupt)/2] ^= 0xff
	corrupt = corrupt[:len(corrupt)-40]
	corruptPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: corrupt}))
	encrypted := string(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}))
	valid := string(k.JSON())

	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"empty file", nil, "key file is empty"},
		{"whitespace only", []byte(" \n\t"), "key file is empty"},
		{"not JSON", []byte("id: ajekey1"), "not a JSON object"},
		{"JSON array", []byte(`[` + valid + `]`), "not a JSON object"},
		{"truncated JSON", []byte(valid[:len(valid)/2]), "not valid JSON"},
		{"trailing data", []byte(valid + "{}"), "unexpected data after the JSON object"},
		{"syntax error inside private_key", []byte(strings.Replace(valid, `-----\n`, `-----\q`, 1)), "not valid JSON (at byte"},
		{"too large", append([]byte(valid), make([]byte, grpcauth.MaxKeyFileSize)...), "larger than"},
		{"missing id", keyJSON(t, map[string]any{"id": nil}), "id is missing"},
		{"id with a space", keyJSON(t, map[string]any{"id": "aje key"}), "id has a byte that is not printable ASCII"},
		{"id is a number", keyJSON(t, map[string]any{"id": 42}), `field "id" has the wrong type`},
		{"missing service_account_id", keyJSON(t, map[string]any{"service_account_id": nil}), "service_account_id is missing"},
		{"both account kinds", keyJSON(t, map[string]any{"user_account_id": "ajeuser"}), "both service_account_id and user_account_id"},
		{"spellings differ", keyJSON(t, map[string]any{"serviceAccountId": "ajeother"}), "service_account_id and serviceAccountId are both set and differ"},
		{"missing private_key", keyJSON(t, map[string]any{"private_key": nil}), "private_key is missing"},
		{"private_key not a string", keyJSON(t, map[string]any{"private_key": 1}), `field "private_key" has the wrong type`},
		{"private_key not PEM", keyJSON(t, map[string]any{"private_key": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"}), "private_key: not a PEM block"},
		{"only the warning line", keyJSON(t, map[string]any{"private_key": "PLEASE DO NOT REMOVE THIS LINE! x"}), "no PEM block after"},
		{"PKCS#1", keyJSON(t, map[string]any{"private_key": pkcs1}), "PKCS#1"},
		{"encrypted", keyJSON(t, map[string]any{"private_key": encrypted}), "encrypted"},
		{"corrupt DER", keyJSON(t, map[string]any{"private_key": corruptPEM}), "not a PKCS#8 private key"},
		{"ECDSA key", keyJSON(t, map[string]any{"private_key": pkcs8PEM(t, ec), "public_key": nil}), "key is ECDSA; want RSA"},
		{"RSA 1024", keyJSON(t, map[string]any{"private_key": pkcs8PEM(t, small), "public_key": nil}), "RSA key has 1024 bits; want 2048 or 4096"},
		{"RSA 3072", keyJSON(t, map[string]any{"private_key": pkcs8PEM(t, odd), "public_key": nil}), "RSA key has 3072 bits"},
		{"two PEM blocks", keyJSON(t, map[string]any{"private_key": k.PrivateKeyPEM() + k.PublicKeyPEM()}), "unexpected data after the PEM block"},
		{"public key as private_key", keyJSON(t, map[string]any{"private_key": k.PublicKeyPEM()}), `PEM block is "PUBLIC KEY"`},
		{"key_algorithm mismatch", keyJSON(t, map[string]any{"key_algorithm": "RSA_4096"}), "key_algorithm is RSA_4096 but private_key is RSA_2048"},
		{"key_algorithm unknown", keyJSON(t, map[string]any{"key_algorithm": "ED25519"}), "key_algorithm is not supported"},
		{"public_key of another key", keyJSON(t, map[string]any{"public_key": otherPubPEM}), "public_key does not match private_key"},
		{"public_key not PEM", keyJSON(t, map[string]any{"public_key": "garbage"}), "public_key: not a PEM block"},
		{"created_at not a time", keyJSON(t, map[string]any{"created_at": "yesterday"}), "created_at is not an RFC 3339 time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := grpcauth.ServiceAccountKeyFromBytes(tt.data)
			if err == nil {
				t.Fatal("ServiceAccountKeyFromBytes succeeded, want an error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantErr) {
				t.Errorf("error %q does not mention %q", msg, tt.wantErr)
			}
			if !strings.HasPrefix(msg, "grpcauth: ") {
				t.Errorf("error %q does not start with the package name", msg)
			}
			var fe *grpcauth.FetchError
			if !errors.As(err, &fe) || fe.Temporary {
				t.Errorf("error %#v is not a final FetchError", err)
			}
			assertNoKeyMaterial(t, msg, k.PrivateKeyPEM(), pkcs8PEM(t, small), pkcs8PEM(t, ec), corruptPEM, pkcs1)
		})
	}
}

func TestServiceAccountKeyFromFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "key.json")
	if err := os.WriteFile(good, testKey().JSON(), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := grpcauth.ServiceAccountKeyFromFile(good)
	if err != nil {
		t.Fatalf("ServiceAccountKeyFromFile: %v", err)
	}
	if k.ID != "ajekey1" {
		t.Errorf("ID = %q, want ajekey1", k.ID)
	}

	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, keyJSON(t, map[string]any{"id": nil}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, path, wantErr string
	}{
		{"missing file", filepath.Join(dir, "nope.json"), "no such file"},
		{"malformed file names the file", bad, "id is missing (file " + bad + ")"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := grpcauth.ServiceAccountKeyFromFile(tt.path)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestServiceAccountKeyRedacted(t *testing.T) {
	k, err := grpcauth.ServiceAccountKeyFromBytes(testKey().JSON())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v", *k), fmt.Sprintf("%+v", *k), fmt.Sprintf("%#v", k), fmt.Sprintf("%#v", *k)} {
		if !strings.Contains(s, "[redacted]") || strings.Contains(s, "PRIVATE") {
			t.Errorf("formatted key %q is not redacted", s)
		}
		if strings.Contains(s, k.PublicKey().N.String()[:20]) {
			t.Errorf("formatted key %q shows the modulus", s)
		}
	}
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "PRIVATE") || strings.Contains(string(b), k.PublicKey().N.String()[:20]) {
		t.Errorf("JSON of the key %s shows key material", b)
	}
}

func TestSignJWT(t *testing.T) {
	k, err := grpcauth.ServiceAccountKeyFromBytes(testKey().JSON())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		lifetime time.Duration
		wantExp  time.Time
	}{
		{"an hour", time.Hour, now.Add(time.Hour)},
		{"shorter", 10 * time.Minute, now.Add(10 * time.Minute)},
		{"longer is capped", 5 * time.Hour, now.Add(time.Hour)},
		{"zero means the maximum", 0, now.Add(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := k.SignJWT(now, "https://iam.example/iam/v1/tokens", tt.lifetime)
			if err != nil {
				t.Fatalf("SignJWT: %v", err)
			}
			parts := strings.Split(s, ".")
			if len(parts) != 3 {
				t.Fatalf("JWT has %d parts", len(parts))
			}
			var header, claims map[string]any
			decodePart(t, parts[0], &header)
			decodePart(t, parts[1], &claims)
			wantHeader := map[string]any{"alg": "PS256", "typ": "JWT", "kid": "ajekey1"}
			if diff := cmp.Diff(wantHeader, header); diff != "" {
				t.Errorf("header (-want +got):\n%s", diff)
			}
			wantClaims := map[string]any{
				"iss": "ajesa1",
				"aud": "https://iam.example/iam/v1/tokens",
				"iat": float64(now.Unix()),
				"exp": float64(tt.wantExp.Unix()),
			}
			if diff := cmp.Diff(wantClaims, claims); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
			// RSA-PSS with the salt as long as the hash (32 bytes), strictly.
			sig, err := base64.RawURLEncoding.DecodeString(parts[2])
			if err != nil {
				t.Fatal(err)
			}
			digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
			if err := rsa.VerifyPSS(k.PublicKey(), crypto.SHA256, digest[:], sig,
				&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}); err != nil {
				t.Errorf("signature does not verify with salt length 32: %v", err)
			}
			// And golang-jwt, the issuer's verifier, accepts it.
			_, err = jwt.Parse(s, func(*jwt.Token) (any, error) { return k.PublicKey(), nil },
				jwt.WithValidMethods([]string{"PS256"}), jwt.WithTimeFunc(func() time.Time { return now }))
			if err != nil {
				t.Errorf("golang-jwt rejects the JWT: %v", err)
			}
		})
	}
}

func decodePart(t *testing.T, part string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func TestNewServiceAccountKey(t *testing.T) {
	priv := testKey().PrivateKey
	tests := []struct {
		name, keyID, saID string
		key               *rsa.PrivateKey
		wantErr           string
	}{
		{"valid", "k", "sa", priv, ""},
		{"no key ID", "", "sa", priv, "key id is missing"},
		{"no account", "k", "", priv, "service account id is missing"},
		{"no key", "k", "sa", nil, "no private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := grpcauth.NewServiceAccountKey(tt.keyID, tt.saID, tt.key)
			if tt.wantErr == "" {
				if err != nil || k.KeyAlgorithm != "RSA_2048" {
					t.Fatalf("NewServiceAccountKey = %v, %v", k, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}
