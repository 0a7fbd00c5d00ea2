package interceptors

import (
	"context"
	"crypto"
	"errors"
	"strings"
	"testing"
)

func FuzzParseAuthorization(f *testing.F) {
	for _, seed := range []string{
		"Bearer abc.def.ghi", "bearer x", "BEARER  x", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz",
		"AWS4-HMAC-SHA256 Credential=YCAJ/20260301/ru-central1/s3/aws4_request, SignedHeaders=host, Signature=00",
		"aws4-hmac-sha256 x", "", " ", "Bearer\tx", "Bearerx",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		s, token := parseAuthorization(v)
		name, rest, _ := strings.Cut(v, " ")
		switch s {
		case schemeBearer:
			if !strings.EqualFold(name, "Bearer") || token != rest || token == "" {
				t.Fatalf("parseAuthorization(%q) = bearer %q", v, token)
			}
		case schemeEmptyBearer:
			if !strings.EqualFold(name, "Bearer") || rest != "" {
				t.Fatalf("parseAuthorization(%q) = empty bearer", v)
			}
		case schemeSigV4:
			if !strings.EqualFold(name, "AWS4-HMAC-SHA256") || token != "" {
				t.Fatalf("parseAuthorization(%q) = SigV4 %q", v, token)
			}
		case schemeOther:
			if strings.EqualFold(name, "Bearer") || strings.EqualFold(name, "AWS4-HMAC-SHA256") || token != "" {
				t.Fatalf("parseAuthorization(%q) = other %q", v, token)
			}
		}
	})
}

func FuzzValidate(f *testing.F) {
	clock := newFakeClock()
	es := keyFor("ES256", "k1")
	good := sign(f, es, goodHeader(es), goodClaims(clock.Now()))
	for _, seed := range []string{
		good,
		sign(f, es, with(goodHeader(es), "alg", "none"), goodClaims(clock.Now())),
		sign(f, es, with(goodHeader(es), "jku", "https://x"), goodClaims(clock.Now())),
		sign(f, es, goodHeader(es), without(goodClaims(clock.Now()), "aud")),
		"", ".", "..", "a.b.c", "eyJhbGciOiJFUzI1NiJ9.e30.AAAA", strings.Repeat("a", maxTokenBytes+1),
	} {
		f.Add(seed)
	}
	keys := map[string]crypto.PublicKey{"k1": es.public()}
	v, err := NewValidator(WithStaticKeys(keys), withClock(clock.Now))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { v.Close() })
	f.Fuzz(func(t *testing.T, token string) {
		if _, err := checkHeader(token, defaultAlgorithms); err == nil {
			// What passed the header check has a sane kid and an allowed alg.
			h, _ := checkHeader(token, defaultAlgorithms)
			if !validKID(h.kid) || !strings.Contains(strings.Join(defaultAlgorithms, ","), h.alg) {
				t.Fatalf("checkHeader passed alg %q kid %q", h.alg, h.kid)
			}
		}
		p, err := v.Validate(context.Background(), token)
		if err == nil {
			if token != good || p.SubjectID != "ajeSA123" {
				t.Fatalf("Validate accepted a token it was not given: %q", token)
			}
			return
		}
		if !errors.Is(err, ErrInvalidToken) && !errors.Is(err, ErrUnavailable) {
			t.Fatalf("error %v wraps neither ErrInvalidToken nor ErrUnavailable", err)
		}
		for _, part := range strings.Split(token, ".") {
			if len(part) >= 20 && strings.Contains(err.Error(), part) {
				t.Fatalf("error %q echoes the token", err)
			}
		}
	})
}
