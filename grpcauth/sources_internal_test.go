package grpcauth

import (
	"context"
	"strings"
	"testing"
	"time"
)

// setClock points the sources' clock at *now for the test.
func setClock(t *testing.T, now *time.Time) {
	t.Helper()
	saved := sourceNow
	sourceNow = func() time.Time { return *now }
	t.Cleanup(func() { sourceNow = saved })
}

// TestFunctionContextSourceNeverOutlivesItsToken moves the clock past the
// supplied lifetime: the source must stop handing out the token then, and
// take the next invocation's.
func TestFunctionContextSourceNeverOutlivesItsToken(t *testing.T) {
	now := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	setClock(t, &now)
	src := NewFunctionContextSource()
	if err := src.Set("t1.first", 5*time.Minute); err != nil {
		t.Fatal(err)
	}

	now = now.Add(5*time.Minute - time.Second)
	if tok, err := src.Token(context.Background()); err != nil || tok.Value != "t1.first" {
		t.Fatalf("1 s before expiry: Token = %v, %v", tok, err)
	}
	now = now.Add(time.Second)
	_, err := src.Token(context.Background())
	if err == nil || !strings.Contains(err.Error(), "token expired at 2026-12-04T20:05:00Z") {
		t.Fatalf("at expiry: error %v, want the token to have expired", err)
	}
	if strings.Contains(err.Error(), "t1.first") {
		t.Errorf("error %q contains the token", err)
	}

	if err := src.SetJSON([]byte(`{"access_token":"t1.second","expires_in":60,"token_type":"Bearer"}`)); err != nil {
		t.Fatal(err)
	}
	tok, err := src.Token(context.Background())
	if err != nil || tok.Value != "t1.second" || !tok.Expiry.Equal(now.Add(time.Minute)) || !tok.Obtained.Equal(now) {
		t.Fatalf("after re-supply: Token = %v, %v", tok, err)
	}
}

func TestStaticSourceExpiresByTheClock(t *testing.T) {
	now := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	setClock(t, &now)
	src, err := NewStaticSource("t1.static", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour)
	if _, err := src.Token(context.Background()); err == nil || IsTemporary(err) {
		t.Fatalf("error %v, want a final one once the static token expired", err)
	}
}

func TestSignJWTWithoutKey(t *testing.T) {
	k := &ServiceAccountKey{ID: "k", ServiceAccountID: "sa"}
	if _, err := k.SignJWT(time.Now(), "aud", time.Hour); err == nil || !strings.Contains(err.Error(), "no private key") {
		t.Fatalf("SignJWT without a key: %v", err)
	}
}
