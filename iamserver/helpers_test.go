package iamserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/iamtoken/iamtoken-go/interceptors"
	"github.com/iamtoken/iamtoken-go/internal/fakeclock"
	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
)

// fakeClock is a wall clock that moves only when told.
type fakeClock = fakeclock.Clock

func newFakeClock() *fakeClock { return fakeclock.New(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)) }

var discardLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

type testEnv struct {
	srv   *Server
	store Store
	clock *fakeClock
}

// newTestEnv starts a Server over a MemoryStore with a fake clock and no
// background rotation; opts may change the Options first.
func newTestEnv(t testing.TB, opts ...func(*Options)) *testEnv {
	t.Helper()
	clock := newFakeClock()
	store := NewMemoryStore()
	o := Options{
		Store:                     store,
		Now:                       clock.Now,
		Logger:                    discardLogger,
		DisableBackgroundRotation: true,
		OAuthTokens:               map[string]string{"y0_good-oauth-token": "user-alice"},
	}
	for _, f := range opts {
		f(&o)
	}
	srv, err := New(context.Background(), o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return &testEnv{srv: srv, store: store, clock: clock}
}

func userCtx(id string) context.Context {
	return interceptors.NewContextWithPrincipal(context.Background(), &interceptors.Principal{
		SubjectID: id, SubjectType: interceptors.SubjectUserAccount, Method: interceptors.AuthIAMToken,
	})
}

func saCtx(id string) context.Context {
	return interceptors.NewContextWithPrincipal(context.Background(), &interceptors.Principal{
		SubjectID: id, SubjectType: interceptors.SubjectServiceAccount, Method: interceptors.AuthIAMToken,
	})
}

// saWithKey is a service account with an authorized key, created through
// the Go API.
type saWithKey struct {
	sa   *ServiceAccount
	key  *AuthorizedKey
	priv *rsa.PrivateKey
}

func (e *testEnv) newServiceAccount(t testing.TB, owner, name string) saWithKey {
	t.Helper()
	id, err := newID(prefixServiceAccount)
	if err != nil {
		t.Fatal(err)
	}
	sa := &ServiceAccount{ID: id, Name: name, CreatedBy: owner, CreatedAt: e.clock.Now()}
	if err := e.store.CreateServiceAccount(context.Background(), sa); err != nil {
		t.Fatal(err)
	}
	k, file, err := e.srv.CreateAuthorizedKey(context.Background(), sa.ID, "", 2048)
	if err != nil {
		t.Fatal(err)
	}
	return saWithKey{sa: sa, key: k, priv: parsePrivatePEM(t, file.PrivateKey)}
}

func parsePrivatePEM(t testing.TB, s string) *rsa.PrivateKey {
	t.Helper()
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		t.Fatal("private key is not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*rsa.PrivateKey)
}

// saJWT signs a service account's exchange JWT the way the reference SDK
// does, with the given changes applied to the claims and header.
func saJWT(t testing.TB, now time.Time, a saWithKey, edit func(c jwt.MapClaims, h map[string]any)) string {
	t.Helper()
	c := jwt.MapClaims{
		"iss": a.sa.ID,
		"aud": []string{iamjwt.ReferenceTokenURL},
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodPS256, c)
	tok.Header["kid"] = a.key.ID
	if edit != nil {
		edit(c, tok.Header)
	}
	s, err := tok.SignedString(a.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// verifyWithJWKS checks an IAM token the way a validator does: only with the
// published JWKS document.
func verifyWithJWKS(t testing.TB, jwksDoc []byte, token string, now time.Time) (*iamjwt.Claims, error) {
	t.Helper()
	var doc struct {
		Keys []struct {
			Kty, Crv, X, Y, Kid, Alg string
		} `json:"keys"`
	}
	if err := json.Unmarshal(jwksDoc, &doc); err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	keys := map[string]*ecdsa.PublicKey{}
	for _, k := range doc.Keys {
		if k.Kty != "EC" || k.Crv != "P-256" || k.Alg != "ES256" {
			t.Fatalf("JWKS key %s: kty %s crv %s alg %s", k.Kid, k.Kty, k.Crv, k.Alg)
		}
		x, _ := base64.RawURLEncoding.DecodeString(k.X)
		y, _ := base64.RawURLEncoding.DecodeString(k.Y)
		keys[k.Kid] = &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
	}
	var claims iamjwt.Claims
	_, err := jwt.NewParser(
		jwt.WithValidMethods([]string{"ES256"}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithAudience(iamjwt.Audience),
		jwt.WithIssuer(iamjwt.Issuer),
	).ParseWithClaims(token, &claims, func(tok *jwt.Token) (any, error) {
		k, ok := keys[tok.Header["kid"].(string)]
		if !ok {
			return nil, jwt.ErrTokenUnverifiable
		}
		return k, nil
	})
	return &claims, err
}

func publicPEM(t testing.TB, pub *rsa.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

var cmpSortStrings = cmpopts.SortSlices(func(a, b string) bool { return a < b })
