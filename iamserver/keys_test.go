package iamserver

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
)

func jwksKIDs(t *testing.T, doc []byte) []string {
	t.Helper()
	var d struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range d.Keys {
		out = append(out, k.Kid)
	}
	slices.Sort(out)
	return out
}

func TestKeyRotation(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.KeyRotationInterval = 24 * time.Hour })
	ctx := context.Background()
	kid := env.srv.CurrentKeyID
	maintain := func() {
		t.Helper()
		if err := env.srv.maintainKeys(ctx); err != nil {
			t.Fatal(err)
		}
	}
	issue := func() IssuedToken {
		t.Helper()
		tok, err := env.srv.IssueToken("user-alice", iamjwt.SubjectUserAccount)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	sorted := func(ids ...string) []string { slices.Sort(ids); return ids }
	prepublish := 2 * jwksMaxAge

	first := kid()
	firstToken := issue()

	// Not due yet: maintenance keeps the key and publishes nothing new.
	env.clock.Advance(24*time.Hour - prepublish - time.Second)
	maintain()
	if kid() != first || len(jwksKIDs(t, env.srv.JWKS())) != 1 {
		t.Fatalf("rotated before it was due")
	}

	// Due: the next key is published, but the current one keeps signing
	// until validators caching the JWKS have had time to see the next.
	env.clock.Advance(time.Second)
	maintain()
	keys := jwksKIDs(t, env.srv.JWKS())
	if len(keys) != 2 || kid() != first {
		t.Fatalf("after the due maintenance: JWKS %v, signing with %s; want two keys, still %s", keys, kid(), first)
	}
	second := keys[0]
	if second == first {
		second = keys[1]
	}
	beforeSwitch := issue()

	// prepublish later the next key signs, without another maintenance.
	env.clock.Advance(prepublish)
	if kid() != second {
		t.Fatalf("signing with %s after the activation, want %s", kid(), second)
	}
	afterSwitch := issue()
	now := env.clock.Now()
	for name, tok := range map[string]IssuedToken{"signed before the rotation": beforeSwitch, "signed after it": afterSwitch} {
		if _, err := verifyWithJWKS(t, env.srv.JWKS(), tok.Value, now); err != nil {
			t.Errorf("token %s: %v", name, err)
		}
	}
	// The first token is close to its expiry; its key is still published.
	if _, err := verifyWithJWKS(t, env.srv.JWKS(), firstToken.Value, firstToken.ExpiresAt.Add(-time.Second)); err != nil {
		t.Errorf("first token, at its last second: %v", err)
	}

	// Once every token the old key signed has expired (plus leeway), the key
	// is unpublished and deleted.
	env.clock.Advance(iamjwt.MaxLifetime + publishLeeway + time.Second)
	maintain()
	if diff := cmp.Diff([]string{second}, jwksKIDs(t, env.srv.JWKS())); diff != "" {
		t.Errorf("JWKS after the old key's tokens expired (-want +got):\n%s", diff)
	}
	stored, err := env.store.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || stored[0].ID != second {
		t.Errorf("stored signing keys = %v, want only %s", stored, second)
	}

	// An explicit Rotate switches at once and keeps the old key published.
	if err := env.srv.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if kid() == second {
		t.Errorf("Rotate did not change the signing key")
	}
	if diff := cmp.Diff(sorted(second, kid()), jwksKIDs(t, env.srv.JWKS())); diff != "" {
		t.Errorf("JWKS after Rotate (-want +got):\n%s", diff)
	}
}

func TestNewReusesStoredKey(t *testing.T) {
	env := newTestEnv(t)
	first := env.srv.CurrentKeyID()
	again, err := New(context.Background(), Options{Store: env.store, Now: env.clock.Now, Logger: discardLogger, DisableBackgroundRotation: true})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if got := again.CurrentKeyID(); got != first {
		t.Errorf("restarted server signs with %s, want the stored %s", got, first)
	}
}

// TestBackgroundRotationStops proves Close stops the rotator (goleak in
// TestMain fails the package otherwise).
func TestBackgroundRotationStops(t *testing.T) {
	s, err := New(context.Background(), Options{Store: NewMemoryStore(), Logger: discardLogger, KeyRotationInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
}

func TestSecretsRedacted(t *testing.T) {
	for _, v := range []any{
		&SigningKey{ID: "k", PrivateKey: []byte("PRIVATE-BYTES")},
		&AccessKeyRecord{ID: "a", Secret: []byte("PRIVATE-BYTES")},
		&AuthorizedKeyFile{ID: "f", PrivateKey: "PRIVATE-BYTES"},
		IssuedToken{Value: "PRIVATE-BYTES"},
	} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			if s := fmt.Sprintf(verb, v); strings.Contains(s, "PRIVATE-BYTES") {
				t.Errorf("%T formatted with %s reveals the secret: %s", v, verb, s)
			}
		}
	}
}
