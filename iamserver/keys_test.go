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
	kid := func() string { return env.srv.keys.Load().current.id }

	first := kid()
	before, err := env.srv.IssueToken("user-alice", iamjwt.SubjectUserAccount)
	if err != nil {
		t.Fatal(err)
	}

	// Not due yet: maintenance keeps the key.
	env.clock.Advance(23 * time.Hour)
	if err := env.srv.maintainKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if kid() != first {
		t.Fatalf("key rotated before it was due")
	}
	before2, err := env.srv.IssueToken("user-alice", iamjwt.SubjectUserAccount)
	if err != nil {
		t.Fatal(err)
	}

	// Due: the next maintenance rotates.
	env.clock.Advance(time.Hour)
	if err := env.srv.maintainKeys(ctx); err != nil {
		t.Fatal(err)
	}
	second := kid()
	if second == first {
		t.Fatalf("key not rotated when due")
	}
	after, err := env.srv.IssueToken("user-alice", iamjwt.SubjectUserAccount)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{first, second}
	slices.Sort(want)
	if diff := cmp.Diff(want, jwksKIDs(t, env.srv.JWKS())); diff != "" {
		t.Errorf("JWKS after rotation (-want +got):\n%s", diff)
	}
	// A token signed before the rotation still verifies with the JWKS.
	now := env.clock.Now()
	if _, err := verifyWithJWKS(t, env.srv.JWKS(), before2.Value, now); err != nil {
		t.Errorf("token signed before the rotation: %v", err)
	}
	if _, err := verifyWithJWKS(t, env.srv.JWKS(), after.Value, now); err != nil {
		t.Errorf("token signed after the rotation: %v", err)
	}
	// The first token has expired by now, but its key is still published:
	// the key stays until the newest token it signed (before2) expires.
	if _, err := verifyWithJWKS(t, env.srv.JWKS(), before.Value, before.ExpiresAt.Add(-time.Second)); err != nil {
		t.Errorf("token signed by the old key, at its last second: %v", err)
	}

	// Once every token of the old key has expired (plus leeway), the key is
	// unpublished and deleted.
	env.clock.Advance(iamjwt.MaxLifetime + publishLeeway + time.Second)
	if err := env.srv.maintainKeys(ctx); err != nil {
		t.Fatal(err)
	}
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

	// An explicit Rotate works at any time.
	if err := env.srv.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if kid() == second {
		t.Errorf("Rotate did not change the current key")
	}
}

func TestNewReusesStoredKey(t *testing.T) {
	env := newTestEnv(t)
	first := env.srv.keys.Load().current.id
	again, err := New(context.Background(), Options{Store: env.store, Now: env.clock.Now, Logger: discardLogger, DisableBackgroundRotation: true})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if got := again.keys.Load().current.id; got != first {
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
