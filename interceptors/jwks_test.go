package interceptors

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func newJWKSValidator(t *testing.T, srv *jwksServer, clock *fakeClock, opts ...Option) *Validator {
	t.Helper()
	v, err := NewValidator(append([]Option{WithJWKSURL(srv.URL), withClock(clock.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func tokenBy(t *testing.T, k signingKey, clock *fakeClock, jti string) string {
	return sign(t, k, goodHeader(k), with(goodClaims(clock.Now()), "jti", jti))
}

func TestJWKSRotationWithoutRestart(t *testing.T) {
	clock := newFakeClock()
	a, b := keyFor("ES256", "key-a"), keyFor("RS256", "key-b")
	srv := newJWKSServer(t, a)
	v := newJWKSValidator(t, srv, clock)
	ctx := context.Background()

	tokA := tokenBy(t, a, clock, "t-a")
	if _, err := v.Validate(ctx, tokA); err != nil {
		t.Fatalf("token by the first key: %v", err)
	}

	// The issuer publishes a new key. A token naming it triggers a fetch,
	// once the minimum interval since the last fetch has passed.
	srv.set(a, b)
	tokB := tokenBy(t, b, clock, "t-b")
	if _, err := v.Validate(ctx, tokB); !errors.Is(err, errUnknownKID) {
		t.Fatalf("new kid right after a fetch: %v, want %v (rate limited)", err, errUnknownKID)
	}
	clock.Advance(DefaultJWKSMinRefreshInterval)
	before := srv.fetchCount()
	if _, err := v.Validate(ctx, tokB); err != nil {
		t.Fatalf("token by the new key: %v", err)
	}
	if got := srv.fetchCount() - before; got != 1 {
		t.Errorf("fetches for the new kid = %d, want 1", got)
	}
	if n := v.cache.len(); n != 2 {
		t.Fatalf("cache holds %d tokens, want 2", n)
	}

	// The old key leaves the set: its cached token goes with it.
	srv.set(b)
	if err := v.refreshKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if n := v.cache.len(); n != 1 {
		t.Errorf("cache holds %d tokens after the key left, want 1", n)
	}
	if _, err := v.Validate(ctx, tokA); !errors.Is(err, errUnknownKID) {
		t.Errorf("token by the removed key: %v, want %v", err, errUnknownKID)
	}
	if _, err := v.Validate(ctx, tokB); err != nil {
		t.Errorf("token by the remaining key: %v", err)
	}
}

func TestJWKSKeyChangedUnderSameKID(t *testing.T) {
	clock := newFakeClock()
	a := keyFor("ES256", "key-a")
	srv := newJWKSServer(t, a)
	v := newJWKSValidator(t, srv, clock)
	tok := tokenBy(t, a, clock, "t-a")
	if _, err := v.Validate(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	// Same kid, another key: tokens the old key signed must not survive.
	srv.set(signingKey{alg: "ES256", kid: "key-a", priv: p256Key2()})
	if err := v.refreshKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Validate(context.Background(), tok); !errors.Is(err, errSignature) {
		t.Errorf("token by the replaced key: %v, want %v", err, errSignature)
	}
}

func TestJWKSBackgroundRefresh(t *testing.T) {
	clock := newFakeClock() // never advanced: an unknown kid cannot cause a fetch
	a, b := keyFor("ES256", "key-a"), keyFor("EdDSA", "key-b")
	srv := newJWKSServer(t, a)
	v := newJWKSValidator(t, srv, clock, WithJWKSRefreshInterval(time.Millisecond))
	if _, err := v.Validate(context.Background(), tokenBy(t, a, clock, "t-a")); err != nil {
		t.Fatal(err)
	}
	srv.set(b)
	tokB := tokenBy(t, b, clock, "t-b")
	// Wait for the background refresh to see the new key; the deadline only
	// keeps a broken refresh from hanging the test.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := v.Validate(context.Background(), tokB)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the background refresh never picked up the new key: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestJWKSDownKeepsCachedKeys(t *testing.T) {
	clock := newFakeClock()
	a := keyFor("ES256", "key-a")
	srv := newJWKSServer(t, a)
	v := newJWKSValidator(t, srv, clock)
	ctx := context.Background()
	tok := tokenBy(t, a, clock, "t-1")
	if _, err := v.Validate(ctx, tok); err != nil {
		t.Fatal(err)
	}

	srv.setDown(true)
	if err := v.refreshKeys(ctx); err == nil {
		t.Fatal("refresh from a down endpoint succeeded")
	}
	if _, err := v.Validate(ctx, tok); err != nil {
		t.Errorf("cached token while the endpoint is down: %v", err)
	}
	if _, err := v.Validate(ctx, tokenBy(t, a, clock, "t-2")); err != nil {
		t.Errorf("new token by a cached key while the endpoint is down: %v", err)
	}
	clock.Advance(DefaultJWKSMinRefreshInterval)
	unknown := tokenBy(t, keyFor("EdDSA", "key-z"), clock, "t-3")
	if _, err := v.Validate(ctx, unknown); !errors.Is(err, ErrUnavailable) {
		t.Errorf("unknown kid while the endpoint is down: %v, want ErrUnavailable", err)
	}
}

func TestJWKSUnknownKIDRateLimited(t *testing.T) {
	clock := newFakeClock()
	a := keyFor("ES256", "key-a")
	srv := newJWKSServer(t, a)
	v := newJWKSValidator(t, srv, clock)
	ctx := context.Background()
	if _, err := v.Validate(ctx, tokenBy(t, a, clock, "t-1")); err != nil {
		t.Fatal(err)
	}
	before := srv.fetchCount()
	for i := range 20 {
		k := keyFor("ES256", "unknown-"+strings.Repeat("x", i+1))
		if _, err := v.Validate(ctx, tokenBy(t, k, clock, "t")); !errors.Is(err, errUnknownKID) {
			t.Fatalf("unknown kid: %v, want %v", err, errUnknownKID)
		}
	}
	if got := srv.fetchCount() - before; got != 0 {
		t.Errorf("unknown kids within the minimum interval caused %d fetches, want 0", got)
	}
	clock.Advance(DefaultJWKSMinRefreshInterval)
	for range 5 {
		v.Validate(ctx, tokenBy(t, keyFor("ES256", "unknown-y"), clock, "t"))
	}
	if got := srv.fetchCount() - before; got != 1 {
		t.Errorf("unknown kids after the interval caused %d fetches, want 1", got)
	}
}

func TestJWKSWaitBoundedByContext(t *testing.T) {
	clock := newFakeClock()
	a := keyFor("ES256", "key-a")
	srv := newJWKSServer(t, a)
	release := make(chan struct{})
	srv.mu.Lock()
	srv.block = release
	srv.mu.Unlock()
	defer close(release) // before Close: let the blocked fetch end

	v := newJWKSValidator(t, srv, clock)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := v.Validate(ctx, tokenBy(t, a, clock, "t-1"))
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Validate while the key set hangs = %v, want ErrUnavailable wrapping context.Canceled", err)
	}
}

func TestJWKSSizeLimit(t *testing.T) {
	clock := newFakeClock()
	a := keyFor("ES256", "key-a")
	srv := newJWKSServer(t, a)
	v := newJWKSValidator(t, srv, clock)
	ctx := context.Background()
	if err := v.refreshKeys(ctx); err != nil {
		t.Fatal(err)
	}
	big := map[string]any{"keys": []any{jwkOf("key-a", a.public())}, "pad": strings.Repeat("x", maxJWKSBytes)}
	srv.mu.Lock()
	srv.body = must(json.Marshal(big))
	srv.mu.Unlock()
	if err := v.refreshKeys(ctx); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("refresh of an oversize key set = %v, want a size error", err)
	}
	if _, err := v.Validate(ctx, tokenBy(t, a, clock, "t-1")); err != nil {
		t.Errorf("keys fetched before an oversize answer: %v", err)
	}
}

func TestParseJWKS(t *testing.T) {
	es, rs, ed := keyFor("ES256", "e"), keyFor("RS256", "r"), keyFor("EdDSA", "o")
	set := func(keys ...any) []byte { return must(json.Marshal(map[string]any{"keys": keys})) }
	tests := []struct {
		name     string
		data     []byte
		wantKIDs []string
		wantErr  bool
	}{
		{"EC, RSA and OKP", set(jwkOf("e", es.public()), jwkOf("r", rs.public()), jwkOf("o", ed.public())), []string{"e", "o", "r"}, false},
		{"unsupported kty skipped", set(jwkOf("e", es.public()), map[string]any{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}), []string{"e"}, false},
		{"encryption key skipped", set(jwkOf("e", es.public()), with(jwkOf("r", rs.public()), "use", "enc")), []string{"e"}, false},
		{"bad kid skipped", set(jwkOf("e", es.public()), jwkOf("r/1", rs.public())), []string{"e"}, false},
		{"unsupported alg skipped", set(jwkOf("e", es.public()), with(jwkOf("r", rs.public()), "alg", "RSA-OAEP")), []string{"e"}, false},
		{"point off the curve skipped", set(jwkOf("e", es.public()), with(jwkOf("x", es.public()), "y", b64(make([]byte, 32)))), []string{"e"}, false},
		{"Ed448 skipped", set(jwkOf("e", es.public()), map[string]any{"kty": "OKP", "kid": "o", "crv": "Ed448", "x": b64(make([]byte, 57))}), []string{"e"}, false},
		{"private key", set(with(jwkOf("e", es.public()), "d", "AAAA")), nil, true},
		{"duplicate kid", set(jwkOf("e", es.public()), jwkOf("e", ed.public())), nil, true},
		{"no usable key", set(map[string]any{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}), nil, true},
		{"empty", set(), nil, true},
		{"not JSON", []byte("<html>"), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := parseJWKS(tt.data)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseJWKS error = %v, want error %v", err, tt.wantErr)
			}
			var kids []string
			for kid := range keys {
				kids = append(kids, kid)
			}
			slices.Sort(kids)
			if strings.Join(kids, ",") != strings.Join(tt.wantKIDs, ",") {
				t.Errorf("kids = %v, want %v", kids, tt.wantKIDs)
			}
		})
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	srv := newJWKSServer(t, keyFor("ES256", "key-a"))
	v, err := NewValidator(WithJWKSURL(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	v.Close()
}

func TestJWKSDownAtStartup(t *testing.T) {
	clock := newFakeClock()
	a := keyFor("ES256", "key-a")
	srv := newJWKSServer(t, a)
	srv.setDown(true)
	v := newJWKSValidator(t, srv, clock)
	ctx := context.Background()
	tok := tokenBy(t, a, clock, "t-1")

	// With no key set at all, the answer is "try again", not "unknown key":
	// whether the call joins the first fetch or comes after it failed.
	for range 2 {
		if _, err := v.Validate(ctx, tok); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Validate with the endpoint down since startup = %v, want ErrUnavailable", err)
		}
	}
	srv.setDown(false)
	clock.Advance(DefaultJWKSMinRefreshInterval)
	if _, err := v.Validate(ctx, tok); err != nil {
		t.Fatalf("Validate once the endpoint is back: %v", err)
	}
}

// TestConcurrentValidateAndRotation runs validations on every core while
// the key set rotates, for the race detector: cache hits, inserts, sweeps
// and key-set swaps all at once.
func TestConcurrentValidateAndRotation(t *testing.T) {
	clock := newFakeClock()
	a, b := keyFor("ES256", "key-a"), keyFor("EdDSA", "key-b")
	srv := newJWKSServer(t, a, b)
	v := newJWKSValidator(t, srv, clock)
	ctx := context.Background()
	if err := v.refreshKeys(ctx); err != nil {
		t.Fatal(err)
	}
	var toks []string
	for i := range 16 {
		k := a
		if i%2 == 1 {
			k = b
		}
		toks = append(toks, tokenBy(t, k, clock, "t-"+strings.Repeat("x", i+1)))
	}
	done := make(chan struct{})
	errs := make(chan error, 8)
	for w := range 8 {
		go func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				_, err := v.Validate(ctx, toks[(i+w)%len(toks)])
				// key-b comes and goes; key-a always verifies.
				if err != nil && (i+w)%2 == 0 {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range 20 {
		if i%2 == 0 {
			srv.set(a)
		} else {
			srv.set(a, b)
		}
		if err := v.refreshKeys(ctx); err != nil {
			t.Error(err)
		}
	}
	close(done)
	for range 8 {
		if err := <-errs; err != nil {
			t.Errorf("token by a key that never left: %v", err)
		}
	}
}
