package iamserver

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// DataKeySize is the size of the data key that encrypts secrets at rest
// (AES-256).
const DataKeySize = 32

// errDecrypt hides why an opening failed: the caller learns only that the
// data key does not match or the record was tampered with.
var errDecrypt = errors.New("iamserver: cannot decrypt a stored secret (wrong data key or corrupted record)")

// sealer encrypts secrets at rest with AES-256-GCM. Each record is bound to
// where it is stored by its additional data (table and ID), so a ciphertext
// copied into another row does not open.
type sealer struct {
	aead cipher.AEAD
}

func newSealer(key []byte) (*sealer, error) {
	if len(key) != DataKeySize {
		return nil, fmt.Errorf("iamserver: data key is %d bytes, want %d", len(key), DataKeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("iamserver: data key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("iamserver: data key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// seal returns nonce || ciphertext. A random 96-bit nonce is safe for far
// more records than an issuer will ever write under one data key.
func (s *sealer) seal(plaintext []byte, aad string) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("iamserver: nonce: %w", err)
	}
	return s.aead.Seal(nonce, nonce, plaintext, []byte(aad)), nil
}

func (s *sealer) open(sealed []byte, aad string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, errDecrypt
	}
	out, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(aad))
	if err != nil {
		return nil, errDecrypt
	}
	return out, nil
}

// NewDataKey returns a fresh random data key.
func NewDataKey() ([]byte, error) {
	k := make([]byte, DataKeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("iamserver: data key: %w", err)
	}
	return k, nil
}

// LoadDataKeyFile reads a data key from a file holding its standard base64
// encoding (surrounding whitespace allowed). Keep the file apart from the
// database file (another volume, a secret mount): a copy of the database
// alone then reveals no secret.
func LoadDataKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("iamserver: data key file: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("iamserver: data key file %s: not base64", path)
	}
	if len(key) != DataKeySize {
		return nil, fmt.Errorf("iamserver: data key file %s: key is %d bytes, want %d", path, len(key), DataKeySize)
	}
	return key, nil
}

// LoadOrCreateDataKeyFile reads the data key at path, or creates the file
// (mode 0600) with a fresh key when it does not exist. It suits a demo or a
// single host; production operators provision the file themselves.
func LoadOrCreateDataKeyFile(path string) ([]byte, error) {
	key, err := LoadDataKeyFile(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return key, err
	}
	key, err = NewDataKey()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) { // another process won the race
			return LoadDataKeyFile(path)
		}
		return nil, fmt.Errorf("iamserver: data key file: %w", err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("iamserver: data key file: %w", err)
	}
	return key, nil
}
