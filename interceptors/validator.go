package interceptors

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
)

// Validator checks IAM tokens: the header and claims the issue of an IAM
// token requires, the signature with a key of the issuer's key set, and the
// revocation list if one is set. Valid tokens are cached until their expiry.
// It is safe for concurrent use.
//
// A Validator with a JWKS URL refreshes the key set in the background until
// Close.
type Validator struct {
	issuer             string
	audience           string
	algorithms         []string
	leeway             time.Duration
	now                func() time.Time
	revocation         RevocationList
	revocationInterval time.Duration

	parser *jwt.Parser
	keys   keySource
	cache  *tokenCache

	closeOnce sync.Once
}

// NewValidator returns a Validator configured by the key, claim, cache and
// revocation options. It needs WithStaticKeys or WithJWKSURL; the options
// that configure only the interceptors are ignored.
func NewValidator(opts ...Option) (*Validator, error) {
	o := newOptions(opts)
	if o.validator != nil {
		return nil, errors.New("interceptors: NewValidator: WithValidator makes no sense here")
	}
	if err := o.validateKeys(); err != nil {
		return nil, err
	}
	v := &Validator{
		issuer:             o.issuer,
		audience:           o.audience,
		algorithms:         o.algorithms,
		leeway:             o.leeway,
		now:                o.now,
		revocation:         o.revocation,
		revocationInterval: o.revocationInterval,
		cache:              newTokenCache(o.cacheSize),
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(o.algorithms),
		jwt.WithIssuer(o.issuer),
		jwt.WithAudience(o.audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(o.leeway),
		jwt.WithTimeFunc(o.now),
		jwt.WithStrictDecoding(),
	)
	if o.staticKeys != nil {
		keys, err := newStaticKeys(o.staticKeys)
		if err != nil {
			return nil, err
		}
		v.keys = keys
	} else {
		v.keys = newJWKSSource(o, v.cache.sweep)
	}
	return v, nil
}

// Close stops the background refresh of the key set and waits for it. The
// Validator keeps validating with the keys it has. Close is idempotent.
func (v *Validator) Close() error {
	v.closeOnce.Do(v.keys.close)
	return nil
}

// Validate checks token (the bare token, without "Bearer ") and returns its
// caller. Errors wrap ErrInvalidToken for a token that must be refused, or
// ErrUnavailable when it could not be checked right now; their messages never
// hold the token.
//
// The returned Principal is shared by every call with the same token: do
// not modify it.
func (v *Validator) Validate(ctx context.Context, token string) (*Principal, error) {
	// The size is checked before anything else reads the token.
	if len(token) > maxTokenBytes {
		return nil, errTooLarge
	}
	now := v.now()
	if e := v.cache.get(token, now.UnixNano()); e != nil {
		if v.revocation != nil {
			if err := v.recheckRevocation(ctx, token, e, now); err != nil {
				return nil, err
			}
		}
		return e.principal, nil
	}
	return v.validate(ctx, token, now)
}

// recheckRevocation asks the revocation list about a cached token, at most
// once per revocation interval.
func (v *Validator) recheckRevocation(ctx context.Context, token string, e *cacheEntry, now time.Time) error {
	if v.revocationInterval > 0 && now.UnixNano()-e.revokeCheckedAt.Load() < int64(v.revocationInterval) {
		return nil
	}
	if err := v.checkRevoked(ctx, e.principal.TokenID); err != nil {
		if errors.Is(err, errRevoked) {
			v.cache.remove(token, e)
		}
		return err
	}
	e.revokeCheckedAt.Store(now.UnixNano())
	return nil
}

func (v *Validator) checkRevoked(ctx context.Context, jti string) error {
	revoked, err := v.revocation.IsRevoked(ctx, jti)
	if err != nil {
		return fmt.Errorf("%w: revocation list: %w", ErrUnavailable, err)
	}
	if revoked {
		return errRevoked
	}
	return nil
}

// validate is the full check of a token that is not in the cache.
func (v *Validator) validate(ctx context.Context, token string, now time.Time) (*Principal, error) {
	h, err := checkHeader(token, v.algorithms)
	if err != nil {
		return nil, err
	}
	var (
		claims iamjwt.Claims
		rec    *keyRecord
		keyErr error // our reason, when the keyfunc refused
	)
	_, err = v.parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) {
		// The claims are decoded but not yet verified: refusing on them here
		// spends no signature check and no key-set fetch on a token that
		// could never pass.
		if keyErr = checkClaimsPresent(&claims); keyErr != nil {
			return nil, keyErr
		}
		rec, keyErr = v.keys.lookup(ctx, h.kid)
		if keyErr != nil {
			return nil, keyErr
		}
		if !keyFits(rec, h.alg) {
			keyErr = errKeyMismatch
			return nil, keyErr
		}
		return rec.key, nil
	})
	if err != nil {
		if keyErr != nil {
			return nil, keyErr
		}
		return nil, parseError(err)
	}
	if v.revocation != nil {
		if err := v.checkRevoked(ctx, claims.ID); err != nil {
			return nil, err
		}
	}
	p := &Principal{
		SubjectID:   claims.Subject,
		SubjectType: SubjectType(claims.SubjectType),
		Method:      AuthIAMToken,
		TokenID:     claims.ID,
		ExpiresAt:   claims.ExpiresAt.Time,
	}
	// Cached until exp exactly: the leeway helps a caller whose clock is
	// behind, but a token past its expiry is never served from the cache.
	if exp := claims.ExpiresAt.UnixNano(); now.UnixNano() < exp {
		e := &cacheEntry{principal: p, expiry: exp, key: rec}
		e.revokeCheckedAt.Store(now.UnixNano())
		v.cache.put(token, e, now.UnixNano())
	}
	return p, nil
}

