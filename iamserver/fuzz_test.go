package iamserver

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
)

// FuzzExchangeJWT feeds the exchange arbitrary JWTs: it must never panic,
// never echo the input, and issue a token only for the account that owns
// the key.
func FuzzExchangeJWT(f *testing.F) {
	env := newTestEnv(f)
	now := env.clock.Now()
	a := env.newServiceAccount(f, "user-alice", "robot")
	good := saJWT(f, now, a, nil)
	f.Add(good)
	f.Add(saJWT(f, now.Add(-2*time.Hour), a, nil))
	f.Add(saJWT(f, now, a, func(c jwt.MapClaims, h map[string]any) { c["aud"] = 7; h["kid"] = []int{1} }))
	f.Add(saJWT(f, now, a, func(c jwt.MapClaims, h map[string]any) { h["alg"] = "none"; c["exp"] = "soon" }))
	f.Add(strings.Join(strings.Split(good, ".")[:2], ".") + ".")
	f.Add("e30.e30.")
	f.Add("..")
	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := env.srv.ExchangeJWT(context.Background(), raw)
		if err != nil {
			if len(raw) > 16 && strings.Contains(err.Error(), raw) {
				t.Errorf("the error echoes the input")
			}
			if !errors.Is(err, ErrInvalidCredentials) && !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("unexpected kind of error: %v", err)
			}
			return
		}
		claims, err := verifyWithJWKS(t, env.srv.JWKS(), tok.Value, now)
		if err != nil || claims.Subject != a.sa.ID {
			t.Errorf("issued a token for %q (%v)", claims.Subject, err)
		}
	})
}

// FuzzVerifyIssuedToken feeds Revoke's token check arbitrary input: only a
// token this issuer signed may pass.
func FuzzVerifyIssuedToken(f *testing.F) {
	env := newTestEnv(f)
	tok, err := env.srv.IssueToken("user-alice", iamjwt.SubjectUserAccount)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok.Value)
	f.Add(tok.Value[:len(tok.Value)-2])
	f.Add("e30.e30.")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		claims, err := env.srv.verifyIssuedToken(raw)
		if err != nil {
			return
		}
		if raw != tok.Value && claims.ID != mustJTI(t, tok.Value) {
			t.Errorf("accepted a token the issuer did not sign")
		}
	})
}

func mustJTI(t *testing.T, tok string) string {
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil {
		t.Fatal(err)
	}
	return c.ID
}
