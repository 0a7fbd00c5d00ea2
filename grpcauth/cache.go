package grpcauth

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of a CachedSource; each has an option to change it.
const (
	// DefaultRefreshInterval is how long after a token was obtained the cache
	// fetches the next one. IAM tokens live up to 12 h; refreshing hourly
	// means an IAM outage meets a cache holding a token with hours left.
	DefaultRefreshInterval = time.Hour
	// DefaultFetchTimeout bounds one call to the source. Fetches run under
	// their own deadline, not a caller's: a caller with a short deadline
	// must not doom the fetch every other caller is waiting for.
	DefaultFetchTimeout = 30 * time.Second
	// DefaultSafetyMargin is how long before its expiry a token stops being
	// used, so that it neither expires in flight nor dies to a small clock
	// skew between client and server.
	DefaultSafetyMargin = time.Minute
	// DefaultMinBackoff and DefaultMaxBackoff bound the wait between failed
	// fetches: it doubles from the first to the second, with jitter.
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = time.Minute
)

const (
	// A token is stale once less than 1/staleFraction of its lifetime is
	// left...
	staleFraction = 10
	// ...and at the latest staleLead before its expiry, whichever is first.
	staleLead = 5 * time.Minute
	// minRefreshGap spaces background refreshes of short-lived tokens (those
	// that are stale as soon as they arrive, e.g. from a metadata service
	// near the end of its token's life): without it, every call would start
	// the next fetch as soon as the last one ended.
	minRefreshGap = time.Second
)

// ErrCacheClosed is returned by a CachedSource after Close.
var ErrCacheClosed = errors.New("grpcauth: token cache closed")

// Errors of a token a source returned that the cache cannot use. They are
// wrapped in a FetchError.
var (
	errNilToken      = errors.New("source returned no token")
	errEmptyToken    = errors.New("source returned an empty token")
	errTokenChars    = errors.New("token has characters not allowed in a gRPC metadata value")
	errTokenExpired  = errors.New("source returned a token that expires within the safety margin (clock skew?)")
	errFetchCanceled = errors.New("fetch canceled")
)

// CachedSource is a TokenSource that shares one token between all its
// callers and refreshes it ahead of its expiry. It is safe for concurrent
// use.
//
// # Hot path
//
// While the token is fresh, Token costs one atomic load and one reading of
// the wall clock: no lock, no allocation.
//
// # Refresh
//
// A token is stale DefaultRefreshInterval after it was obtained, or once
// less than a tenth of its lifetime is left, and at the latest 5 min before
// its expiry, whichever comes first. A call that finds the token stale still
// gets it at once, and starts a background refresh unless one is running:
// there is never more than one fetch at a time. A token is not used within
// the safety margin of its expiry; the source's claim of a lifetime over
// MaxLifetime is cut to MaxLifetime.
//
// Expiry is judged by the wall clock: Go's monotonic clock stops while a
// machine is suspended, and a VM resumed after hours must not send the token
// it held before.
//
// # Blocking
//
// A call blocks only when no valid token exists (at first, or after an
// outage outlived the token). All such callers wait for one shared fetch,
// each only as long as its own context allows; the fetch itself runs under
// its own timeout and goes on for the others if a caller gives up.
//
// # Failures
//
// A failed fetch is retried no earlier than after a backoff that doubles
// from the minimum to the maximum with each consecutive failure, with
// jitter. Retries are started by calls, never by a timer, so a cache nobody
// calls costs nothing. While the backoff runs:
//   - a call with a valid token gets it, and no error;
//   - a call with no valid token fails at once with the last fetch error,
//     instead of piling onto an upstream that just failed.
//
// Fetches run under a context of the cache's own, so values carried by a
// caller's context do not reach the source.
//
// # Goroutines
//
// The only goroutine a cache starts is the one running the current fetch;
// it ends when the fetch does. Close cancels it and waits for it. A cache
// nobody closes therefore leaks nothing that outlives a fetch.
type CachedSource struct {
	src  TokenSource
	opts cacheOptions

	// current is the token in use: nil before the first successful fetch and
	// after Close. It is loaded without a lock on every call and stored only
	// with mu held.
	current atomic.Pointer[cacheEntry]
	// inflight is the fetch running now, or nil. Stored only with mu held.
	inflight atomic.Pointer[fetchCall]
	// retryAt is the wall-clock time (Unix nanoseconds) before which no
	// fetch starts, after a failure; 0 when the last fetch succeeded.
	// Stored only with mu held.
	retryAt atomic.Int64

	// mu guards the fields below, and serialises the stores above.
	mu       sync.Mutex
	closed   bool
	failures int   // consecutive failed fetches
	lastErr  error // the last fetch's error, nil after a success
	stats    CacheStats

	// ctx is the parent of every fetch's context; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts running fetch goroutines.
	wg sync.WaitGroup
}

