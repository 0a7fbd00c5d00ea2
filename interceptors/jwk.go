package interceptors

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
)

// jwk is the part of a JSON Web Key (RFC 7517, 7518, 8037) a verifier needs.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
	D   string `json:"d"`
}

// parseJWKS reads a key set. Keys this server cannot use (another kty or
// curve, "use" other than "sig", a bad kid, short RSA) are skipped, so that
// an issuer may publish more than we verify with; a key set with no usable
// key, a duplicate kid or a private key is an error, and the keys fetched
// before stay in use.
func parseJWKS(data []byte) (map[string]*keyRecord, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("interceptors: key set is not a JWKS: %w", err)
	}
	keys := make(map[string]*keyRecord, len(set.Keys))
	for _, raw := range set.Keys {
		var k jwk
		if err := json.Unmarshal(raw, &k); err != nil {
			continue
		}
		if k.D != "" {
			return nil, errors.New("interceptors: key set holds a private key")
		}
		if (k.Use != "" && k.Use != "sig") || !validKID(k.Kid) {
			continue
		}
		if k.Alg != "" && !slices.Contains(supportedAlgorithms, k.Alg) {
			continue
		}
		pub, err := k.publicKey()
		if err != nil {
			continue
		}
		if _, dup := keys[k.Kid]; dup {
			return nil, fmt.Errorf("interceptors: key set has kid %q twice", k.Kid)
		}
		keys[k.Kid] = &keyRecord{kid: k.Kid, key: pub, alg: k.Alg}
	}
	if len(keys) == 0 {
		return nil, errors.New("interceptors: key set has no usable signing key")
	}
	return keys, nil
}

func (k *jwk) publicKey() (any, error) {
	switch k.Kty {
	case "RSA":
		n, err := b64Int(k.N)
		if err != nil {
			return nil, err
		}
		e, err := b64Int(k.E)
		if err != nil {
			return nil, err
		}
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
			return nil, errors.New("bad RSA exponent")
		}
		pub := &rsa.PublicKey{N: n, E: int(e.Int64())}
		return pub, checkPublicKey(pub)
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, errors.New("unsupported curve")
		}
		size := (curve.Params().BitSize + 7) / 8
		x, errX := base64.RawURLEncoding.Strict().DecodeString(k.X)
		y, errY := base64.RawURLEncoding.Strict().DecodeString(k.Y)
		if errX != nil || errY != nil || len(x) != size || len(y) != size {
			return nil, errors.New("bad EC coordinates")
		}
		// ParseUncompressedPublicKey checks that the point is on the curve.
		return ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
	case "OKP":
		x, err := base64.RawURLEncoding.Strict().DecodeString(k.X)
		if k.Crv != "Ed25519" || err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("unsupported OKP key")
		}
		return ed25519.PublicKey(x), nil
	default:
		return nil, errors.New("unsupported kty")
	}
}

func b64Int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, errors.New("bad base64url integer")
	}
	return new(big.Int).SetBytes(b), nil
}
