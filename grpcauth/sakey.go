package grpcauth

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

// MaxKeyFileSize bounds an authorized key file. A real one is about 3 KiB
// (RSA 4096: about 4.5 KiB); anything far larger is not a key file.
const MaxKeyFileSize = 64 << 10

// MaxJWTLifetime is the longest lifetime of the JWT a service account signs
// for the token exchange; the issuer refuses longer ones.
const MaxJWTLifetime = time.Hour

// keyFileWarning starts the line that the reference deployment's console puts
// before the PEM block of a generated private key.
const keyFileWarning = "PLEASE DO NOT REMOVE THIS LINE!"

// ServiceAccountKey is an authorized key of a service account (or a user
// account): the key ID, whose account it is, and the RSA private key that
// signs the JWTs exchanged for IAM tokens.
//
// Its String and GoString never show the private key, and encoding/json
// does not see it either.
type ServiceAccountKey struct {
	// ID is the key ID, the `kid` of the JWTs it signs.
	ID string
	// ServiceAccountID is the account the key belongs to, the `iss` of the
	// JWTs it signs. For a user account's key it holds the user account ID
	// and UserAccount is true.
	ServiceAccountID string
	// UserAccount is true when the key file named a user_account_id rather
	// than a service_account_id.
	UserAccount bool
	// KeyAlgorithm is RSA_2048 or RSA_4096.
	KeyAlgorithm string
	// CreatedAt is when the key was created; zero when the file did not say.
	CreatedAt time.Time
	// Description is the key's description, if any.
	Description string

	privateKey *rsa.PrivateKey
}

// NewServiceAccountKey makes a key from its parts, for keys that do not come
// from a file. The private key must be RSA 2048 or 4096 bits.
func NewServiceAccountKey(keyID, serviceAccountID string, key *rsa.PrivateKey) (*ServiceAccountKey, error) {
	k := &ServiceAccountKey{ID: keyID, ServiceAccountID: serviceAccountID, privateKey: key}
	if err := checkID("key id", keyID); err != nil {
		return nil, keyError(err)
	}
	if err := checkID("service account id", serviceAccountID); err != nil {
		return nil, keyError(err)
	}
	if key == nil {
		return nil, keyError(errors.New("no private key"))
	}
	alg, err := rsaAlgorithm(key)
	if err != nil {
		return nil, keyError(err)
	}
	k.KeyAlgorithm = alg
	return k, nil
}

