package interceptors

import (
	"crypto/subtle"
	"sync"
)

// signingKeyCacheSize bounds the derived keys a verifier remembers: one per
// access key in use per day.
const signingKeyCacheSize = 4096

// signingKeyCache remembers derived SigV4 signing keys, which change only
// with the date (region and service are fixed per verifier), so that a call
// costs one HMAC instead of five, as AWS's own guidance suggests.
//
// It never decides whether a key is valid: the store is asked on every call,
// and a cached key is used only if the secret the store answered is the one
// it was derived from, so a rotated, deactivated or deleted key is never
// honoured from here. Like the store, it holds secret material in memory.
type signingKeyCache struct {
	// mu guards m. When m is full it is emptied: simple, bounded, and
	// refilled within one call per active key.
	mu sync.RWMutex
	m  map[signingKeyID]signingKeyEntry
}

type signingKeyID struct {
	keyID, date string
}

type signingKeyEntry struct {
	secret     []byte // a copy of the secret the key was derived from
	signingKey []byte
}

func newSigningKeyCache() *signingKeyCache {
	return &signingKeyCache{m: make(map[signingKeyID]signingKeyEntry)}
}

// get returns the signing key of keyID's secret for date, deriving and
// remembering it if needed.
func (c *signingKeyCache) get(keyID string, secret []byte, date, region, service string) []byte {
	id := signingKeyID{keyID: keyID, date: date}
	c.mu.RLock()
	e, ok := c.m[id]
	c.mu.RUnlock()
	if ok && len(e.secret) == len(secret) && subtle.ConstantTimeCompare(e.secret, secret) == 1 {
		return e.signingKey
	}
	key := sigV4SigningKey(secret, date, region, service)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= signingKeyCacheSize {
		clear(c.m)
	}
	c.m[id] = signingKeyEntry{secret: append([]byte(nil), secret...), signingKey: key}
	return key
}
