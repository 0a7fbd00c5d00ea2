package iamserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/iamtoken/iamtoken-go/interceptors"
)

// Errors a Store returns. Callers compare with errors.Is.
var (
	// ErrNotFound is returned for an unknown ID.
	ErrNotFound = errors.New("iamserver: not found")
	// ErrAlreadyExists is returned when a record with the same ID, or a
	// service account with the same name and creator, exists.
	ErrAlreadyExists = errors.New("iamserver: already exists")
)

// ServiceAccount is an identity for a program.
type ServiceAccount struct {
	ID          string
	Name        string
	Description string
	// CreatedBy is the subject that created the account and manages it.
	CreatedBy string
	CreatedAt time.Time
}

// AuthorizedKey is the public half of a service account's RSA key pair, with
// which it signs the JWTs it exchanges for IAM tokens. The private half is
// never stored.
type AuthorizedKey struct {
	ID               string
	ServiceAccountID string
	Description      string
	// Algorithm is "RSA_2048" or "RSA_4096".
	Algorithm string
	// PublicKeyPEM is the public key, PEM-encoded PKIX.
	PublicKeyPEM string
	CreatedAt    time.Time
}

// AccessKeyRecord is a static access key as the issuer manages it. The
// secret is kept because the access-key check recomputes the HMAC with it;
// the SQLite store encrypts it at rest.
type AccessKeyRecord struct {
	// ID names the record in the management API.
	ID string
	// KeyID is what signed calls name (YCAJ…).
	KeyID            string
	ServiceAccountID string
	Description      string
	// Secret is the shared secret. It never appears in String or errors.
	Secret    []byte
	CreatedAt time.Time
	// LastUsedAt is when a call signed with the key was last accepted, to
	// within LastUsedResolution; zero if never.
	LastUsedAt time.Time
}

// LastUsedResolution is how precisely stores keep an access key's last use:
// a key in steady use is written at most once per this interval, not once per
// call.
const LastUsedResolution = time.Minute

// String describes the record without its secret.
func (r *AccessKeyRecord) String() string {
	if r == nil {
		return "iamserver.AccessKeyRecord(nil)"
	}
	return fmt.Sprintf("iamserver.AccessKeyRecord{ID: %s, KeyID: %s, ServiceAccountID: %s, Secret: [redacted]}",
		r.ID, r.KeyID, r.ServiceAccountID)
}

// GoString is String, so that %#v redacts the secret too.
func (r *AccessKeyRecord) GoString() string { return r.String() }

// SigningKey is one of the issuer's own signing keys.
type SigningKey struct {
	// ID is the key's `kid`.
	ID string
	// Algorithm is the JWS algorithm, e.g. "ES256".
	Algorithm string
	// PrivateKey is the private key, PKCS #8 DER. The SQLite store encrypts
	// it at rest; it never appears in String or errors.
	PrivateKey []byte
	CreatedAt  time.Time
	// RetiredAt is when a newer key replaced it; zero for the current key.
	// Tokens it signed live at most until RetiredAt plus the longest token
	// lifetime, and the key stays published until then.
	RetiredAt time.Time
}

// String describes the key without its private half.
func (k *SigningKey) String() string {
	if k == nil {
		return "iamserver.SigningKey(nil)"
	}
	return fmt.Sprintf("iamserver.SigningKey{ID: %s, Algorithm: %s, CreatedAt: %s, PrivateKey: [redacted]}",
		k.ID, k.Algorithm, k.CreatedAt.Format(time.RFC3339))
}

// GoString is String, so that %#v redacts the private key too.
func (k *SigningKey) GoString() string { return k.String() }

// Page asks for one page of a listing ordered by ID: at most Limit records
// whose ID is greater than After.
type Page struct {
	After string
	Limit int
}

// Store keeps the issuer's state. Implementations are safe for concurrent
// use; a write that returned nil is durable as far as the implementation
// promises (MemoryStore: for the life of the process; SQLiteStore: across
// crashes).
//
// Records returned are copies: changing them does not change the store.
type Store interface {
	interceptors.AccessKeyStore
	interceptors.RevocationList
	// RecordAccessKeyUse sets the LastUsedAt of the access key keyID to at,
	// if that is at least LastUsedResolution after the stored value; an
	// unknown key is no error. The interceptors' access-key verifier calls
	// it after each accepted call.
	interceptors.AccessKeyUseRecorder

	CreateServiceAccount(ctx context.Context, sa *ServiceAccount) error
	GetServiceAccount(ctx context.Context, id string) (*ServiceAccount, error)
	// ListServiceAccounts lists the accounts created by createdBy.
	ListServiceAccounts(ctx context.Context, createdBy string, p Page) ([]*ServiceAccount, error)
	// DeleteServiceAccount deletes the account with its authorized keys and
	// access keys.
	DeleteServiceAccount(ctx context.Context, id string) error

	CreateAuthorizedKey(ctx context.Context, k *AuthorizedKey) error
	GetAuthorizedKey(ctx context.Context, id string) (*AuthorizedKey, error)
	ListAuthorizedKeys(ctx context.Context, serviceAccountID string, p Page) ([]*AuthorizedKey, error)
	DeleteAuthorizedKey(ctx context.Context, id string) error

	CreateAccessKey(ctx context.Context, k *AccessKeyRecord) error
	GetAccessKey(ctx context.Context, id string) (*AccessKeyRecord, error)
	// ListAccessKeys lists a service account's access keys; their Secret is
	// left empty.
	ListAccessKeys(ctx context.Context, serviceAccountID string, p Page) ([]*AccessKeyRecord, error)
	DeleteAccessKey(ctx context.Context, id string) error

	// RotateSigningKey stores next as the current signing key and marks the
	// previous current key (if any) retired at next.CreatedAt, atomically.
	RotateSigningKey(ctx context.Context, next *SigningKey) error
	// SigningKeys returns every stored signing key, newest first.
	SigningKeys(ctx context.Context) ([]*SigningKey, error)
	// DeleteSigningKeysRetiredBefore deletes retired keys whose RetiredAt is
	// before t.
	DeleteSigningKeysRetiredBefore(ctx context.Context, t time.Time) error

	// Revoke records that the token tokenID, which expires at expiresAt, is
	// revoked. Revoking twice is not an error.
	Revoke(ctx context.Context, tokenID string, expiresAt time.Time) error
	// DeleteRevocationsExpiredBefore forgets revocations of tokens that
	// expired before t: they are refused for their expiry anyway.
	DeleteRevocationsExpiredBefore(ctx context.Context, t time.Time) error

	// Close releases the store's resources.
	Close() error
}

// defaultPageSize and maxPageSize bound listings.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)