// ServiceAccountKeyFromFile reads and parses an authorized key file. See
// ServiceAccountKeyFromBytes for the format.
func ServiceAccountKeyFromFile(path string) (*ServiceAccountKey, error) {
	f, err := os.Open(path)
	if err != nil {
		// The path is the user's own configuration, safe to show.
		return nil, configError(keyFileSourceName, fmt.Errorf("read key file: %w", err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxKeyFileSize+1))
	if err != nil {
		return nil, configError(keyFileSourceName, fmt.Errorf("read key file %s: %w", path, err))
	}
	k, err := ServiceAccountKeyFromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return k, nil
}

// keyFileJSON is an authorized key file. The reference deployment writes
// snake_case names; some of its tools and SDKs write camelCase: both are read.
type keyFileJSON struct {
	ID                    *string `json:"id"`
	ServiceAccountID      *string `json:"service_account_id"`
	ServiceAccountIDCamel *string `json:"serviceAccountId"`
	UserAccountID         *string `json:"user_account_id"`
	UserAccountIDCamel    *string `json:"userAccountId"`
	CreatedAt             *string `json:"created_at"`
	CreatedAtCamel        *string `json:"createdAt"`
	Description           *string `json:"description"`
	KeyAlgorithm          *string `json:"key_algorithm"`
	KeyAlgorithmCamel     *string `json:"keyAlgorithm"`
	PublicKey             *string `json:"public_key"`
	PublicKeyCamel        *string `json:"publicKey"`
	PrivateKey            *string `json:"private_key"`
	PrivateKeyCamel       *string `json:"privateKey"`
}

// ServiceAccountKeyFromBytes parses an authorized key file: a JSON object
// with id, service_account_id (or user_account_id), key_algorithm,
// public_key, private_key, and optionally created_at and description, in
// snake_case or camelCase. private_key is a PKCS#8 PEM block of an RSA 2048
// or 4096 bit key, possibly preceded by a line starting "PLEASE DO NOT REMOVE
// THIS LINE!". Unknown fields are ignored, so that newer files still load.
//
// Errors say what is wrong with the file and never contain key material.
func ServiceAccountKeyFromBytes(data []byte) (*ServiceAccountKey, error) {
	k, err := parseKeyFile(data)
	if err != nil {
		return nil, keyError(err)
	}
	return k, nil
}

const keyFileSourceName = "service account key"

func keyError(err error) error {
	return &FetchError{Source: keyFileSourceName, Err: fmt.Errorf("invalid key: %w", err)}
}

func parseKeyFile(data []byte) (*ServiceAccountKey, error) {
	if len(data) > MaxKeyFileSize {
		return nil, fmt.Errorf("key file larger than %d bytes", MaxKeyFileSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("key file is empty")
	}
	var f keyFileJSON
	if err := decodeJSONObject(data, &f); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	id, err := oneOf("id", f.ID, "", nil)
	if err != nil {
		return nil, err
	}
	saID, err := oneOf("service_account_id", f.ServiceAccountID, "serviceAccountId", f.ServiceAccountIDCamel)
	if err != nil {
		return nil, err
	}
	userID, err := oneOf("user_account_id", f.UserAccountID, "userAccountId", f.UserAccountIDCamel)
	if err != nil {
		return nil, err
	}
	createdAt, err := oneOf("created_at", f.CreatedAt, "createdAt", f.CreatedAtCamel)
	if err != nil {
		return nil, err
	}
	alg, err := oneOf("key_algorithm", f.KeyAlgorithm, "keyAlgorithm", f.KeyAlgorithmCamel)
	if err != nil {
		return nil, err
	}
	pubPEM, err := oneOf("public_key", f.PublicKey, "publicKey", f.PublicKeyCamel)
	if err != nil {
		return nil, err
	}
	privPEM, err := oneOf("private_key", f.PrivateKey, "privateKey", f.PrivateKeyCamel)
	if err != nil {
		return nil, err
	}

	k := &ServiceAccountKey{}
	if err := checkID("id", id); err != nil {
		return nil, err
	}
	k.ID = id
	switch {
	case saID != "" && userID != "":
		return nil, errors.New("both service_account_id and user_account_id are set")
	case saID != "":
		if err := checkID("service_account_id", saID); err != nil {
			return nil, err
		}
		k.ServiceAccountID = saID
	case userID != "":
		if err := checkID("user_account_id", userID); err != nil {
			return nil, err
		}
		k.ServiceAccountID, k.UserAccount = userID, true
	default:
		return nil, errors.New("service_account_id is missing")
	}
	if createdAt != "" {
		t, err := time.Parse(time.RFC3339Nano, createdAt)
		if err != nil {
			return nil, errors.New("created_at is not an RFC 3339 time")
		}
		k.CreatedAt = t
	}
	if f.Description != nil {
		k.Description = *f.Description
	}

	if privPEM == "" {
		return nil, errors.New("private_key is missing")
	}
	priv, err := parsePrivateKeyPEM(privPEM)
	if err != nil {
		return nil, fmt.Errorf("private_key: %w", err)
	}
	k.privateKey = priv
	k.KeyAlgorithm, err = rsaAlgorithm(priv)
	if err != nil {
		return nil, fmt.Errorf("private_key: %w", err)
	}
	if alg != "" && alg != k.KeyAlgorithm {
		if alg != "RSA_2048" && alg != "RSA_4096" {
			return nil, errors.New("key_algorithm is not supported (want RSA_2048 or RSA_4096)")
		}
		return nil, fmt.Errorf("key_algorithm is %s but private_key is %s", alg, k.KeyAlgorithm)
	}
	if pubPEM != "" {
		pub, err := parsePublicKeyPEM(pubPEM)
		if err != nil {
			return nil, fmt.Errorf("public_key: %w", err)
		}
		if !pub.Equal(&priv.PublicKey) {
			return nil, errors.New("public_key does not match private_key")
		}
	}
	return k, nil
}

// oneOf returns the value of a field that may be spelled two ways; it is an
// error for both spellings to be present with different values.
func oneOf(snake string, s *string, camel string, c *string) (string, error) {
	switch {
	case s != nil && c != nil && *s != *c:
		return "", fmt.Errorf("%s and %s are both set and differ", snake, camel)
	case s != nil:
		return *s, nil
	case c != nil:
		return *c, nil
	}
	return "", nil
}

// checkID accepts the IDs the reference deployment issues (short, printable,
// no spaces) with room to spare.
func checkID(name, id string) error {
	if id == "" {
		return fmt.Errorf("%s is missing", name)
	}
	if len(id) > 256 {
		return fmt.Errorf("%s is longer than 256 bytes", name)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%s has a byte that is not printable ASCII", name)
		}
	}
	return nil
}

func parsePrivateKeyPEM(s string) (*rsa.PrivateKey, error) {
	rest := strings.TrimLeft(s, " \t\r\n")
	if strings.HasPrefix(rest, keyFileWarning) {
		nl := strings.IndexByte(rest, '\n')
		if nl < 0 {
			return nil, errors.New("no PEM block after the PLEASE DO NOT REMOVE THIS LINE! line")
		}
		rest = rest[nl+1:]
	}
	block, tail := pem.Decode([]byte(rest))
	if block == nil {
		return nil, errors.New("not a PEM block")
	}
	if len(bytes.TrimSpace(tail)) != 0 {
		return nil, errors.New("unexpected data after the PEM block")
	}
	switch block.Type {
	case "PRIVATE KEY":
	case "RSA PRIVATE KEY":
		return nil, errors.New("PEM block is PKCS#1 (RSA PRIVATE KEY); want PKCS#8 (PRIVATE KEY)")
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("PEM block is encrypted; want an unencrypted PKCS#8 key")
	default:
		return nil, fmt.Errorf("PEM block is %s; want PRIVATE KEY (PKCS#8)", pemTypeName(block.Type))
	}
	if _, ok := block.Headers["Proc-Type"]; ok {
		return nil, errors.New("PEM block is encrypted; want an unencrypted PKCS#8 key")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		// x509's messages name the structure that failed, not its bytes.
		return nil, fmt.Errorf("not a PKCS#8 private key: %w", err)
	}
	rsaKey, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %s; want RSA", keyTypeName(key))
	}
	return rsaKey, nil
}

