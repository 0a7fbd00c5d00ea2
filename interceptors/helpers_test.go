package interceptors

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/iamtoken/iamtoken-go/internal/fakeclock"
	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
)

// fakeClock is a wall clock that moves only when told.
type fakeClock = fakeclock.Clock

func newFakeClock() *fakeClock { return fakeclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)) }

// signingKey is a private key with the algorithm it signs with.
type signingKey struct {
	alg    string
	kid    string
	method jwt.SigningMethod
	priv   crypto.Signer
}

func (k signingKey) public() crypto.PublicKey { return k.priv.Public() }

var (
	p256Key  = sync.OnceValue(func() crypto.Signer { return must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
	p384Key  = sync.OnceValue(func() crypto.Signer { return must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)) })
	p521Key  = sync.OnceValue(func() crypto.Signer { return must(ecdsa.GenerateKey(elliptic.P521(), rand.Reader)) })
	rsaKey   = sync.OnceValue(func() crypto.Signer { return must(rsa.GenerateKey(rand.Reader, 2048)) })
	rsaKey2  = sync.OnceValue(func() crypto.Signer { return must(rsa.GenerateKey(rand.Reader, 2048)) })
	edKey    = sync.OnceValue(func() crypto.Signer { _, k, _ := ed25519.GenerateKey(rand.Reader); return k })
	p256Key2 = sync.OnceValue(func() crypto.Signer { return must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// keyFor returns a signing key for alg under kid.
func keyFor(alg, kid string) signingKey {
	var priv crypto.Signer
	switch alg {
	case "ES256":
		priv = p256Key()
	case "ES384":
		priv = p384Key()
	case "ES512":
		priv = p521Key()
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		priv = rsaKey()
	case "EdDSA":
		priv = edKey()
	default:
		panic("no key for " + alg)
	}
	return signingKey{alg: alg, kid: kid, method: jwt.GetSigningMethod(alg), priv: priv}
}

// goodClaims are the claims of a valid token issued at now.
func goodClaims(now time.Time) map[string]any {
	return map[string]any{
		"iss":      iamjwt.Issuer,
		"sub":      "ajeSA123",
		"sub_type": iamjwt.SubjectServiceAccount,
		"aud":      iamjwt.Audience,
		"iat":      now.Unix(),
		"exp":      now.Add(time.Hour).Unix(),
		"jti":      "tok-1",
	}
}

func goodHeader(k signingKey) map[string]any {
	return map[string]any{"alg": k.alg, "typ": "JWT", "kid": k.kid}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func b64JSON(v any) string { return b64(must(json.Marshal(v))) }

// sign builds a compact JWS over any header and claims, signed with k's
// algorithm whatever the header says.
func sign(t testing.TB, k signingKey, header, claims map[string]any) string {
	t.Helper()
	return signRaw(t, k, b64JSON(header)+"."+b64JSON(claims))
}

func signRaw(t testing.TB, k signingKey, signingString string) string {
	t.Helper()
	sig, err := k.method.Sign(signingString, k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return signingString + "." + b64(sig)
}

// jwkOf renders a public key as a JWK.
func jwkOf(kid string, pub crypto.PublicKey) map[string]any {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		raw := must(k.Bytes()) // 0x04 || X || Y
		return map[string]any{"kty": "EC", "kid": kid, "use": "sig", "crv": k.Curve.Params().Name,
			"x": b64(raw[1 : 1+size]), "y": b64(raw[1+size:])}
	case *rsa.PublicKey:
		return map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "n": b64(k.N.Bytes()),
			"e": b64(big.NewInt(int64(k.E)).Bytes())}
	case ed25519.PublicKey:
		return map[string]any{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64(k)}
	}
	panic("unsupported key")
}

// jwksServer is an issuer's key-set endpoint whose keys and health tests
// change.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    map[string]crypto.PublicKey // guarded by mu
	down    bool                        // guarded by mu: answer 503
	body    []byte                      // guarded by mu: answer this instead, if set
	fetches int                         // guarded by mu
	block   chan struct{}               // guarded by mu: if set, requests wait on it
}

func newJWKSServer(t *testing.T, keys ...signingKey) *jwksServer {
	s := &jwksServer{keys: map[string]crypto.PublicKey{}}
	for _, k := range keys {
		s.keys[k.kid] = k.public()
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.fetches++
	block, down, body := s.block, s.down, s.body
	set := []any{}
	for kid, k := range s.keys {
		set = append(set, jwkOf(kid, k))
	}
	s.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-r.Context().Done():
			return
		}
	}
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if body == nil {
		body = must(json.Marshal(map[string]any{"keys": set}))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

func (s *jwksServer) set(keys ...signingKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = map[string]crypto.PublicKey{}
	for _, k := range keys {
		s.keys[k.kid] = k.public()
	}
}

func (s *jwksServer) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

func (s *jwksServer) fetchCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// containsSecret reports whether msg holds token or a long piece of it.
func containsSecret(msg, token string) bool {
	if strings.Contains(msg, token) {
		return true
	}
	for _, part := range strings.Split(token, ".") {
		if len(part) >= 12 && strings.Contains(msg, part) {
			return true
		}
	}
	return false
}

func rsaKeyOfBits(bits int) (*rsa.PublicKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, err
	}
	return &k.PublicKey, nil
}
