package iamserver

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iamtoken/iamtoken-go/interceptors"
)

// storeFactories are the Store implementations every conformance test runs
// against.
var storeFactories = []struct {
	name string
	open func(t *testing.T) Store
}{
	{name: "memory", open: func(t *testing.T) Store { return NewMemoryStore() }},
	{name: "sqlite", open: func(t *testing.T) Store {
		key, err := NewDataKey()
		if err != nil {
			t.Fatal(err)
		}
		s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "iam.db"), key)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
}

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 123456789, time.UTC)

func TestStoreConformance(t *testing.T) {
	for _, f := range storeFactories {
		t.Run(f.name, func(t *testing.T) {
			t.Run("service accounts", func(t *testing.T) { testStoreServiceAccounts(t, f.open(t)) })
			t.Run("keys", func(t *testing.T) { testStoreKeys(t, f.open(t)) })
			t.Run("signing keys", func(t *testing.T) { testStoreSigningKeys(t, f.open(t)) })
			t.Run("revocations", func(t *testing.T) { testStoreRevocations(t, f.open(t)) })
			t.Run("access key use", func(t *testing.T) { testStoreAccessKeyUse(t, f.open(t)) })
		})
	}
}

func testStoreServiceAccounts(t *testing.T, s Store) {
	ctx := context.Background()
	a := &ServiceAccount{ID: "ajsaaaaaaaaaaaaaaaa1", Name: "robot", Description: "d", CreatedBy: "alice", CreatedAt: t0}
	b := &ServiceAccount{ID: "ajsaaaaaaaaaaaaaaaa2", Name: "robot2", CreatedBy: "alice", CreatedAt: t0}
	c := &ServiceAccount{ID: "ajsaaaaaaaaaaaaaaaa3", Name: "robot", CreatedBy: "bob", CreatedAt: t0}
	for _, sa := range []*ServiceAccount{a, b, c} {
		if err := s.CreateServiceAccount(ctx, sa); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateServiceAccount(ctx, &ServiceAccount{ID: "ajsaaaaaaaaaaaaaaaa4", Name: "robot", CreatedBy: "alice", CreatedAt: t0}); !errors.Is(err, ErrAlreadyExists) {
		t.Errorf("same name, same creator: %v, want ErrAlreadyExists", err)
	}
	if err := s.CreateServiceAccount(ctx, &ServiceAccount{ID: a.ID, Name: "other", CreatedBy: "carol", CreatedAt: t0}); !errors.Is(err, ErrAlreadyExists) {
		t.Errorf("same ID: %v, want ErrAlreadyExists", err)
	}
	got, err := s.GetServiceAccount(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, got); diff != "" {
		t.Errorf("Get (-want +got):\n%s", diff)
	}
	if _, err := s.GetServiceAccount(ctx, "ajsnonenonenonenone0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get unknown: %v, want ErrNotFound", err)
	}
	page1, err := s.ListServiceAccounts(ctx, "alice", Page{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	page2, err := s.ListServiceAccounts(ctx, "alice", Page{After: page1[0].ID, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	page3, err := s.ListServiceAccounts(ctx, "alice", Page{After: page2[0].ID, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]*ServiceAccount{a, b}, append(page1, page2...)); diff != "" || len(page3) != 0 {
		t.Errorf("List pages (-want +got):\n%s; third page %v", diff, page3)
	}

	// Deleting an account deletes its keys and access keys.
	if err := s.CreateAuthorizedKey(ctx, &AuthorizedKey{ID: "ajkaaaaaaaaaaaaaaaa1", ServiceAccountID: a.ID, Algorithm: "RSA_2048", PublicKeyPEM: "pem", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccessKey(ctx, &AccessKeyRecord{ID: "ajaaaaaaaaaaaaaaaaa1", KeyID: "YCAJaaaaaaaaaaaaaaaaaaaa1", ServiceAccountID: a.ID, Secret: []byte("s"), CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteServiceAccount(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteServiceAccount(ctx, a.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete: %v, want ErrNotFound", err)
	}
	if _, err := s.GetAuthorizedKey(ctx, "ajkaaaaaaaaaaaaaaaa1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("key of a deleted account: %v, want ErrNotFound", err)
	}
	if _, err := s.LookupAccessKey(ctx, "YCAJaaaaaaaaaaaaaaaaaaaa1"); !errors.Is(err, interceptors.ErrAccessKeyNotFound) {
		t.Errorf("access key of a deleted account: %v, want ErrAccessKeyNotFound", err)
	}
}

func testStoreKeys(t *testing.T, s Store) {
	ctx := context.Background()
	sa := &ServiceAccount{ID: "ajsaaaaaaaaaaaaaaaa1", Name: "robot", CreatedBy: "alice", CreatedAt: t0}
	if err := s.CreateServiceAccount(ctx, sa); err != nil {
		t.Fatal(err)
	}
	k := &AuthorizedKey{ID: "ajkaaaaaaaaaaaaaaaa1", ServiceAccountID: sa.ID, Description: "d", Algorithm: "RSA_4096", PublicKeyPEM: "pem", CreatedAt: t0}
	if err := s.CreateAuthorizedKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAuthorizedKey(ctx, &AuthorizedKey{ID: "ajkaaaaaaaaaaaaaaaa2", ServiceAccountID: "ajsnonenonenonenone0", CreatedAt: t0}); !errors.Is(err, ErrNotFound) {
		t.Errorf("key for an unknown account: %v, want ErrNotFound", err)
	}
	got, err := s.GetAuthorizedKey(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(k, got); diff != "" {
		t.Errorf("GetAuthorizedKey (-want +got):\n%s", diff)
	}
	keys, err := s.ListAuthorizedKeys(ctx, sa.ID, Page{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]*AuthorizedKey{k}, keys); diff != "" {
		t.Errorf("ListAuthorizedKeys (-want +got):\n%s", diff)
	}

	ak := &AccessKeyRecord{ID: "ajaaaaaaaaaaaaaaaaa1", KeyID: "YCAJaaaaaaaaaaaaaaaaaaaa1", ServiceAccountID: sa.ID, Description: "d", Secret: []byte("secret-1"), CreatedAt: t0}
	if err := s.CreateAccessKey(ctx, ak); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccessKey(ctx, &AccessKeyRecord{ID: "ajaaaaaaaaaaaaaaaaa2", KeyID: ak.KeyID, ServiceAccountID: sa.ID, Secret: []byte("x"), CreatedAt: t0}); !errors.Is(err, ErrAlreadyExists) {
		t.Errorf("duplicate key ID: %v, want ErrAlreadyExists", err)
	}
	if err := s.CreateAccessKey(ctx, &AccessKeyRecord{ID: "ajaaaaaaaaaaaaaaaaa3", KeyID: "YCAJbbbbbbbbbbbbbbbbbbbb1", ServiceAccountID: "ajsnonenonenonenone0", Secret: []byte("x"), CreatedAt: t0}); !errors.Is(err, ErrNotFound) {
		t.Errorf("access key for an unknown account: %v, want ErrNotFound", err)
	}
	gotAK, err := s.GetAccessKey(ctx, ak.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ak, gotAK); diff != "" {
		t.Errorf("GetAccessKey (-want +got):\n%s", diff)
	}
	lookedUp, err := s.LookupAccessKey(ctx, ak.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&interceptors.AccessKey{KeyID: ak.KeyID, Secret: ak.Secret, ServiceAccountID: sa.ID, Active: true}, lookedUp); diff != "" {
		t.Errorf("LookupAccessKey (-want +got):\n%s", diff)
	}
	listed, err := s.ListAccessKeys(ctx, sa.ID, Page{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].Secret != nil {
		t.Errorf("ListAccessKeys = %v, want one record without its secret", listed)
	}
	if _, err := s.LookupAccessKey(ctx, "YCAJunknownunknownunknow1"); !errors.Is(err, interceptors.ErrAccessKeyNotFound) {
		t.Errorf("LookupAccessKey unknown: %v, want ErrAccessKeyNotFound", err)
	}
	if err := s.DeleteAccessKey(ctx, ak.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAuthorizedKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAuthorizedKey(ctx, k.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteAuthorizedKey: %v, want ErrNotFound", err)
	}
}

func testStoreSigningKeys(t *testing.T, s Store) {
	ctx := context.Background()
	k1 := &SigningKey{ID: "ajtaaaaaaaaaaaaaaaa1", Algorithm: "ES256", PrivateKey: []byte("der-1"), CreatedAt: t0}
	k2 := &SigningKey{ID: "ajtaaaaaaaaaaaaaaaa2", Algorithm: "ES256", PrivateKey: []byte("der-2"), CreatedAt: t0.Add(time.Hour)}
	for _, k := range []*SigningKey{k1, k2} {
		if err := s.RotateSigningKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	retired := *k1
	retired.RetiredAt = k2.CreatedAt
	if diff := cmp.Diff([]*SigningKey{k2, &retired}, got); diff != "" {
		t.Errorf("SigningKeys (-want +got):\n%s", diff)
	}
	if err := s.DeleteSigningKeysRetiredBefore(ctx, k2.CreatedAt.Add(time.Nanosecond)); err != nil {
		t.Fatal(err)
	}
	got, err = s.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]*SigningKey{k2}, got); diff != "" {
		t.Errorf("SigningKeys after pruning (-want +got):\n%s", diff)
	}
}

func testStoreRevocations(t *testing.T, s Store) {
	ctx := context.Background()
	if err := s.Revoke(ctx, "jti-1", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, "jti-1", t0); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	if err := s.Revoke(ctx, "jti-2", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id   string
		want bool
	}{{"jti-1", true}, {"jti-2", true}, {"jti-3", false}} {
		if got, err := s.IsRevoked(ctx, tc.id); err != nil || got != tc.want {
			t.Errorf("IsRevoked(%s) = %v, %v; want %v", tc.id, got, err, tc.want)
		}
	}
	if err := s.DeleteRevocationsExpiredBefore(ctx, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.IsRevoked(ctx, "jti-1"); got {
		t.Errorf("expired revocation kept")
	}
	if got, _ := s.IsRevoked(ctx, "jti-2"); !got {
		t.Errorf("live revocation dropped")
	}
}

func testStoreAccessKeyUse(t *testing.T, s Store) {
	ctx := context.Background()
	sa := &ServiceAccount{ID: "ajsaaaaaaaaaaaaaaaa1", Name: "robot", CreatedBy: "user-1", CreatedAt: t0}
	if err := s.CreateServiceAccount(ctx, sa); err != nil {
		t.Fatal(err)
	}
	ak := &AccessKeyRecord{ID: "ajaaaaaaaaaaaaaaaaa1", KeyID: "YCAJaaaaaaaaaaaaaaaaaaaa1", ServiceAccountID: sa.ID, Secret: []byte("secret-1"), CreatedAt: t0}
	if err := s.CreateAccessKey(ctx, ak); err != nil {
		t.Fatal(err)
	}
	lastUsed := func() time.Time {
		t.Helper()
		got, err := s.GetAccessKey(ctx, ak.ID)
		if err != nil {
			t.Fatal(err)
		}
		listed, err := s.ListAccessKeys(ctx, sa.ID, Page{Limit: 10})
		if err != nil || len(listed) != 1 {
			t.Fatalf("ListAccessKeys = %v, %v", listed, err)
		}
		if !listed[0].LastUsedAt.Equal(got.LastUsedAt) {
			t.Errorf("List says last used %v, Get says %v", listed[0].LastUsedAt, got.LastUsedAt)
		}
		return got.LastUsedAt
	}
	if got := lastUsed(); !got.IsZero() {
		t.Errorf("new key last used %v, want never", got)
	}
	steps := []struct {
		at   time.Time
		want time.Time
	}{
		{at: t0.Add(time.Second), want: t0.Add(time.Second)},                                           // first use
		{at: t0.Add(30 * time.Second), want: t0.Add(time.Second)},                                      // within the resolution: not written
		{at: t0.Add(time.Second + LastUsedResolution), want: t0.Add(time.Second + LastUsedResolution)}, // a resolution later
		{at: t0, want: t0.Add(time.Second + LastUsedResolution)},                                       // never backwards
	}
	for i, st := range steps {
		if err := s.RecordAccessKeyUse(ctx, ak.KeyID, st.at); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := lastUsed(); !got.Equal(st.want) {
			t.Errorf("step %d: last used %v, want %v", i, got, st.want)
		}
	}
	if err := s.RecordAccessKeyUse(ctx, "YCAJunknownunknownunknown", t0); err != nil {
		t.Errorf("unknown key: %v, want nil", err)
	}
}
