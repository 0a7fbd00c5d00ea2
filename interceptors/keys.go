package interceptors

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"sync/atomic"
)

// minRSABits is the smallest RSA modulus accepted for a verification key.
const minRSABits = 2048

// keyRecord is one verification key of the key set. Cached tokens point at
// the record of the key that verified them, so that a key leaving the set
// takes its tokens with it: the record is marked removed first, and a cache
// hit on a removed record is a miss.
type keyRecord struct {
	kid string
	key crypto.PublicKey
	// alg is the JWK's alg member; "" when the key set did not restrict it.
	alg string
	// removed is set once the key left the key set (or changed).
	removed atomic.Bool
}

// keySource finds verification keys by kid.
type keySource interface {
	// lookup returns the key named kid. An unknown kid is errUnknownKID;
	// ErrUnavailable wraps a failure to fetch the key set.
	lookup(ctx context.Context, kid string) (*keyRecord, error)
	// close stops whatever the source runs in the background.
	close()
}

// staticKeys is a fixed key set.
type staticKeys map[string]*keyRecord

func newStaticKeys(keys map[string]crypto.PublicKey) (staticKeys, error) {
	s := make(staticKeys, len(keys))
	for kid, k := range keys {
		if !validKID(kid) {
			return nil, fmt.Errorf("interceptors: WithStaticKeys: kid %q is not 1 to %d characters of A-Z a-z 0-9 . _ -", kid, maxKIDLen)
		}
		if err := checkPublicKey(k); err != nil {
			return nil, fmt.Errorf("interceptors: WithStaticKeys: key %q: %w", kid, err)
		}
		s[kid] = &keyRecord{kid: kid, key: k}
	}
	return s, nil
}

func (s staticKeys) lookup(_ context.Context, kid string) (*keyRecord, error) {
	if r, ok := s[kid]; ok {
		return r, nil
	}
	return nil, errUnknownKID
}

func (staticKeys) close() {}

// checkPublicKey accepts the key types the supported algorithms verify with.
func checkPublicKey(k crypto.PublicKey) error {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		if k == nil || (k.Curve != elliptic.P256() && k.Curve != elliptic.P384() && k.Curve != elliptic.P521()) {
			return fmt.Errorf("ECDSA key is not on P-256, P-384 or P-521")
		}
	case *rsa.PublicKey:
		if k == nil || k.N == nil || k.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key is shorter than %d bits", minRSABits)
		}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("Ed25519 key is not %d bytes", ed25519.PublicKeySize)
		}
	default:
		return fmt.Errorf("key type %T is not ECDSA, RSA or Ed25519", k)
	}
	return nil
}

// keyFits reports whether the key can verify alg: the family and, for ECDSA,
// the curve the algorithm names.
func keyFits(r *keyRecord, alg string) bool {
	if r.alg != "" && r.alg != alg {
		return false
	}
	switch k := r.key.(type) {
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	case *rsa.PublicKey:
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return true
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// validKID reports whether kid is 1 to maxKIDLen characters of
// [A-Za-z0-9._-]: enough for any issuer's key IDs (random IDs, base64url
// thumbprints), and safe to put in a map, an error or a log.
func validKID(kid string) bool {
	if len(kid) == 0 || len(kid) > maxKIDLen {
		return false
	}
	for i := 0; i < len(kid); i++ {
		c := kid[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
