package interceptors

import (
	"container/heap"
	"crypto/sha256"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// replayCache remembers the signatures of accepted calls until they expire,
// to refuse a second use. It holds at most capacity live signatures and
// fails closed when full (see WithAccessKeyReplayProtection).
type replayCache struct {
	capacity int

	// mu guards seen and byExpiry, which always hold the same signatures.
	mu       sync.Mutex
	seen     map[[sha256.Size]byte]struct{}
	byExpiry expiryHeap
}

func newReplayCache(capacity int) *replayCache {
	return &replayCache{capacity: capacity, seen: make(map[[sha256.Size]byte]struct{})}
}

// add records sig, valid until expires, or refuses it if it was seen.
func (c *replayCache) add(sig [sha256.Size]byte, expires, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Forget what the clock check refuses anyway (a signature dated exactly
	// AccessKeySignatureWindow ago is still accepted, hence Before). A
	// signature is never forgotten before then, so it cannot be replayed.
	for len(c.byExpiry) > 0 && c.byExpiry[0].expires.Before(now) {
		delete(c.seen, heap.Pop(&c.byExpiry).(replayEntry).sig)
	}
	if _, ok := c.seen[sig]; ok {
		return status.Error(codes.Unauthenticated, "interceptors: access-key signature already used (replay refused)")
	}
	if len(c.seen) >= c.capacity {
		return status.Error(codes.Unavailable, "interceptors: access-key replay cache full; try again later")
	}
	c.seen[sig] = struct{}{}
	heap.Push(&c.byExpiry, replayEntry{sig: sig, expires: expires})
	return nil
}

// len returns the number of signatures remembered.
func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

type replayEntry struct {
	sig     [sha256.Size]byte
	expires time.Time
}

// expiryHeap is a min-heap of entries by expiry.
type expiryHeap []replayEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(replayEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
