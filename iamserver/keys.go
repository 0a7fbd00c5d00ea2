package iamserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
)

// SigningAlgorithm is the JWS algorithm of the IAM tokens the issuer signs.
// ES256 was chosen from measurements (docs/readme/issuer.md): signing is an
// order of magnitude cheaper than RS256/PS256, verification is cheap enough
// for validators that cache verified tokens, the key and signature are small,
// and it is on every current JOSE allow-list.
const SigningAlgorithm = "ES256"

// publishLeeway keeps a retired key published a little longer than the
// longest-lived token it signed, for validators whose clocks run behind.
const publishLeeway = 5 * time.Minute

// signer is one usable signing key.
type signer struct {
	id        string
	key       *ecdsa.PrivateKey
	createdAt time.Time
}

// keySet is an immutable snapshot of the issuer's keys: the current signer,
// the public keys of every key whose tokens may still be alive, and their
// JWKS document. The server swaps snapshots atomically so that signing and
// serving the JWKS never take a lock.
type keySet struct {
	current *signer
	// pending is the published key that takes over from current at its
	// createdAt, or nil.
	pending *signer
	public  map[string]*ecdsa.PublicKey
	jwks    []byte
	etag    string
}

// jwk is one key of the published JWKS (RFC 7517, RFC 7518 §6.2).
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

