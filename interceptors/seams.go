package interceptors

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/metadata"
)

// AccessKeyVerifier checks a call signed with a static access key (AWS
// Signature Version 4) and answers its caller. It is the check the
// interceptors run for methods in the access-key mode.
//
// Errors are returned as gRPC status errors (Unauthenticated for a missing,
// unknown or bad signature) with messages that never hold a secret.
type AccessKeyVerifier interface {
	VerifyAccessKey(ctx context.Context, fullMethod, authority string, md metadata.MD) (*Principal, error)
}

// AccessKey is a static access key as an AccessKeyStore keeps it.
type AccessKey struct {
	// KeyID is the public ID that signed calls name (YCAJ…).
	KeyID string
	// Secret is the shared secret the signature is computed with. It never
	// appears in String, errors or logs.
	Secret []byte
	// ServiceAccountID owns the key.
	ServiceAccountID string
	// Active is false for a deactivated key.
	Active bool
}

// String describes the key without its secret.
func (k *AccessKey) String() string {
	if k == nil {
		return "interceptors.AccessKey(nil)"
	}
	state := "active"
	if !k.Active {
		state = "inactive"
	}
	return "interceptors.AccessKey{KeyID: " + k.KeyID + ", ServiceAccountID: " + k.ServiceAccountID + ", " + state + ", Secret: [redacted]}"
}

// GoString is String, so that %#v redacts the secret too.
func (k *AccessKey) GoString() string { return k.String() }

// ErrAccessKeyNotFound is what an AccessKeyStore returns for an unknown key ID.
var ErrAccessKeyNotFound = errors.New("interceptors: access key not found")

// AccessKeyStore looks up access keys by their key ID. It is safe for
// concurrent use.
type AccessKeyStore interface {
	LookupAccessKey(ctx context.Context, keyID string) (*AccessKey, error)
}

// AccessKeyUseRecorder is an optional interface of an AccessKeyStore: the
// verifier tells it, after accepting a call signed with keyID, when that was,
// so that the store can keep each key's last use. It runs on the call's path
// and should be cheap (a store may write at most once a minute per key). Its
// error is ignored: bookkeeping never refuses an authenticated call.
type AccessKeyUseRecorder interface {
	RecordAccessKeyUse(ctx context.Context, keyID string, at time.Time) error
}

// RevocationList tells whether an IAM token was revoked before its expiry,
// by its token ID (jti).
type RevocationList interface {
	IsRevoked(ctx context.Context, tokenID string) (bool, error)
}
