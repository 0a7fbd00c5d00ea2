package iamserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// errStaticKeys is Rotate's answer when the operator provides the keys.
var errStaticKeys = errors.New("iamserver: signing keys come from Options.SigningKeyFiles: rotate by changing the files")

// loadSigningKeyFiles reads P-256 private keys from PEM files (PKCS #8
// "PRIVATE KEY" or SEC 1 "EC PRIVATE KEY", as openssl writes them). Their
// kid is the RFC 7638 JWK thumbprint, so it stays the same across restarts
// and hosts that share the files.
func loadSigningKeyFiles(paths []string) ([]*SigningKey, error) {
	var keys []*SigningKey
	seen := map[string]bool{}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("iamserver: signing key file: %w", err)
		}
		block, _ := pem.Decode(b)
		if block == nil {
			return nil, fmt.Errorf("iamserver: signing key file %s: no PEM block", path)
		}
		var priv *ecdsa.PrivateKey
		switch block.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("iamserver: signing key file %s: malformed PKCS #8", path)
			}
			ec, ok := k.(*ecdsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("iamserver: signing key file %s: not an EC key (%s needs P-256)", path, SigningAlgorithm)
			}
			priv = ec
		case "EC PRIVATE KEY":
			if priv, err = x509.ParseECPrivateKey(block.Bytes); err != nil {
				return nil, fmt.Errorf("iamserver: signing key file %s: malformed SEC 1 key", path)
			}
		default:
			return nil, fmt.Errorf("iamserver: signing key file %s: PEM type %q, want PRIVATE KEY or EC PRIVATE KEY", path, block.Type)
		}
		if priv.Curve != elliptic.P256() {
			return nil, fmt.Errorf("iamserver: signing key file %s: curve %s, %s needs P-256", path, priv.Curve.Params().Name, SigningAlgorithm)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, fmt.Errorf("iamserver: signing key file %s: %w", path, err)
		}
		kid, err := thumbprint(priv)
		if err != nil {
			return nil, fmt.Errorf("iamserver: signing key file %s: %w", path, err)
		}
		if seen[kid] {
			return nil, fmt.Errorf("iamserver: signing key file %s: the same key is listed twice", path)
		}
		seen[kid] = true
		// Zero CreatedAt and RetiredAt: every file key is active, and the
		// first one signs (buildKeySet keeps the order).
		keys = append(keys, &SigningKey{ID: kid, Algorithm: SigningAlgorithm, PrivateKey: der})
	}
	return keys, nil
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256) of an EC P-256 key:
// the hash of its required members in lexicographic order.
func thumbprint(priv *ecdsa.PrivateKey) (string, error) {
	pub, err := priv.PublicKey.ECDH()
	if err != nil {
		return "", err
	}
	raw := pub.Bytes()
	doc := `{"crv":"P-256","kty":"EC","x":"` + base64.RawURLEncoding.EncodeToString(raw[1:33]) +
		`","y":"` + base64.RawURLEncoding.EncodeToString(raw[33:65]) + `"}`
	sum := sha256.Sum256([]byte(doc))
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}
