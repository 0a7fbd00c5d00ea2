package iamserver

import (
	"crypto/rand"
	"fmt"
	"strings"
)

const (
	// idAlphabet is the reference deployment's resource-ID alphabet.
	idAlphabet = "abcdefghijklmnopqrstuv0123456789"
	// base62 is the alphabet of access key IDs and secrets.
	base62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

	// idLength is the length of resource IDs: a 3-letter kind prefix and 17
	// random characters (85 bits).
	idLength = 20
	// AccessKeyIDPrefix starts every access key ID, as in the reference
	// deployment; an IAM token never starts with it.
	AccessKeyIDPrefix = "YCAJ"
	// accessKeyIDLength is the length of access key IDs (21 random base62
	// characters, 125 bits, after the prefix).
	accessKeyIDLength = 25
	// accessKeySecretLength is the length of access key secrets (40 base62
	// characters, 238 bits).
	accessKeySecretLength = 40
)

// Kind prefixes of resource IDs.
const (
	prefixServiceAccount = "ajs"
	prefixAuthorizedKey  = "ajk"
	prefixAccessKey      = "aja"
	prefixSigningKey     = "ajt"
	prefixToken          = "ajj"
)

// randomString returns n characters drawn uniformly from alphabet (at most
// 64 characters) with crypto/rand; rejection sampling avoids modulo bias.
func randomString(alphabet string, n int) (string, error) {
	var b strings.Builder
	b.Grow(n)
	buf := make([]byte, n+n/2)
	limit := 256 - 256%len(alphabet)
	for b.Len() < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("iamserver: random: %w", err)
		}
		for _, c := range buf {
			if int(c) < limit {
				b.WriteByte(alphabet[int(c)%len(alphabet)])
				if b.Len() == n {
					break
				}
			}
		}
	}
	return b.String(), nil
}

func newID(prefix string) (string, error) {
	s, err := randomString(idAlphabet, idLength-len(prefix))
	if err != nil {
		return "", err
	}
	return prefix + s, nil
}

func newAccessKeyID() (string, error) {
	s, err := randomString(base62, accessKeyIDLength-len(AccessKeyIDPrefix))
	if err != nil {
		return "", err
	}
	return AccessKeyIDPrefix + s, nil
}

func newAccessKeySecret() (string, error) {
	return randomString(base62, accessKeySecretLength)
}

// validID reports whether s has the shape of a resource ID, so that a
// malformed ID is refused as an invalid argument before any lookup.
func validID(s string) bool {
	if len(s) != idLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(idAlphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}