// checkClaimsPresent checks what jwt's validator does not: the presence of
// every claim an IAM token has, its subject type and its lifetime.
func checkClaimsPresent(c *iamjwt.Claims) error {
	switch {
	case c.Issuer == "":
		return errIssuer
	case len(c.Audience) == 0:
		return errNoAudience
	case c.ExpiresAt == nil:
		return errNoExpiry
	case c.IssuedAt == nil:
		return errNoIssuedAt
	case c.Subject == "":
		return errNoSubject
	case c.ID == "":
		return errNoTokenID
	}
	switch c.SubjectType {
	case iamjwt.SubjectServiceAccount, iamjwt.SubjectUserAccount, iamjwt.SubjectFederatedUser:
	default:
		return errSubjectType
	}
	if life := c.ExpiresAt.Sub(c.IssuedAt.Time); life <= 0 || life > iamjwt.MaxLifetime {
		return errLifetime
	}
	return nil
}

// parseError maps an error of jwt's parser to our reason.
func parseError(err error) error {
	var b64 base64.CorruptInputError
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed) && errors.As(err, &b64):
		return errBadBase64
	case errors.Is(err, jwt.ErrTokenMalformed):
		return errBadJSON
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return errSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		return errExpired
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return errIssuedFuture
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return errNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return errIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return errAudience
	default:
		return ErrInvalidToken
	}
}

// header is what checkHeader learned from a token's JOSE header.
type header struct {
	alg string
	kid string
}

// checkHeader checks the token's shape and header before jwt parses it, so
// that the refusals jwt does not make, or makes with a vague message, are
// made here: the size, the compact form, alg, kid and the headers that would
// bring a key or an extension with the token.
func checkHeader(token string, allowed []string) (header, error) {
	if len(token) > maxTokenBytes {
		return header{}, errTooLarge
	}
	first := strings.IndexByte(token, '.')
	last := strings.LastIndexByte(token, '.')
	if first <= 0 || last <= first+1 || last == len(token)-1 || strings.Count(token, ".") != 2 {
		return header{}, errNotCompact
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; !(c == '.' || c == '-' || c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return header{}, errNotCompact
		}
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(token[:first])
	if err != nil {
		return header{}, errBadBase64
	}
	// A map with exact keys, as jwt decodes the header too: a struct would
	// match keys case-insensitively and could read another "alg" than jwt.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return header{}, errBadJSON
	}
	var h header
	algRaw, ok := fields["alg"]
	if !ok || json.Unmarshal(algRaw, &h.alg) != nil {
		return header{}, errAlgNotAllowed
	}
	switch {
	case strings.EqualFold(h.alg, "none"):
		return header{}, errAlgNone
	case strings.HasPrefix(strings.ToUpper(h.alg), "HS"):
		return header{}, errAlgHMAC
	case !slices.Contains(allowed, h.alg):
		return header{}, errAlgNotAllowed
	}
	for _, name := range [...]string{"jku", "x5u", "jwk", "x5c"} {
		if _, ok := fields[name]; ok {
			return header{}, errKeyInHeader
		}
	}
	// We implement no JWS extension, so any crit header (RFC 7515 4.1.11)
	// names one we do not understand.
	if _, ok := fields["crit"]; ok {
		return header{}, errCrit
	}
	if typRaw, ok := fields["typ"]; ok {
		var typ string
		if json.Unmarshal(typRaw, &typ) != nil || !strings.EqualFold(typ, "JWT") {
			return header{}, errTyp
		}
	}
	kidRaw, ok := fields["kid"]
	if !ok {
		return header{}, errNoKID
	}
	if json.Unmarshal(kidRaw, &h.kid) != nil || !validKID(h.kid) {
		return header{}, errBadKID
	}
	return h, nil
}