func parsePublicKeyPEM(s string) (*rsa.PublicKey, error) {
	block, tail := pem.Decode([]byte(strings.TrimSpace(s)))
	if block == nil {
		return nil, errors.New("not a PEM block")
	}
	if len(bytes.TrimSpace(tail)) != 0 {
		return nil, errors.New("unexpected data after the PEM block")
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("PEM block is %s; want PUBLIC KEY", pemTypeName(block.Type))
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not a PKIX public key: %w", err)
	}
	rsaKey, ok := key.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("key is %s; want RSA", keyTypeName(key))
	}
	return rsaKey, nil
}

// pemTypeName names a PEM block type for an error: the well-known ones as
// they are, anything else not at all, since the file is untrusted text.
func pemTypeName(t string) string {
	switch t {
	case "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE", "EC PRIVATE KEY",
		"OPENSSH PRIVATE KEY", "DSA PRIVATE KEY", "CERTIFICATE REQUEST":
		return fmt.Sprintf("%q", t)
	}
	return "of an unexpected type"
}

func keyTypeName(key any) string {
	switch key.(type) {
	case *rsa.PrivateKey, *rsa.PublicKey:
		return "RSA"
	default:
		name := fmt.Sprintf("%T", key)
		switch {
		case strings.Contains(name, "ecdsa"):
			return "ECDSA"
		case strings.Contains(name, "ed25519"):
			return "Ed25519"
		case strings.Contains(name, "ecdh"):
			return "ECDH"
		}
		return name
	}
}

// rsaAlgorithm names the key's algorithm as key files do, refusing the sizes
// the issuer does not accept.
func rsaAlgorithm(k *rsa.PrivateKey) (string, error) {
	switch bits := k.N.BitLen(); bits {
	case 2048:
		return "RSA_2048", nil
	case 4096:
		return "RSA_4096", nil
	default:
		return "", fmt.Errorf("RSA key has %d bits; want 2048 or 4096", bits)
	}
}

// String describes the key without its private half.
func (k ServiceAccountKey) String() string {
	account := "ServiceAccountID"
	if k.UserAccount {
		account = "UserAccountID"
	}
	return fmt.Sprintf("grpcauth.ServiceAccountKey{ID: %q, %s: %q, KeyAlgorithm: %s, PrivateKey: [redacted]}",
		k.ID, account, k.ServiceAccountID, k.KeyAlgorithm)
}

// GoString is String, so that %#v redacts the private key too.
func (k ServiceAccountKey) GoString() string { return k.String() }

// PublicKey returns the public half of the key.
func (k *ServiceAccountKey) PublicKey() *rsa.PublicKey {
	if k.privateKey == nil {
		return nil
	}
	return &k.privateKey.PublicKey
}

