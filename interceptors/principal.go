package interceptors

import (
	"context"
	"time"
)

// SubjectType is the kind of identity a caller has.
type SubjectType string

const (
	SubjectServiceAccount SubjectType = "service_account"
	SubjectUserAccount    SubjectType = "user_account"
	SubjectFederatedUser  SubjectType = "federated_user"
)

// AuthMethod is how a caller proved its identity.
type AuthMethod string

const (
	AuthIAMToken  AuthMethod = "iam_token"
	AuthAccessKey AuthMethod = "access_key"
)

// Principal is an authenticated caller. It never holds the credential itself.
type Principal struct {
	// SubjectID is the caller's ID (a service account or user account ID).
	SubjectID string
	// SubjectType is the kind of the caller.
	SubjectType SubjectType
	// Method is how the caller authenticated.
	Method AuthMethod
	// TokenID is the IAM token's ID (its jti), for AuthIAMToken.
	TokenID string
	// AccessKeyID is the access key's ID, for AuthAccessKey.
	AccessKeyID string
	// ExpiresAt is when the credential stops being valid: the token's expiry,
	// or the end of the signed request's validity window.
	ExpiresAt time.Time
}

type principalKey struct{}

// NewContextWithPrincipal returns ctx carrying p. The interceptors call it;
// tests of handlers may too.
func NewContextWithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFromContext returns the caller the interceptors put in ctx.
func PrincipalFromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok && p != nil
}
