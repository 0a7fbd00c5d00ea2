package iamserver

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
)

const (
	// MaxExchangeJWTSize caps a service account's JWT before it is parsed.
	// A PS256 JWT with a 4096-bit key and the usual claims is about 1 KiB.
	MaxExchangeJWTSize = 8 << 10
	// MaxOAuthTokenSize caps an OAuth token before it is looked up.
	MaxOAuthTokenSize = 4 << 10
	// MaxExchangeJWTLifetime is the longest exp − iat accepted in a service
	// account's JWT.
	MaxExchangeJWTLifetime = time.Hour
	// minRSABits is the smallest authorized key accepted.
	minRSABits = 2048
	// exchangeLeeway absorbs clock skew between a client and the issuer on
	// exp and nbf: a JWT is not used long after it expired.
	exchangeLeeway = 30 * time.Second
	// MaxExchangeIATSkew is how far in the future a JWT's iat may be: a
	// client whose clock runs ahead still gets tokens. It widens nothing
	// else: exp must still be at most an hour after iat, and not passed.
	MaxExchangeIATSkew = 5 * time.Minute
)

// Exchange errors. They say what is wrong without echoing the credential.
var (
	// ErrInvalidCredentials is wrapped by every refusal of a proof of
	// identity; the gRPC and REST front ends answer Unauthenticated / 401.
	ErrInvalidCredentials = errors.New("iamserver: invalid credentials")
	// ErrInvalidRequest is wrapped by requests that carry no proof of
	// identity or a malformed one; the front ends answer InvalidArgument /
	// 400.
	ErrInvalidRequest = errors.New("iamserver: invalid request")
)

func invalidCredentials(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidCredentials}, args...)...)
}

// ExchangeJWT verifies a service account's signed JWT and issues an IAM
// token for it.
func (s *Server) ExchangeJWT(ctx context.Context, raw string) (IssuedToken, error) {
	saID, err := s.verifyServiceAccountJWT(ctx, raw)
	if err != nil {
		return IssuedToken{}, err
	}
	return s.IssueToken(saID, iamjwt.SubjectServiceAccount)
}

// ExchangeOAuthToken looks up a user's OAuth token among the configured ones
// and issues an IAM token for the user.
func (s *Server) ExchangeOAuthToken(ctx context.Context, token string) (IssuedToken, error) {
	if token == "" {
		return IssuedToken{}, fmt.Errorf("%w: empty OAuth token", ErrInvalidRequest)
	}
	if len(token) > MaxOAuthTokenSize {
		return IssuedToken{}, invalidCredentials("OAuth token longer than %d bytes", MaxOAuthTokenSize)
	}
	user, ok := s.oauth[sha256.Sum256([]byte(token))]
	if !ok {
		return IssuedToken{}, invalidCredentials("unknown OAuth token")
	}
	return s.IssueToken(user, iamjwt.SubjectUserAccount)
}

// verifyServiceAccountJWT answers the service account that signed raw.
func (s *Server) verifyServiceAccountJWT(ctx context.Context, raw string) (string, error) {
	if raw == "" {
		return "", fmt.Errorf("%w: empty JWT", ErrInvalidRequest)
	}
	if len(raw) > MaxExchangeJWTSize {
		return "", invalidCredentials("JWT longer than %d bytes", MaxExchangeJWTSize)
	}
	var (
		key      *AuthorizedKey
		storeErr error
	)
	keyfunc := func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("no kid")
		}
		if !validID(kid) {
			return nil, errors.New("unknown key")
		}
		k, err := s.store.GetAuthorizedKey(ctx, kid)
		if errors.Is(err, ErrNotFound) {
			return nil, errors.New("unknown key")
		}
		if err != nil {
			storeErr = err
			return nil, err
		}
		pub, err := parseRSAPublicKeyPEM(k.PublicKeyPEM)
		if err != nil {
			storeErr = err
			return nil, err
		}
		if pub.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("key shorter than %d bits", minRSABits)
		}
		key = k
		return pub, nil
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodPS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(exchangeLeeway),
		jwt.WithAudience(s.opts.TokenURLs...),
		jwt.WithTimeFunc(s.now),
	)
	var claims jwt.RegisteredClaims
	if _, err := p.ParseWithClaims(raw, &claims, keyfunc); err != nil {
		if storeErr != nil {
			return "", fmt.Errorf("iamserver: look up authorized key: %w", storeErr)
		}
		return "", invalidCredentials("JWT: %s", jwtReason(err))
	}
	if claims.IssuedAt == nil {
		return "", invalidCredentials("JWT: iat is required")
	}
	if claims.IssuedAt.After(s.now().Add(MaxExchangeIATSkew)) {
		return "", invalidCredentials("JWT: iat is more than %s in the future (is the client's clock right?)", MaxExchangeIATSkew)
	}
	if claims.ExpiresAt.Sub(claims.IssuedAt.Time) > MaxExchangeJWTLifetime {
		return "", invalidCredentials("JWT: exp is more than %s after iat", MaxExchangeJWTLifetime)
	}
	if claims.Issuer != key.ServiceAccountID {
		return "", invalidCredentials("JWT: iss is not the service account that owns the key")
	}
	// The account may have been deleted between the key lookup and now; the
	// store deletes its keys with it, but check rather than trust ordering.
	if _, err := s.store.GetServiceAccount(ctx, key.ServiceAccountID); err != nil {
		if errors.Is(err, ErrNotFound) {
			return "", invalidCredentials("JWT: unknown service account")
		}
		return "", fmt.Errorf("iamserver: look up service account: %w", err)
	}
	return key.ServiceAccountID, nil
}

// jwtReason turns a golang-jwt error into a short reason that never holds
// the token.
func jwtReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "bad signature or algorithm (PS256 required)"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "no usable key for its kid"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "a required claim (exp) is missing"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "aud is not this issuer's token URL"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued), errors.Is(err, jwt.ErrTokenNotValidYet):
		return "issued in the future"
	default:
		return "invalid"
	}
}

func parseRSAPublicKeyPEM(s string) (*rsa.PublicKey, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("iamserver: stored public key is not PEM PKIX")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("iamserver: stored public key: %w", err)
	}
	rsaPub, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("iamserver: stored public key is not RSA")
	}
	return rsaPub, nil
}

// verifyIssuedToken checks that raw is an IAM token this issuer signed
// (with any published key) and answers its claims. An expired token is
// accepted: revoking it is harmless.
func (s *Server) verifyIssuedToken(raw string) (*iamjwt.Claims, error) {
	if len(raw) > MaxExchangeJWTSize {
		return nil, fmt.Errorf("iamserver: iam_token: longer than %d bytes", MaxExchangeJWTSize)
	}
	ks := s.keys.Load()
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{SigningAlgorithm}),
		jwt.WithoutClaimsValidation(),
	)
	var claims iamjwt.Claims
	_, err := p.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		pub, ok := ks.public[kid]
		if !ok {
			return nil, errors.New("unknown key")
		}
		return pub, nil
	})
	if err != nil {
		return nil, fmt.Errorf("iamserver: iam_token: %s", jwtReason(err))
	}
	if claims.Issuer != s.opts.Issuer || claims.Subject == "" || claims.ID == "" || claims.ExpiresAt == nil {
		return nil, errors.New("iamserver: iam_token: not issued by this issuer")
	}
	if !slices.Contains(claims.Audience, s.opts.Audience) {
		return nil, errors.New("iamserver: iam_token: not issued by this issuer")
	}
	return &claims, nil
}
