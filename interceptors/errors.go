package interceptors

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrInvalidToken is wrapped by every refusal of an IAM token: a token that is
// malformed, badly signed, expired, revoked or not meant for this service.
// The interceptors answer it with codes.Unauthenticated.
var ErrInvalidToken = errors.New("interceptors: invalid IAM token")

// ErrUnavailable is wrapped when a token could not be checked right now: the
// key set could not be fetched for an unknown key ID, the caller's context
// ended while waiting for it, or the revocation list failed. Trying again
// later may succeed. The interceptors answer it with codes.Unavailable.
var ErrUnavailable = errors.New("interceptors: cannot check the IAM token now")

// The reasons a token is refused. Each wraps ErrInvalidToken; none of their
// messages holds any part of the token.
var (
	errTooLarge      = invalid("token is larger than %d bytes", maxTokenBytes)
	errNotCompact    = invalid("not a compact JWS: want three base64url parts separated by dots")
	errBadBase64     = invalid("a part is not valid base64url")
	errBadJSON       = invalid("the header or the claims are not a valid JSON object")
	errAlgNone       = invalid(`alg "none" is never accepted`)
	errAlgHMAC       = invalid("HMAC algorithms (HS256, HS384, HS512) are never accepted")
	errAlgNotAllowed = invalid("alg is not on this server's allow-list")
	errNoKID         = invalid("header has no kid")
	errBadKID        = invalid("kid is not 1 to %d characters of A-Z a-z 0-9 . _ -", maxKIDLen)
	errUnknownKID    = invalid("kid names no key in the issuer's key set")
	errKeyInHeader   = invalid("jku, x5u, jwk and x5c headers are not accepted: keys come only from the issuer's key set")
	errCrit          = invalid("crit header names extensions this server does not understand")
	errTyp           = invalid(`typ is not "JWT"`)
	errKeyMismatch   = invalid("the key named by kid does not fit alg")
	errSignature     = invalid("signature does not verify")
	errIssuer        = invalid("missing or untrusted issuer (iss)")
	errNoAudience    = invalid("claims have no aud")
	errAudience      = invalid("the audience (aud) is not this service")
	errNoExpiry      = invalid("claims have no exp")
	errNoIssuedAt    = invalid("claims have no iat")
	errExpired       = invalid("token has expired")
	errIssuedFuture  = invalid("token is issued in the future (iat)")
	errNotYetValid   = invalid("token is not valid yet (nbf)")
	errLifetime      = invalid("lifetime exp - iat is not between 0 and 12h")
	errNoSubject     = invalid("claims have no sub")
	errSubjectType   = invalid("sub_type is not service_account, user_account or federated_user")
	errNoTokenID     = invalid("claims have no jti")
	errRevoked       = invalid("token has been revoked")
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidToken}, args...)...)
}

// Refusals of the interceptors themselves, before any token is looked at.
const (
	msgNoCredentials     = "interceptors: missing authorization metadata: this method needs an IAM token (authorization: Bearer <token>)"
	msgManyAuthorization = "interceptors: more than one authorization value"
	msgBadScheme         = "interceptors: unsupported authorization scheme: want Bearer"
	msgEmptyBearer       = "interceptors: empty bearer token"
	msgAccessKeyToIAM    = "interceptors: this service needs an IAM token; access keys work only with AWS-compatible services"
	msgIAMToAccessKey    = "interceptors: this service accepts access keys only"
	msgNoVerifier        = "interceptors: access-key authentication is not configured"
	msgInsecure          = "interceptors: IAM tokens are accepted only on connections with transport security (TLS)"
	msgInsecureAccessKey = "interceptors: access-key calls are accepted only on connections with transport security (TLS)"
)

// tokenStatus maps a Validate error to the gRPC status the caller gets: the
// one place where validation errors become codes.
func tokenStatus(err error) error {
	if errors.Is(err, ErrUnavailable) {
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Unauthenticated, err.Error())
}