// cacheEntry is a token with what the hot path needs precomputed. It is
// never written after it is stored in CachedSource.current.
type cacheEntry struct {
	token *Token
	// md is the call metadata for the token, shared by every call: gRPC
	// copies what GetRequestMetadata returns, so one map per token is safe.
	md map[string]string
	// staleAt and expireAt are wall-clock Unix nanoseconds: from staleAt a
	// refresh is due; from expireAt the token is not used at all.
	staleAt, expireAt int64
}

// fetchCall is one call to the source, shared by everyone waiting for it.
// entry and err are written before done is closed.
type fetchCall struct {
	done  chan struct{}
	entry *cacheEntry
	err   error
}

// CacheStats describes a CachedSource's history. It never holds the token.
type CacheStats struct {
	// Fetches counts the calls to the source.
	Fetches uint64
	// Failures counts the fetches that failed.
	Failures uint64
	// Refreshes counts the fetches started in the background, while a valid
	// token was still being used.
	Refreshes uint64
	// ConsecutiveFailures is the number of fetches that failed since the
	// last success.
	ConsecutiveFailures int
	// LastRefresh is when the last successful fetch completed; zero if none
	// has.
	LastRefresh time.Time
	// Expiry is the current token's expiry (after the MaxLifetime cap); zero
	// if there is no token.
	Expiry time.Time
	// NextAttempt is, after a failure, the earliest time the next fetch may
	// start; zero otherwise.
	NextAttempt time.Time
	// LastError is the last fetch's error, nil after a success. Errors never
	// hold a token.
	LastError error
}

// CacheEvent describes one completed fetch, for WithObserver. It never holds
// the token.
type CacheEvent struct {
	// Background is true for a refresh started while a valid token was in
	// use, false for a fetch that callers were waiting for.
	Background bool
	// Err is nil if the fetch succeeded.
	Err error
	// Duration is how long the source took.
	Duration time.Duration
	// Expiry is the new token's expiry (after the MaxLifetime cap), on
	// success.
	Expiry time.Time
	// NextAttempt is the earliest time the next fetch may start, on failure.
	NextAttempt time.Time
}

// CacheOption configures a CachedSource.
type CacheOption func(*cacheOptions)

type cacheOptions struct {
	refreshInterval time.Duration
	fetchTimeout    time.Duration
	safetyMargin    time.Duration
	minBackoff      time.Duration
	maxBackoff      time.Duration
	observer        func(CacheEvent)

	// now reads the wall clock and jitter draws from [0, n); tests replace
	// both.
	now    func() time.Time
	jitter func(n int64) int64
}

func defaultCacheOptions() cacheOptions {
	return cacheOptions{
		refreshInterval: DefaultRefreshInterval,
		fetchTimeout:    DefaultFetchTimeout,
		safetyMargin:    DefaultSafetyMargin,
		minBackoff:      DefaultMinBackoff,
		maxBackoff:      DefaultMaxBackoff,
		now:             time.Now,
		jitter:          rand.Int64N,
	}
}

// WithRefreshInterval sets how long after a token was obtained the next one
// is fetched (DefaultRefreshInterval). A token close to its expiry is
// refreshed earlier regardless. A non-positive d keeps the default.
func WithRefreshInterval(d time.Duration) CacheOption {
	return func(o *cacheOptions) {
		if d > 0 {
			o.refreshInterval = d
		}
	}
}

// WithFetchTimeout bounds each call to the source, background or not
// (DefaultFetchTimeout). A non-positive d keeps the default.
func WithFetchTimeout(d time.Duration) CacheOption {
	return func(o *cacheOptions) {
		if d > 0 {
			o.fetchTimeout = d
		}
	}
}

// WithSafetyMargin sets how long before its expiry a token stops being used
// (DefaultSafetyMargin). A negative d keeps the default; zero uses a token
// to its last nanosecond, which only tests should want.
func WithSafetyMargin(d time.Duration) CacheOption {
	return func(o *cacheOptions) {
		if d >= 0 {
			o.safetyMargin = d
		}
	}
}

// WithBackoff bounds the wait after a failed fetch: min after the first
// failure, doubling up to max, each wait drawn at random from its upper
// half so that many clients do not retry in step. Non-positive values, or
// max < min, keep the defaults.
func WithBackoff(min, max time.Duration) CacheOption {
	return func(o *cacheOptions) {
		if min > 0 && max >= min {
			o.minBackoff, o.maxBackoff = min, max
		}
	}
}

