package iamserver

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/iamtoken/iamtoken-go/interceptors"
)

// MemoryStore is a Store that keeps everything in memory, for tests and the
// test kit. Nothing survives the process.
type MemoryStore struct {
	// mu guards every map below.
	mu            sync.RWMutex
	accounts      map[string]ServiceAccount
	keys          map[string]AuthorizedKey
	accessKeys    map[string]AccessKeyRecord // by ID
	accessByKeyID map[string]string          // KeyID → ID
	signingKeys   map[string]SigningKey
	revoked       map[string]time.Time // token ID → its expiry
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{
		accounts:      make(map[string]ServiceAccount),
		keys:          make(map[string]AuthorizedKey),
		accessKeys:    make(map[string]AccessKeyRecord),
		accessByKeyID: make(map[string]string),
		signingKeys:   make(map[string]SigningKey),
		revoked:       make(map[string]time.Time),
	}
}

// page returns at most p.Limit of the matching values ordered by ID.
func page[T any](m map[string]T, id func(*T) string, match func(*T) bool, p Page) []*T {
	var out []*T
	for _, v := range m {
		if match(&v) && id(&v) > p.After {
			out = append(out, &v)
		}
	}
	slices.SortFunc(out, func(a, b *T) int { return cmp.Compare(id(a), id(b)) })
	if p.Limit > 0 && len(out) > p.Limit {
		out = out[:p.Limit]
	}
	return out
}

// CreateServiceAccount implements Store.
func (s *MemoryStore) CreateServiceAccount(ctx context.Context, sa *ServiceAccount) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.accounts[sa.ID]; ok {
		return fmt.Errorf("iamserver: service account %s: %w", sa.ID, ErrAlreadyExists)
	}
	for _, other := range s.accounts {
		if other.CreatedBy == sa.CreatedBy && other.Name == sa.Name {
			return fmt.Errorf("iamserver: service account named %q: %w", sa.Name, ErrAlreadyExists)
		}
	}
	s.accounts[sa.ID] = *sa
	return nil
}

// GetServiceAccount implements Store.
func (s *MemoryStore) GetServiceAccount(ctx context.Context, id string) (*ServiceAccount, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sa, ok := s.accounts[id]
	if !ok {
		return nil, fmt.Errorf("iamserver: service account %s: %w", id, ErrNotFound)
	}
	return &sa, nil
}

// ListServiceAccounts implements Store.
func (s *MemoryStore) ListServiceAccounts(ctx context.Context, createdBy string, p Page) ([]*ServiceAccount, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return page(s.accounts, func(v *ServiceAccount) string { return v.ID },
		func(v *ServiceAccount) bool { return v.CreatedBy == createdBy }, p), nil
}

// DeleteServiceAccount implements Store.
func (s *MemoryStore) DeleteServiceAccount(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.accounts[id]; !ok {
		return fmt.Errorf("iamserver: service account %s: %w", id, ErrNotFound)
	}
	delete(s.accounts, id)
	for kid, k := range s.keys {
		if k.ServiceAccountID == id {
			delete(s.keys, kid)
		}
	}
	for rid, k := range s.accessKeys {
		if k.ServiceAccountID == id {
			delete(s.accessKeys, rid)
			delete(s.accessByKeyID, k.KeyID)
		}
	}
	return nil
}

// CreateAuthorizedKey implements Store.
func (s *MemoryStore) CreateAuthorizedKey(ctx context.Context, k *AuthorizedKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.accounts[k.ServiceAccountID]; !ok {
		return fmt.Errorf("iamserver: service account %s: %w", k.ServiceAccountID, ErrNotFound)
	}
	if _, ok := s.keys[k.ID]; ok {
		return fmt.Errorf("iamserver: key %s: %w", k.ID, ErrAlreadyExists)
	}
	s.keys[k.ID] = *k
	return nil
}

// GetAuthorizedKey implements Store.
func (s *MemoryStore) GetAuthorizedKey(ctx context.Context, id string) (*AuthorizedKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok := s.keys[id]
	if !ok {
		return nil, fmt.Errorf("iamserver: key %s: %w", id, ErrNotFound)
	}
	return &k, nil
}

// ListAuthorizedKeys implements Store.
func (s *MemoryStore) ListAuthorizedKeys(ctx context.Context, serviceAccountID string, p Page) ([]*AuthorizedKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return page(s.keys, func(v *AuthorizedKey) string { return v.ID },
		func(v *AuthorizedKey) bool { return v.ServiceAccountID == serviceAccountID }, p), nil
}

// DeleteAuthorizedKey implements Store.
func (s *MemoryStore) DeleteAuthorizedKey(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[id]; !ok {
		return fmt.Errorf("iamserver: key %s: %w", id, ErrNotFound)
	}
	delete(s.keys, id)
	return nil
}