func newSigningKey(now time.Time) (*SigningKey, error) {
	id, err := newID(prefixSigningKey)
	if err != nil {
		return nil, err
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("iamserver: signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("iamserver: signing key: %w", err)
	}
	return &SigningKey{ID: id, Algorithm: SigningAlgorithm, PrivateKey: der, CreatedAt: now.UTC()}, nil
}

func parseSigningKey(k *SigningKey) (*ecdsa.PrivateKey, error) {
	if k.Algorithm != SigningAlgorithm {
		return nil, fmt.Errorf("iamserver: signing key %s: algorithm %q is not %s", k.ID, k.Algorithm, SigningAlgorithm)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(k.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("iamserver: signing key %s: malformed", k.ID)
	}
	priv, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || priv.Curve != elliptic.P256() {
		return nil, fmt.Errorf("iamserver: signing key %s: not a P-256 key", k.ID)
	}
	return priv, nil
}

// buildKeySet makes a snapshot from stored keys (newest first), keeping the
// keys that may have signed a token still alive at now, and the next key,
// published ahead of its activation. The current key is the newest one
// active at now: created no later than now and not yet retired.
func buildKeySet(keys []*SigningKey, now time.Time) (*keySet, error) {
	ks := &keySet{public: make(map[string]*ecdsa.PublicKey)}
	doc := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{}}
	for _, k := range keys {
		if !k.RetiredAt.IsZero() && now.After(k.RetiredAt.Add(iamjwt.MaxLifetime+publishLeeway)) {
			continue
		}
		priv, err := parseSigningKey(k)
		if err != nil {
			return nil, err
		}
		active := !k.CreatedAt.After(now) && (k.RetiredAt.IsZero() || k.RetiredAt.After(now))
		if active && ks.current == nil {
			ks.current = &signer{id: k.ID, key: priv, createdAt: k.CreatedAt}
		}
		if k.CreatedAt.After(now) && k.RetiredAt.IsZero() {
			ks.pending = &signer{id: k.ID, key: priv, createdAt: k.CreatedAt}
		}
		pub, err := priv.PublicKey.ECDH()
		if err != nil {
			return nil, fmt.Errorf("iamserver: signing key %s: %w", k.ID, err)
		}
		raw := pub.Bytes() // 0x04 || X || Y, 32 bytes each
		ks.public[k.ID] = &priv.PublicKey
		doc.Keys = append(doc.Keys, jwk{
			Kty: "EC", Crv: "P-256",
			X:   base64.RawURLEncoding.EncodeToString(raw[1:33]),
			Y:   base64.RawURLEncoding.EncodeToString(raw[33:65]),
			Kid: k.ID, Alg: SigningAlgorithm, Use: "sig",
		})
	}
	if ks.current == nil {
		return nil, fmt.Errorf("iamserver: no current signing key")
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("iamserver: jwks: %w", err)
	}
	ks.jwks = b
	sum := sha256.Sum256(b)
	ks.etag = `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
	return ks, nil
}

// Rotate makes a new signing key the current one now, without waiting for
// validators to see it published: use it when the current key must stop
// signing at once. Tokens it signed stay verifiable until they expire.
// Scheduled rotations instead publish the next key prepublish ahead of its
// use.
func (s *Server) Rotate(ctx context.Context) error {
	if s.staticKeys != nil {
		return errStaticKeys
	}
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	return s.rotateLocked(ctx, s.now())
}

// rotateLocked stores a new key that becomes current at activateAt, when
// the previous one retires.
func (s *Server) rotateLocked(ctx context.Context, activateAt time.Time) error {
	k, err := newSigningKey(activateAt)
	if err != nil {
		return err
	}
	if err := s.store.RotateSigningKey(ctx, k); err != nil {
		return fmt.Errorf("iamserver: rotate signing key: %w", err)
	}
	s.logger.Info("iamserver: new signing key", "kid", k.ID, "active_from", activateAt)
	return s.reloadKeysLocked(ctx)
}

// prepublish is how long before it signs anything a scheduled key appears
// in the JWKS: longer than validators may cache the JWKS (jwksMaxAge), so
// that none meets a token whose kid it has not seen.
func (s *Server) prepublish() time.Duration {
	return min(2*jwksMaxAge, s.opts.KeyRotationInterval/2)
}

// reloadKeysLocked rebuilds the snapshot from the store, forgetting keys and
// revocations that can no longer matter.
func (s *Server) reloadKeysLocked(ctx context.Context) error {
	now := s.now()
	if err := s.store.DeleteSigningKeysRetiredBefore(ctx, now.Add(-iamjwt.MaxLifetime-publishLeeway)); err != nil {
		return fmt.Errorf("iamserver: prune signing keys: %w", err)
	}
	if err := s.store.DeleteRevocationsExpiredBefore(ctx, now.Add(-publishLeeway)); err != nil {
		return fmt.Errorf("iamserver: prune revocations: %w", err)
	}
	keys, err := s.store.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("iamserver: load signing keys: %w", err)
	}
	ks, err := buildKeySet(keys, now)
	if err != nil {
		return err
	}
	s.keys.Store(ks)
	return nil
}

// maintainKeys rotates the signing key when it is due and otherwise drops
// keys whose tokens have all expired from the JWKS. With operator-provided
// keys it only prunes the revocation list.
func (s *Server) maintainKeys(ctx context.Context) error {
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	if s.staticKeys != nil {
		// Nothing to rotate; the revocation list still needs pruning.
		now := s.now()
		if err := s.store.DeleteRevocationsExpiredBefore(ctx, now.Add(-publishLeeway)); err != nil {
			return fmt.Errorf("iamserver: prune revocations: %w", err)
		}
		ks, err := buildKeySet(s.staticKeys, now)
		if err != nil {
			return err
		}
		s.keys.Store(ks)
		return nil
	}
	keys, err := s.store.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("iamserver: load signing keys: %w", err)
	}
	// The newest key, possibly still waiting for its activation.
	var latest *SigningKey
	for _, k := range keys {
		if k.RetiredAt.IsZero() {
			latest = k
			break
		}
	}
	now := s.now()
	if latest == nil {
		return s.rotateLocked(ctx, now)
	}
	if !now.Before(latest.CreatedAt.Add(s.opts.KeyRotationInterval - s.prepublish())) {
		// Due: the next key is published now and signs from prepublish on.
		return s.rotateLocked(ctx, now.Add(s.prepublish()))
	}
	return s.reloadKeysLocked(ctx)
}

// JWKS returns the published key set, a JSON Web Key Set (RFC 7517).
func (s *Server) JWKS() []byte {
	return append([]byte(nil), s.keys.Load().jwks...)
}

// signerAt answers the key that signs at now: the pending key once its
// time has come, so the switch is exact whenever the snapshot is rebuilt.
func (ks *keySet) signerAt(now time.Time) *signer {
	if ks.pending != nil && !now.Before(ks.pending.createdAt) {
		return ks.pending
	}
	return ks.current
}

// CurrentKeyID is the kid of the key that signs tokens now.
func (s *Server) CurrentKeyID() string { return s.keys.Load().signerAt(s.now()).id }

// sign signs claims with the current key.
func (s *Server) sign(claims jwt.Claims, header map[string]any) (string, error) {
	cur := s.keys.Load().signerAt(s.now())
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = cur.id
	for k, v := range header {
		t.Header[k] = v
	}
	out, err := t.SignedString(cur.key)
	if err != nil {
		return "", fmt.Errorf("iamserver: sign: %w", err)
	}
	return out, nil
}

// SignClaims signs arbitrary claims with the issuer's current key, with
// header entries added to (or replacing) alg, typ and kid. It checks
// nothing: it is for test kits and tools that need tokens a normal exchange
// would never issue (expired, other audiences, odd headers). Servers never
// expose it.
func (s *Server) SignClaims(claims jwt.Claims, header map[string]any) (string, error) {
	return s.sign(claims, header)
}
