package interceptors

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
)

// cacheShards is the number of shards; a power of two.
const cacheShards = 64

// tokenCache holds valid tokens until their expiry, keyed by the whole token
// string: a hit needs the exact token that was verified, so no hash
// collision can ever turn one token into another's principal (a short hash
// would need a cryptographic one, which costs more than the lookup).
//
// Each shard is a copy-on-write map behind an atomic pointer: a hit is an
// atomic load and a map lookup, with no lock and no write to shared memory,
// so it scales across cores. Writes copy the shard, which is cheap next to
// the signature check that precedes every insert. Only verified tokens are
// inserted, so a flood of invalid tokens grows nothing.
type tokenCache struct {
	perShard int
	seed     maphash.Seed
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	// mu serializes writers of m; readers only load m.
	mu sync.Mutex
	m  atomic.Pointer[map[string]*cacheEntry]
	// pad keeps shards on separate cache lines.
	_ [48]byte
}

// cacheEntry is a verified token. Its fields are immutable except
// revokeCheckedAt.
type cacheEntry struct {
	principal *Principal
	expiry    int64 // exp in Unix nanoseconds
	key       *keyRecord
	// revokeCheckedAt is when the revocation list last cleared the token,
	// in Unix nanoseconds.
	revokeCheckedAt atomic.Int64
}

// newTokenCache returns a cache of about size entries, or nil for size 0.
func newTokenCache(size int) *tokenCache {
	if size <= 0 {
		return nil
	}
	c := &tokenCache{perShard: (size + cacheShards - 1) / cacheShards, seed: maphash.MakeSeed()}
	for i := range c.shards {
		m := map[string]*cacheEntry{}
		c.shards[i].m.Store(&m)
	}
	return c
}

// shard picks a token's shard from its last bytes, which are signature
// bytes: uniform for any issuer, and cheap to hash whatever the token's
// length.
func (c *tokenCache) shard(token string) *cacheShard {
	tail := token[max(0, len(token)-16):]
	return &c.shards[maphash.String(c.seed, tail)&(cacheShards-1)]
}

// get returns the live entry for token at now (Unix nanoseconds), or nil.
func (c *tokenCache) get(token string, now int64) *cacheEntry {
	if c == nil {
		return nil
	}
	e := (*c.shard(token).m.Load())[token]
	if e == nil || now >= e.expiry || e.key.removed.Load() {
		return nil
	}
	return e
}

// put inserts e for token. A full shard first drops dead entries, then the
// entry that expires first.
func (c *tokenCache) put(token string, e *cacheEntry, now int64) {
	if c == nil {
		return
	}
	// Clone: the token may share memory with a larger buffer.
	token = strings.Clone(token)
	s := c.shard(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.m.Load()
	next := make(map[string]*cacheEntry, min(len(old)+1, c.perShard))
	for k, v := range old {
		if now < v.expiry && !v.key.removed.Load() {
			next[k] = v
		}
	}
	if _, ok := next[token]; !ok && len(next) >= c.perShard {
		var victim string
		var first int64
		for k, v := range next {
			if victim == "" || v.expiry < first {
				victim, first = k, v.expiry
			}
		}
		delete(next, victim)
	}
	next[token] = e
	s.m.Store(&next)
}

// remove drops token's entry if it is still e.
func (c *tokenCache) remove(token string, e *cacheEntry) {
	if c == nil {
		return
	}
	s := c.shard(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.m.Load()
	if old[token] != e {
		return
	}
	next := make(map[string]*cacheEntry, len(old))
	for k, v := range old {
		if k != token {
			next[k] = v
		}
	}
	s.m.Store(&next)
}

// sweep drops entries whose key left the key set, so that their memory is
// freed now rather than at their expiry.
func (c *tokenCache) sweep() {
	if c == nil {
		return
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		old := *s.m.Load()
		next := make(map[string]*cacheEntry, len(old))
		for k, v := range old {
			if !v.key.removed.Load() {
				next[k] = v
			}
		}
		s.m.Store(&next)
		s.mu.Unlock()
	}
}

// len returns the number of entries, dead or alive.
func (c *tokenCache) len() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		n += len(*c.shards[i].m.Load())
	}
	return n
}