// CreateAccessKey implements Store.
func (s *MemoryStore) CreateAccessKey(ctx context.Context, k *AccessKeyRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.accounts[k.ServiceAccountID]; !ok {
		return fmt.Errorf("iamserver: service account %s: %w", k.ServiceAccountID, ErrNotFound)
	}
	if _, ok := s.accessKeys[k.ID]; ok {
		return fmt.Errorf("iamserver: access key %s: %w", k.ID, ErrAlreadyExists)
	}
	if _, ok := s.accessByKeyID[k.KeyID]; ok {
		return fmt.Errorf("iamserver: access key ID %s: %w", k.KeyID, ErrAlreadyExists)
	}
	c := *k
	c.Secret = bytes.Clone(k.Secret)
	s.accessKeys[k.ID] = c
	s.accessByKeyID[k.KeyID] = k.ID
	return nil
}

// GetAccessKey implements Store.
func (s *MemoryStore) GetAccessKey(ctx context.Context, id string) (*AccessKeyRecord, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok := s.accessKeys[id]
	if !ok {
		return nil, fmt.Errorf("iamserver: access key %s: %w", id, ErrNotFound)
	}
	k.Secret = bytes.Clone(k.Secret)
	return &k, nil
}

// ListAccessKeys implements Store.
func (s *MemoryStore) ListAccessKeys(ctx context.Context, serviceAccountID string, p Page) ([]*AccessKeyRecord, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := page(s.accessKeys, func(v *AccessKeyRecord) string { return v.ID },
		func(v *AccessKeyRecord) bool { return v.ServiceAccountID == serviceAccountID }, p)
	for _, k := range out {
		k.Secret = nil
	}
	return out, nil
}

// DeleteAccessKey implements Store.
func (s *MemoryStore) DeleteAccessKey(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.accessKeys[id]
	if !ok {
		return fmt.Errorf("iamserver: access key %s: %w", id, ErrNotFound)
	}
	delete(s.accessKeys, id)
	delete(s.accessByKeyID, k.KeyID)
	return nil
}

// RecordAccessKeyUse implements Store.
func (s *MemoryStore) RecordAccessKeyUse(ctx context.Context, keyID string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.accessByKeyID[keyID]
	if !ok {
		return nil
	}
	k := s.accessKeys[id]
	if at.Sub(k.LastUsedAt) >= LastUsedResolution {
		k.LastUsedAt = at
		s.accessKeys[id] = k
	}
	return nil
}

// LookupAccessKey implements interceptors.AccessKeyStore.
func (s *MemoryStore) LookupAccessKey(ctx context.Context, keyID string) (*interceptors.AccessKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	id, ok := s.accessByKeyID[keyID]
	if !ok {
		return nil, interceptors.ErrAccessKeyNotFound
	}
	k := s.accessKeys[id]
	return &interceptors.AccessKey{
		KeyID:            k.KeyID,
		Secret:           bytes.Clone(k.Secret),
		ServiceAccountID: k.ServiceAccountID,
		Active:           true,
	}, nil
}

// RotateSigningKey implements Store.
func (s *MemoryStore) RotateSigningKey(ctx context.Context, next *SigningKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.signingKeys[next.ID]; ok {
		return fmt.Errorf("iamserver: signing key %s: %w", next.ID, ErrAlreadyExists)
	}
	for id, k := range s.signingKeys {
		if k.RetiredAt.IsZero() {
			k.RetiredAt = next.CreatedAt
			s.signingKeys[id] = k
		}
	}
	c := *next
	c.PrivateKey = bytes.Clone(next.PrivateKey)
	c.RetiredAt = time.Time{}
	s.signingKeys[next.ID] = c
	return nil
}

// SigningKeys implements Store.
func (s *MemoryStore) SigningKeys(ctx context.Context) ([]*SigningKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*SigningKey, 0, len(s.signingKeys))
	for _, k := range s.signingKeys {
		k.PrivateKey = bytes.Clone(k.PrivateKey)
		out = append(out, &k)
	}
	sortSigningKeys(out)
	return out, nil
}

// sortSigningKeys orders keys newest first, the current key before retired
// ones created at the same instant.
func sortSigningKeys(keys []*SigningKey) {
	slices.SortFunc(keys, func(a, b *SigningKey) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		if a.RetiredAt.IsZero() != b.RetiredAt.IsZero() {
			if a.RetiredAt.IsZero() {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.ID, b.ID)
	})
}

// DeleteSigningKeysRetiredBefore implements Store.
func (s *MemoryStore) DeleteSigningKeysRetiredBefore(ctx context.Context, t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, k := range s.signingKeys {
		if !k.RetiredAt.IsZero() && k.RetiredAt.Before(t) {
			delete(s.signingKeys, id)
		}
	}
	return nil
}

// Revoke implements Store.
func (s *MemoryStore) Revoke(ctx context.Context, tokenID string, expiresAt time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revoked[tokenID] = expiresAt
	return nil
}

// IsRevoked implements interceptors.RevocationList.
func (s *MemoryStore) IsRevoked(ctx context.Context, tokenID string) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.revoked[tokenID]
	return ok, nil
}

// DeleteRevocationsExpiredBefore implements Store.
func (s *MemoryStore) DeleteRevocationsExpiredBefore(ctx context.Context, t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, exp := range s.revoked {
		if exp.Before(t) {
			delete(s.revoked, id)
		}
	}
	return nil
}

// Close does nothing; it is there to satisfy Store.
func (s *MemoryStore) Close() error { return nil }