// exchangeClaims are the claims of the JWT a service account signs. aud is a
// plain string: RFC 7519 allows a string or an array, the reference issuer
// accepts both, and a string does not depend on jwt.MarshalSingleStringAsArray,
// a process-wide setting.
type exchangeClaims struct {
	Issuer    string           `json:"iss"`
	Audience  string           `json:"aud"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	ExpiresAt *jwt.NumericDate `json:"exp"`
}

func (c exchangeClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }
func (c exchangeClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt, nil }
func (c exchangeClaims) GetNotBefore() (*jwt.NumericDate, error)      { return nil, nil }
func (c exchangeClaims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c exchangeClaims) GetSubject() (string, error)                  { return "", nil }
func (c exchangeClaims) GetAudience() (jwt.ClaimStrings, error) {
	return jwt.ClaimStrings{c.Audience}, nil
}

// SignJWT signs the JWT that is exchanged for an IAM token: PS256 (RSA-PSS,
// SHA-256, salt length = hash length), header kid = the key ID, claims iss =
// the account ID, aud = audience (the issuer's token URL), iat = now and exp =
// now + lifetime, with lifetime capped at MaxJWTLifetime (and MaxJWTLifetime
// when lifetime <= 0).
func (k *ServiceAccountKey) SignJWT(now time.Time, audience string, lifetime time.Duration) (string, error) {
	if k == nil || k.privateKey == nil {
		return "", keyError(errors.New("no private key"))
	}
	if lifetime <= 0 || lifetime > MaxJWTLifetime {
		lifetime = MaxJWTLifetime
	}
	now = now.Truncate(time.Second)
	t := jwt.NewWithClaims(jwt.SigningMethodPS256, exchangeClaims{
		Issuer:    k.ServiceAccountID,
		Audience:  audience,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(lifetime)),
	})
	t.Header["kid"] = k.ID
	// golang-jwt's PS256 signs with rsa.PSSSaltLengthEqualsHash (32 bytes),
	// as RFC 7518 section 3.5 and the reference issuer require.
	s, err := t.SignedString(k.privateKey)
	if err != nil {
		return "", keyError(fmt.Errorf("sign JWT: %w", err))
	}
	return s, nil
}

// ServiceAccountKeySource signs a fresh JWT with a service account's
// authorized key for each exchange and trades it for an IAM token, over gRPC
// or REST as its ExchangeOptions say. It holds one connection for all its
// exchanges; Close releases it. Safe for concurrent use.
type ServiceAccountKeySource struct {
	ex       exchanger
	key      *ServiceAccountKey
	audience string
}

const keySourceName = "service account key exchange"

// NewServiceAccountKeySource returns a source that exchanges JWTs signed
// with key. It does not connect yet.
func NewServiceAccountKeySource(key *ServiceAccountKey, opts *ExchangeOptions) (*ServiceAccountKeySource, error) {
	if key == nil || key.privateKey == nil {
		return nil, keyError(errors.New("no private key"))
	}
	ex, err := newExchanger(keySourceName, opts)
	if err != nil {
		return nil, err
	}
	return &ServiceAccountKeySource{ex: ex, key: key, audience: opts.audience()}, nil
}

// ServiceAccountKeySourceFromFile loads the authorized key file at path and
// returns a source that exchanges JWTs signed with it.
func ServiceAccountKeySourceFromFile(path string, opts *ExchangeOptions) (*ServiceAccountKeySource, error) {
	key, err := ServiceAccountKeyFromFile(path)
	if err != nil {
		return nil, err
	}
	return NewServiceAccountKeySource(key, opts)
}

// ServiceAccountKeySourceFromBytes parses an authorized key file and returns
// a source that exchanges JWTs signed with it.
func ServiceAccountKeySourceFromBytes(data []byte, opts *ExchangeOptions) (*ServiceAccountKeySource, error) {
	key, err := ServiceAccountKeyFromBytes(data)
	if err != nil {
		return nil, err
	}
	return NewServiceAccountKeySource(key, opts)
}

// Key returns the source's key.
func (s *ServiceAccountKeySource) Key() *ServiceAccountKey { return s.key }

// Token signs a JWT valid for MaxJWTLifetime and exchanges it.
func (s *ServiceAccountKeySource) Token(ctx context.Context) (*Token, error) {
	signed, err := s.key.SignJWT(sourceNow(), s.audience, MaxJWTLifetime)
	if err != nil {
		return nil, err
	}
	req := &iamv1.IamTokenServiceCreateRequest{
		Identity: &iamv1.IamTokenServiceCreateRequest_Jwt{Jwt: signed},
	}
	return s.ex.exchange(ctx, req, signed)
}

// Close releases the exchange's connection. Token fails after Close.
func (s *ServiceAccountKeySource) Close() error { return s.ex.close() }

// String describes the source without its private key.
func (s *ServiceAccountKeySource) String() string {
	return "grpcauth.ServiceAccountKeySource{Key: " + s.key.String() + "}"
}

// GoString is String, so that %#v redacts the key too.
func (s *ServiceAccountKeySource) GoString() string { return s.String() }