// WithObserver calls fn after every fetch, from the goroutine that ran it,
// for logs and metrics. fn must not block: Close waits for it. The event
// never holds the token.
func WithObserver(fn func(CacheEvent)) CacheOption {
	return func(o *cacheOptions) { o.observer = fn }
}

// withClock makes the cache read time from now instead of time.Now.
func withClock(now func() time.Time) CacheOption {
	return func(o *cacheOptions) { o.now = now }
}

// withJitter makes the cache draw backoff jitter from fn instead of
// math/rand.
func withJitter(fn func(n int64) int64) CacheOption {
	return func(o *cacheOptions) { o.jitter = fn }
}

// NewCachedSource returns a cache in front of src. It fetches nothing until
// its first call. It panics if src is nil.
func NewCachedSource(src TokenSource, opts ...CacheOption) *CachedSource {
	if src == nil {
		panic("grpcauth: NewCachedSource: nil TokenSource")
	}
	c := &CachedSource{src: src, opts: defaultCacheOptions()}
	for _, o := range opts {
		o(&c.opts)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// Token returns the cached token, fetching one if none is valid. The token
// is shared by every caller and must not be modified; its Expiry is the
// source's, cut to MaxLifetime after Obtained.
func (c *CachedSource) Token(ctx context.Context) (*Token, error) {
	e, err := c.entry(ctx)
	if err != nil {
		return nil, err
	}
	return e.token, nil
}

// entry is Token for the credentials, which want the metadata map too.
func (c *CachedSource) entry(ctx context.Context) (*cacheEntry, error) {
	if e := c.current.Load(); e != nil {
		now := c.opts.now().UnixNano()
		if now < e.staleAt {
			return e, nil
		}
		if now < e.expireAt {
			if c.inflight.Load() == nil && !c.backingOff(now) {
				c.refresh()
			}
			return e, nil
		}
	}
	return c.wait(ctx)
}

// refresh starts a background fetch unless one is running, a backoff is
// under way, or a fetch has just replaced the stale token.
func (c *CachedSource) refresh() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.now().UnixNano()
	e := c.current.Load()
	if c.closed || e == nil || now < e.staleAt || c.inflight.Load() != nil || c.backingOff(now) {
		return
	}
	c.startLocked(true)
}

// backingOff reports whether a failed fetch's backoff still runs at now. A
// retry time further away than the longest backoff means the wall clock
// was set back since it was chosen: the backoff is then over, rather than
// lasting as long as the clock went back.
func (c *CachedSource) backingOff(now int64) bool {
	retry := c.retryAt.Load()
	return now < retry && retry-now <= int64(c.opts.maxBackoff)
}

// wait is the slow path: there is no valid token. It joins the running
// fetch or starts one, and waits for it as long as ctx allows.
func (c *CachedSource) wait(ctx context.Context) (*cacheEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("grpcauth: waiting for a token: %w", err)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrCacheClosed
	}
	now := c.opts.now().UnixNano()
	if e := c.current.Load(); e != nil && now < e.expireAt {
		// A fetch completed since the caller looked.
		c.mu.Unlock()
		return e, nil
	}
	call := c.inflight.Load()
	if call == nil {
		if c.backingOff(now) {
			err := c.lastErr
			c.mu.Unlock()
			return nil, fmt.Errorf("grpcauth: no valid token, next fetch in %v: %w",
				time.Duration(c.retryAt.Load()-now).Round(time.Millisecond), err)
		}
		call = c.startLocked(false)
	}
	c.mu.Unlock()

	select {
	case <-call.done:
		if call.err != nil {
			return nil, call.err
		}
		return call.entry, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("grpcauth: waiting for a token: %w", ctx.Err())
	}
}

// startLocked starts a fetch; c.mu must be held and no fetch running.
func (c *CachedSource) startLocked(background bool) *fetchCall {
	call := &fetchCall{done: make(chan struct{})}
	c.inflight.Store(call)
	c.stats.Fetches++
	if background {
		c.stats.Refreshes++
	}
	c.wg.Add(1)
	go c.run(call, background)
	return call
}

// run calls the source once and publishes the result.
func (c *CachedSource) run(call *fetchCall, background bool) {
	defer c.wg.Done()
	start := c.opts.now()
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.fetchTimeout)
	tok, err := c.src.Token(ctx)
	cancel()
	received := c.opts.now()

	var e *cacheEntry
	if err == nil {
		e, err = newCacheEntry(tok, received, &c.opts)
	}
	if err != nil {
		err = asFetchError(err)
	}

	var ev CacheEvent
	c.mu.Lock()
	switch {
	case c.closed:
		e, err = nil, ErrCacheClosed
	case err != nil:
		c.failures++
		c.stats.Failures++
		c.lastErr = err
		next := received.Add(c.backoff(c.failures))
		c.retryAt.Store(next.UnixNano())
		ev.NextAttempt = next
	default:
		c.failures = 0
		c.lastErr = nil
		c.retryAt.Store(0)
		c.current.Store(e)
		c.stats.LastRefresh = received
		ev.Expiry = e.token.Expiry
	}
	call.entry, call.err = e, err
	c.inflight.Store(nil)
	c.mu.Unlock()
	close(call.done)

	if c.opts.observer != nil && !errors.Is(err, ErrCacheClosed) {
		ev.Background, ev.Err, ev.Duration = background, err, received.Sub(start)
		c.opts.observer(ev)
	}
}

