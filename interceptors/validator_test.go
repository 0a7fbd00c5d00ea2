package interceptors

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
)

// newTestValidator returns a Validator over static ES256, RSA and Ed25519
// keys with a fake clock.
func newTestValidator(t *testing.T, clock *fakeClock, opts ...Option) *Validator {
	t.Helper()
	keys := map[string]crypto.PublicKey{
		"k1":   keyFor("ES256", "k1").public(),
		"rsa1": keyFor("RS256", "rsa1").public(),
		"ed1":  keyFor("EdDSA", "ed1").public(),
	}
	v, err := NewValidator(append([]Option{WithStaticKeys(keys), withClock(clock.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func with(m map[string]any, kv ...any) map[string]any {
	m = maps.Clone(m)
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func without(m map[string]any, keys ...string) map[string]any {
	m = maps.Clone(m)
	for _, k := range keys {
		delete(m, k)
	}
	return m
}

// TestValidateRefusals has one row per refusal, each with a token crafted
// for it and otherwise valid.
func TestValidateRefusals(t *testing.T) {
	clock := newFakeClock()
	now := clock.Now()
	v := newTestValidator(t, clock)
	es := keyFor("ES256", "k1")
	h := goodHeader(es)
	c := goodClaims(now)
	good := sign(t, es, h, c)
	parts := strings.Split(good, ".")
	otherSig := strings.Split(sign(t, signingKey{alg: "ES256", kid: "k1", method: jwt.SigningMethodES256, priv: p256Key2()}, h, c), ".")[2]
	pubDER := must(x509.MarshalPKIXPublicKey(es.public()))
	hmac := func(alg string) string {
		m := jwt.GetSigningMethod(alg)
		s := b64JSON(with(h, "alg", alg)) + "." + b64JSON(c)
		sig := must(m.Sign(s, pubDER)) // the classic confusion: the public key as HMAC secret
		return s + "." + b64(sig)
	}
	withSig := func(header map[string]any) string { // a real signature over a header we do not verify first
		return sign(t, es, header, c)
	}

	tests := []struct {
		name  string
		token string
		want  error
	}{
		// Algorithms.
		{"alg none", withSig(with(h, "alg", "none")), errAlgNone},
		{"alg NONE", withSig(with(h, "alg", "NONE")), errAlgNone},
		{"alg nOnE", withSig(with(h, "alg", "nOnE")), errAlgNone},
		{"alg none with empty signature", b64JSON(with(h, "alg", "none")) + "." + b64JSON(c) + ".", errNotCompact},
		{"alg HS256 keyed with the public key", hmac("HS256"), errAlgHMAC},
		{"alg HS384", hmac("HS384"), errAlgHMAC},
		{"alg HS512", hmac("HS512"), errAlgHMAC},
		{"alg supported but off the allow-list", sign(t, keyFor("ES384", "k1"), with(h, "alg", "ES384"), c), errAlgNotAllowed},
		{"alg RS512 off the allow-list", sign(t, keyFor("RS512", "rsa1"), with(h, "alg", "RS512", "kid", "rsa1"), c), errAlgNotAllowed},
		{"alg unknown", withSig(with(h, "alg", "XY999")), errAlgNotAllowed},
		{"alg lower-case es256", withSig(with(h, "alg", "es256")), errAlgNotAllowed},
		{"alg missing", withSig(without(h, "alg")), errAlgNotAllowed},
		{"alg not a string", withSig(with(h, "alg", 256)), errAlgNotAllowed},
		// kid.
		{"kid missing", withSig(without(h, "kid")), errNoKID},
		{"kid empty", withSig(with(h, "kid", "")), errBadKID},
		{"kid path traversal", withSig(with(h, "kid", "../../etc/passwd")), errBadKID},
		{"kid SQL", withSig(with(h, "kid", "k1' OR '1'='1")), errBadKID},
		{"kid too long", withSig(with(h, "kid", strings.Repeat("k", maxKIDLen+1))), errBadKID},
		{"kid not a string", withSig(with(h, "kid", 1)), errBadKID},
		{"kid unknown", withSig(with(h, "kid", "k9")), errUnknownKID},
		// Headers that bring keys or extensions.
		{"jku header", withSig(with(h, "jku", "https://attacker.example/jwks")), errKeyInHeader},
		{"x5u header", withSig(with(h, "x5u", "https://attacker.example/cert")), errKeyInHeader},
		{"jwk header", withSig(with(h, "jwk", jwkOf("k1", es.public()))), errKeyInHeader},
		{"x5c header", withSig(with(h, "x5c", []string{b64(pubDER)})), errKeyInHeader},
		{"crit header", withSig(with(h, "crit", []string{"exp"}, "exp", 1)), errCrit},
		{"crit header, empty", withSig(with(h, "crit", []string{})), errCrit},
		{"typ not JWT", withSig(with(h, "typ", "at+jwt")), errTyp},
		// Shape and encoding.
		{"empty", "", errNotCompact},
		{"two parts", parts[0] + "." + parts[1], errNotCompact},
		{"four parts", good + ".x", errNotCompact},
		{"JWE, five parts", "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", errNotCompact},
		{"empty header", "." + parts[1] + "." + parts[2], errNotCompact},
		{"empty claims", parts[0] + ".." + parts[2], errNotCompact},
		{"padding", parts[0] + "=." + parts[1] + "." + parts[2], errNotCompact},
		{"standard base64 alphabet", parts[0] + "." + parts[1] + "+/." + parts[2], errNotCompact},
		{"space", parts[0] + ". " + parts[1] + "." + parts[2], errNotCompact},
		{"over the size limit, otherwise valid", sign(t, es, h, with(c, "pad", strings.Repeat("p", maxTokenBytes))), errTooLarge},
		{"header bad base64", "a." + parts[1] + "." + parts[2], errBadBase64},
		{"header not JSON", b64([]byte("alg=ES256")) + "." + parts[1] + "." + parts[2], errBadJSON},
		{"header a JSON array", b64([]byte(`["ES256"]`)) + "." + parts[1] + "." + parts[2], errBadJSON},
		{"header JSON null", b64([]byte(`null`)) + "." + parts[1] + "." + parts[2], errBadJSON},
		{"claims bad base64", parts[0] + ".a." + parts[2], errBadBase64},
		{"claims not JSON", signRaw(t, es, parts[0]+"."+b64([]byte("{sub:1"))), errBadJSON},
		{"claims exp a string", sign(t, es, h, with(c, "exp", "tomorrow")), errBadJSON},
		{"signature bad base64", parts[0] + "." + parts[1] + ".a", errBadBase64},
		// Signature.
		{"signature by another key", parts[0] + "." + parts[1] + "." + otherSig, errSignature},
		{"claims changed after signing", parts[0] + "." + b64JSON(with(c, "sub", "admin")) + "." + parts[2], errSignature},
		{"kid of a key of another type", sign(t, keyFor("RS256", "k1"), with(h, "alg", "RS256"), c), errKeyMismatch},
		// Claims.
		{"iss wrong", sign(t, es, h, with(c, "iss", "https://evil.example")), errIssuer},
		{"iss missing", sign(t, es, h, without(c, "iss")), errIssuer},
		{"aud missing", sign(t, es, h, without(c, "aud")), errNoAudience},
		{"aud empty list", sign(t, es, h, with(c, "aud", []string{})), errNoAudience},
		{"aud wrong", sign(t, es, h, with(c, "aud", "other-api")), errAudience},
		{"aud list without ours", sign(t, es, h, with(c, "aud", []string{"a", "b"})), errAudience},
		{"exp missing", sign(t, es, h, without(c, "exp")), errNoExpiry},
		{"iat missing", sign(t, es, h, without(c, "iat")), errNoIssuedAt},
		{"expired beyond leeway", sign(t, es, h, with(c, "iat", now.Add(-2*time.Hour).Unix(), "exp", now.Add(-DefaultLeeway-time.Second).Unix())), errExpired},
		{"iat in the future beyond leeway", sign(t, es, h, with(c, "iat", now.Add(DefaultLeeway+time.Minute).Unix())), errIssuedFuture},
		{"nbf in the future beyond leeway", sign(t, es, h, with(c, "nbf", now.Add(DefaultLeeway+time.Minute).Unix())), errNotYetValid},
		{"lifetime over 12h", sign(t, es, h, with(c, "exp", now.Add(iamjwt.MaxLifetime+time.Second).Unix())), errLifetime},
		{"exp before iat", sign(t, es, h, with(c, "iat", now.Unix(), "exp", now.Add(-time.Second).Unix())), errLifetime},
		{"sub missing", sign(t, es, h, without(c, "sub")), errNoSubject},
		{"sub_type unknown", sign(t, es, h, with(c, "sub_type", "root")), errSubjectType},
		{"sub_type missing", sign(t, es, h, without(c, "sub_type")), errSubjectType},
		{"jti missing", sign(t, es, h, without(c, "jti")), errNoTokenID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Validate(context.Background(), tt.token)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Validate = %v, %v; want %v", p, err, tt.want)
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("error %v does not wrap ErrInvalidToken", err)
			}
			if tt.token != "" && containsSecret(err.Error(), tt.token) {
				t.Errorf("error %q echoes the token", err)
			}
		})
	}
	if n := v.cache.len(); n != 0 {
		t.Errorf("cache holds %d entries after refusals only, want 0", n)
	}
	// The untouched token passes: each row differs from it in one way.
	if _, err := v.Validate(context.Background(), good); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
}

func TestValidateAccepts(t *testing.T) {
	clock := newFakeClock()
	now := clock.Now()
	v := newTestValidator(t, clock, WithAlgorithms(supportedAlgorithms...))
	kidOf := map[string]string{"ES": "k1", "RS": "rsa1", "PS": "rsa1", "Ed": "ed1"}
	tests := []struct {
		name   string
		alg    string
		claims map[string]any
		want   Principal
	}{
		{"ES256", "ES256", goodClaims(now), Principal{SubjectID: "ajeSA123", SubjectType: SubjectServiceAccount, Method: AuthIAMToken, TokenID: "tok-1", ExpiresAt: now.Add(time.Hour)}},
		{"RS256 user account", "RS256", with(goodClaims(now), "sub_type", "user_account", "sub", "aje-user"), Principal{SubjectID: "aje-user", SubjectType: SubjectUserAccount, Method: AuthIAMToken, TokenID: "tok-1", ExpiresAt: now.Add(time.Hour)}},
		{"RS384", "RS384", goodClaims(now), Principal{SubjectID: "ajeSA123", SubjectType: SubjectServiceAccount, Method: AuthIAMToken, TokenID: "tok-1", ExpiresAt: now.Add(time.Hour)}},
		{"PS256 federated user", "PS256", with(goodClaims(now), "sub_type", "federated_user"), Principal{SubjectID: "ajeSA123", SubjectType: SubjectFederatedUser, Method: AuthIAMToken, TokenID: "tok-1", ExpiresAt: now.Add(time.Hour)}},
		{"PS512", "PS512", goodClaims(now), Principal{SubjectID: "ajeSA123", SubjectType: SubjectServiceAccount, Method: AuthIAMToken, TokenID: "tok-1", ExpiresAt: now.Add(time.Hour)}},
		{"EdDSA", "EdDSA", goodClaims(now), Principal{SubjectID: "ajeSA123", SubjectType: SubjectServiceAccount, Method: AuthIAMToken, TokenID: "tok-1", ExpiresAt: now.Add(time.Hour)}},
		{"aud list with ours", "ES256", with(goodClaims(now), "aud", []string{"x", iamjwt.Audience}), Principal{SubjectID: "ajeSA123", SubjectType: SubjectServiceAccount, Method: AuthIAMToken, TokenID: "tok-1", ExpiresAt: now.Add(time.Hour)}},
		{"lifetime exactly 12h", "ES256", with(goodClaims(now), "exp", now.Add(12*time.Hour).Unix()), Principal{SubjectID: "ajeSA123", SubjectType: SubjectServiceAccount, Method: AuthIAMToken, TokenID: "tok-1", ExpiresAt: now.Add(12 * time.Hour)}},
		{"iat ahead within leeway", "ES256", with(goodClaims(now), "iat", now.Add(10*time.Second).Unix()), Principal{SubjectID: "ajeSA123", SubjectType: SubjectServiceAccount, Method: AuthIAMToken, TokenID: "tok-1", ExpiresAt: now.Add(time.Hour)}},
		{"expired within leeway", "ES256", with(goodClaims(now), "iat", now.Add(-time.Hour).Unix(), "exp", now.Add(-10*time.Second).Unix()), Principal{SubjectID: "ajeSA123", SubjectType: SubjectServiceAccount, Method: AuthIAMToken, TokenID: "tok-1", ExpiresAt: now.Add(-10 * time.Second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := keyFor(tt.alg, kidOf[tt.alg[:2]])
			token := sign(t, k, goodHeader(k), tt.claims)
			for i := range 2 { // the second answer comes from the cache, if cached
				p, err := v.Validate(context.Background(), token)
				if err != nil {
					t.Fatalf("Validate #%d: %v", i, err)
				}
				if diff := cmp.Diff(&tt.want, p); diff != "" {
					t.Errorf("Validate #%d principal (-want +got):\n%s", i, diff)
				}
			}
		})
	}
}

func TestCache(t *testing.T) {
	clock := newFakeClock()
	v := newTestValidator(t, clock)
	es := keyFor("ES256", "k1")
	token := sign(t, es, goodHeader(es), goodClaims(clock.Now()))

	p1, err := v.Validate(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	if n := v.cache.len(); n != 1 {
		t.Fatalf("cache holds %d entries, want 1", n)
	}
	p2, err := v.Validate(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	if p1 != p2 {
		t.Error("second Validate did not answer from the cache")
	}
	if n := testing.AllocsPerRun(100, func() { v.Validate(context.Background(), token) }); n != 0 {
		t.Errorf("a cache hit allocates %v times, want 0", n)
	}

	// At exp the entry is dead; within the leeway jwt still accepts the
	// token, but it is not cached again.
	clock.Advance(time.Hour)
	if _, err := v.Validate(context.Background(), token); err != nil {
		t.Fatalf("within the leeway: %v", err)
	}
	if e := v.cache.get(token, clock.Now().UnixNano()); e != nil {
		t.Error("a token at its expiry was served from the cache")
	}
	clock.Advance(DefaultLeeway + time.Second)
	if _, err := v.Validate(context.Background(), token); !errors.Is(err, errExpired) {
		t.Fatalf("after exp + leeway: %v, want %v", err, errExpired)
	}
}

func TestCacheIsBounded(t *testing.T) {
	clock := newFakeClock()
	v := newTestValidator(t, clock, WithCacheSize(1)) // one entry per shard
	ed := keyFor("EdDSA", "ed1")
	for i := range 5 * cacheShards {
		c := with(goodClaims(clock.Now()), "jti", "tok-"+string(rune('a'+i%26))+strings.Repeat("x", i/26))
		if _, err := v.Validate(context.Background(), sign(t, ed, goodHeader(ed), c)); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.cache.len(); n > cacheShards {
		t.Errorf("cache holds %d entries, want at most %d", n, cacheShards)
	}
}

func TestCacheDisabled(t *testing.T) {
	clock := newFakeClock()
	v := newTestValidator(t, clock, WithCacheSize(0))
	es := keyFor("ES256", "k1")
	token := sign(t, es, goodHeader(es), goodClaims(clock.Now()))
	for range 2 {
		if _, err := v.Validate(context.Background(), token); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.cache.len(); n != 0 {
		t.Errorf("disabled cache holds %d entries", n)
	}
}

// revocations is a RevocationList over a set, counting lookups.
type revocations struct {
	mu      sync.Mutex
	revoked map[string]bool // guarded by mu
	err     error           // guarded by mu
	lookups int             // guarded by mu
}

func newRevocations() *revocations {
	return &revocations{revoked: map[string]bool{}}
}

func (r *revocations) IsRevoked(_ context.Context, jti string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups++
	return r.revoked[jti], r.err
}

func (r *revocations) revoke(jti string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revoked[jti] = true
}

func (r *revocations) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

func (r *revocations) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lookups
}

func TestRevocation(t *testing.T) {
	es := keyFor("ES256", "k1")
	t.Run("checked on every use by default", func(t *testing.T) {
		clock := newFakeClock()
		rl := newRevocations()
		v := newTestValidator(t, clock, WithRevocationList(rl))
		token := sign(t, es, goodHeader(es), goodClaims(clock.Now()))
		for range 3 {
			if _, err := v.Validate(context.Background(), token); err != nil {
				t.Fatal(err)
			}
		}
		if got := rl.count(); got != 3 {
			t.Errorf("revocation lookups = %d, want 3", got)
		}
		rl.revoke("tok-1")
		if _, err := v.Validate(context.Background(), token); !errors.Is(err, errRevoked) {
			t.Fatalf("revoked token: %v, want %v", err, errRevoked)
		}
		if n := v.cache.len(); n != 0 {
			t.Errorf("revoked token still cached (%d entries)", n)
		}
	})
	t.Run("revoked before first use", func(t *testing.T) {
		clock := newFakeClock()
		rl := newRevocations()
		rl.revoke("tok-1")
		v := newTestValidator(t, clock, WithRevocationList(rl))
		token := sign(t, es, goodHeader(es), goodClaims(clock.Now()))
		if _, err := v.Validate(context.Background(), token); !errors.Is(err, errRevoked) {
			t.Fatalf("Validate = %v, want %v", err, errRevoked)
		}
	})
	t.Run("with an interval", func(t *testing.T) {
		clock := newFakeClock()
		rl := newRevocations()
		v := newTestValidator(t, clock, WithRevocationList(rl), WithRevocationCheckInterval(time.Minute))
		token := sign(t, es, goodHeader(es), goodClaims(clock.Now()))
		for range 3 {
			if _, err := v.Validate(context.Background(), token); err != nil {
				t.Fatal(err)
			}
		}
		if got := rl.count(); got != 1 {
			t.Errorf("revocation lookups within the interval = %d, want 1", got)
		}
		rl.revoke("tok-1")
		if _, err := v.Validate(context.Background(), token); err != nil {
			t.Errorf("within the interval a revocation may go unseen, got %v", err)
		}
		clock.Advance(time.Minute)
		if _, err := v.Validate(context.Background(), token); !errors.Is(err, errRevoked) {
			t.Fatalf("after the interval: %v, want %v", err, errRevoked)
		}
	})
	t.Run("list failing fails closed", func(t *testing.T) {
		clock := newFakeClock()
		rl := newRevocations()
		v := newTestValidator(t, clock, WithRevocationList(rl))
		token := sign(t, es, goodHeader(es), goodClaims(clock.Now()))
		if _, err := v.Validate(context.Background(), token); err != nil {
			t.Fatal(err)
		}
		rl.fail(errors.New("store down"))
		_, err := v.Validate(context.Background(), token)
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Validate = %v, want ErrUnavailable", err)
		}
	})
}

func TestNewValidatorErrors(t *testing.T) {
	small := must(rsaKeyOfBits(1024))
	tests := []struct {
		name string
		opts []Option
	}{
		{"no keys", nil},
		{"static and JWKS", []Option{WithStaticKeys(map[string]crypto.PublicKey{"k1": keyFor("ES256", "k1").public()}), WithJWKSURL("https://iam.example/jwks")}},
		{"empty static keys", []Option{WithStaticKeys(map[string]crypto.PublicKey{})}},
		{"bad kid", []Option{WithStaticKeys(map[string]crypto.PublicKey{"k/1": keyFor("ES256", "k1").public()})}},
		{"short RSA key", []Option{WithStaticKeys(map[string]crypto.PublicKey{"k1": small})}},
		{"HMAC secret as key", []Option{WithStaticKeys(map[string]crypto.PublicKey{"k1": []byte("secret")})}},
		{"HS256 allowed", []Option{WithStaticKeys(map[string]crypto.PublicKey{"k1": keyFor("ES256", "k1").public()}), WithAlgorithms("HS256")}},
		{"none allowed", []Option{WithStaticKeys(map[string]crypto.PublicKey{"k1": keyFor("ES256", "k1").public()}), WithAlgorithms("none")}},
		{"JWKS URL not http", []Option{WithJWKSURL("file:///etc/jwks.json")}},
		{"negative cache size", []Option{WithStaticKeys(map[string]crypto.PublicKey{"k1": keyFor("ES256", "k1").public()}), WithCacheSize(-1)}},
		{"huge leeway", []Option{WithStaticKeys(map[string]crypto.PublicKey{"k1": keyFor("ES256", "k1").public()}), WithLeeway(time.Hour)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewValidator(tt.opts...)
			if err == nil {
				v.Close()
				t.Fatal("NewValidator succeeded, want an error")
			}
			if !strings.HasPrefix(err.Error(), "interceptors: ") {
				t.Errorf("error %q does not start with the package name", err)
			}
		})
	}
}