// asFetchError makes err a FetchError, so that the boundary can tell an
// outage from a refusal. A source's own FetchError is kept as it is.
func asFetchError(err error) error {
	var fe *FetchError
	if errors.As(err, &fe) {
		return err
	}
	temporary := IsTemporary(err)
	switch {
	case errors.Is(err, context.Canceled):
		// Only Close cancels a fetch's context, and then the caller gets
		// ErrCacheClosed; a source that cancels itself has failed to answer.
		temporary = true
		err = fmt.Errorf("%w: %w", errFetchCanceled, err)
	case errors.Is(err, errNilToken), errors.Is(err, errEmptyToken), errors.Is(err, errTokenChars):
		temporary = false
	}
	return &FetchError{Source: "token source", Temporary: temporary, Err: err}
}

// backoff is the wait after the n-th consecutive failure (n ≥ 1).
func (c *CachedSource) backoff(n int) time.Duration {
	d := c.opts.minBackoff
	for i := 1; i < n && d < c.opts.maxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.opts.maxBackoff)
	half := d / 2
	if d-half > 0 {
		half += time.Duration(c.opts.jitter(int64(d - half)))
	}
	return half
}

// newCacheEntry checks tok, received from the source at received, and
// precomputes what the hot path needs.
func newCacheEntry(tok *Token, received time.Time, o *cacheOptions) (*cacheEntry, error) {
	if tok == nil {
		return nil, errNilToken
	}
	if err := checkBearerValue(tok.Value); err != nil {
		return nil, err
	}
	// Round(0) drops any monotonic reading: every comparison below is of
	// wall-clock times.
	received = received.Round(0)
	obtained := tok.Obtained.Round(0)
	if obtained.IsZero() || obtained.After(received) {
		// An Obtained in the future is the source's clock running ahead;
		// the refresh interval counts from when the token arrived here.
		obtained = received
	}
	expiry := tok.Expiry.Round(0)
	if limit := obtained.Add(MaxLifetime); expiry.IsZero() || expiry.After(limit) {
		expiry = limit
	}
	lifetime := expiry.Sub(obtained)

	expireAt := expiry.Add(-o.safetyMargin)
	if !received.Before(expireAt) {
		return nil, errTokenExpired
	}
	stale := obtained.Add(o.refreshInterval)
	stale = earliest(stale, expiry.Add(-lifetime/staleFraction))
	stale = earliest(stale, expiry.Add(-staleLead))
	if gap := received.Add(minRefreshGap); stale.Before(gap) {
		stale = gap
	}
	stale = earliest(stale, expireAt)

	t := &Token{Value: tok.Value, Expiry: expiry, Obtained: obtained}
	return &cacheEntry{
		token:    t,
		md:       map[string]string{"authorization": "Bearer " + tok.Value},
		staleAt:  stale.UnixNano(),
		expireAt: expireAt.UnixNano(),
	}, nil
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// checkBearerValue rejects a value that gRPC would refuse to send as a
// metadata value, or that has a space (printable ASCII without space is
// what every bearer token is made of). gRPC reports such a value as
// Internal; catching it here makes it a refused credential instead.
func checkBearerValue(v string) error {
	if v == "" {
		return errEmptyToken
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x21 || v[i] > 0x7e {
			return errTokenChars
		}
	}
	return nil
}

// Stats returns counters and times of the cache's fetches. It never returns
// the token.
func (c *CachedSource) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.ConsecutiveFailures = c.failures
	s.LastError = c.lastErr
	if e := c.current.Load(); e != nil {
		s.Expiry = e.token.Expiry
	}
	if r := c.retryAt.Load(); r != 0 {
		s.NextAttempt = time.Unix(0, r)
	}
	return s
}

// Close stops the running fetch, if any, and waits for it to end; callers
// waiting for it get ErrCacheClosed, and so does every later call. Close
// does not close the source. It is safe to call more than once.
func (c *CachedSource) Close() error {
	c.mu.Lock()
	c.closed = true
	c.current.Store(nil)
	c.cancel()
	c.mu.Unlock()
	c.wg.Wait()
	return nil
}
