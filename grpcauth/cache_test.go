package grpcauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/internal/fakeclock"
)

// t0 is when every fake clock starts.
var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// fakeClock is a wall clock that moves only when told.
type fakeClock = fakeclock.Clock

func newFakeClock() *fakeClock { return fakeclock.New(t0) }

// fakeSource issues "token-N" for its N-th call, living lifetime from the
// fake clock's now, or fails with err. While gate is set, each call waits
// for it to be closed (or for its context).
type fakeSource struct {
	clock    *fakeClock
	lifetime time.Duration

	calls atomic.Int64

	mu      sync.Mutex
	err     error
	gate    chan struct{}
	started chan struct{} // one value per call start, if set
	ctxs    []context.Context
}

func newFakeSource(clock *fakeClock, lifetime time.Duration) *fakeSource {
	return &fakeSource{clock: clock, lifetime: lifetime}
}

func (s *fakeSource) Token(ctx context.Context) (*Token, error) {
	n := s.calls.Add(1)
	s.mu.Lock()
	gate, err, started := s.gate, s.err, s.started
	s.ctxs = append(s.ctxs, ctx)
	s.mu.Unlock()
	if started != nil {
		started <- struct{}{}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	now := s.clock.Now()
	return &Token{Value: fmt.Sprintf("token-%d", n), Obtained: now, Expiry: now.Add(s.lifetime)}, nil
}

func (s *fakeSource) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

// hold makes the following calls wait until the returned function is
// called; started receives a value as each call begins.
func (s *fakeSource) hold() (started <-chan struct{}, release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gate := make(chan struct{})
	st := make(chan struct{}, 10)
	s.gate, s.started = gate, st
	return st, func() {
		s.mu.Lock()
		s.gate, s.started = nil, nil
		s.mu.Unlock()
		close(gate)
	}
}

func (s *fakeSource) lastCtx() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctxs[len(s.ctxs)-1]
}

var errOutage = &FetchError{Source: "fake", Temporary: true, Err: errors.New("connection refused")}

// newTestCache returns a cache on clock with no jitter (every backoff is the
// upper half's lower end), closed when the test ends.
func newTestCache(t *testing.T, src TokenSource, clock *fakeClock, opts ...CacheOption) *CachedSource {
	t.Helper()
	opts = append([]CacheOption{withClock(clock.Now), withJitter(func(int64) int64 { return 0 })}, opts...)
	c := NewCachedSource(src, opts...)
	t.Cleanup(func() { c.Close() })
	return c
}

// settle waits for the running fetch, if any, to complete.
func settle(c *CachedSource) {
	if call := c.inflight.Load(); call != nil {
		<-call.done
	}
}

func mustToken(t *testing.T, c *CachedSource) string {
	t.Helper()
	tok, err := c.Token(context.Background())
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	return tok.Value
}

func TestCacheEntryTiming(t *testing.T) {
	type offsets struct{ Stale, Expire, Lifetime time.Duration }
	tests := []struct {
		name     string
		opts     []CacheOption
		obtained time.Duration // relative to arrival; 0 = not said
		expiry   time.Duration // relative to arrival; 0 = not said
		want     offsets       // relative to arrival
		wantErr  error
	}{
		{
			name:   "12h token refreshes after the interval",
			expiry: 12 * time.Hour,
			want:   offsets{Stale: time.Hour, Expire: 12*time.Hour - time.Minute, Lifetime: 12 * time.Hour},
		},
		{
			name:   "custom interval",
			opts:   []CacheOption{WithRefreshInterval(20 * time.Minute)},
			expiry: 12 * time.Hour,
			want:   offsets{Stale: 20 * time.Minute, Expire: 12*time.Hour - time.Minute, Lifetime: 12 * time.Hour},
		},
		{
			name:   "1h token is stale in its last tenth",
			expiry: time.Hour,
			want:   offsets{Stale: 54 * time.Minute, Expire: 59 * time.Minute, Lifetime: time.Hour},
		},
		{
			name:   "40 min token is stale 5 min before expiry",
			expiry: 40 * time.Minute,
			want:   offsets{Stale: 35 * time.Minute, Expire: 39 * time.Minute, Lifetime: 40 * time.Minute},
		},
		{
			name:   "2h token refreshes after the interval",
			expiry: 2 * time.Hour,
			want:   offsets{Stale: time.Hour, Expire: 2*time.Hour - time.Minute, Lifetime: 2 * time.Hour},
		},
		{
			name:     "interval counts from when the token was obtained",
			obtained: -40 * time.Minute,
			expiry:   11 * time.Hour,
			want:     offsets{Stale: 20 * time.Minute, Expire: 11*time.Hour - time.Minute, Lifetime: 11*time.Hour + 40*time.Minute},
		},
		{
			name:     "obtained in the future counts from arrival",
			obtained: time.Hour,
			expiry:   3 * time.Hour,
			want:     offsets{Stale: time.Hour, Expire: 3*time.Hour - time.Minute, Lifetime: 3 * time.Hour},
		},
		{
			name:   "a lifetime over 12h is not believed",
			expiry: 48 * time.Hour,
			want:   offsets{Stale: time.Hour, Expire: 12*time.Hour - time.Minute, Lifetime: 12 * time.Hour},
		},
		{
			name: "no expiry means 12h",
			want: offsets{Stale: time.Hour, Expire: 12*time.Hour - time.Minute, Lifetime: 12 * time.Hour},
		},
		{
			name:   "short-lived token is refreshed at most once a second",
			expiry: 4 * time.Minute,
			want:   offsets{Stale: time.Second, Expire: 3 * time.Minute, Lifetime: 4 * time.Minute},
		},
		{
			name:   "stale never later than unusable",
			opts:   []CacheOption{WithSafetyMargin(10 * time.Minute)},
			expiry: time.Hour,
			want:   offsets{Stale: 50 * time.Minute, Expire: 50 * time.Minute, Lifetime: time.Hour},
		},
		{
			name:    "token inside the safety margin is refused",
			expiry:  30 * time.Second,
			wantErr: errTokenExpired,
		},
		{
			name:    "expired token is refused",
			expiry:  -time.Hour,
			wantErr: errTokenExpired,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := defaultCacheOptions()
			for _, opt := range tt.opts {
				opt(&o)
			}
			tok := &Token{Value: "v"}
			if tt.obtained != 0 {
				tok.Obtained = t0.Add(tt.obtained)
			}
			if tt.expiry != 0 {
				tok.Expiry = t0.Add(tt.expiry)
			}
			e, err := newCacheEntry(tok, t0, &o)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("newCacheEntry error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			got := offsets{
				Stale:    time.Duration(e.staleAt - t0.UnixNano()),
				Expire:   time.Duration(e.expireAt - t0.UnixNano()),
				Lifetime: e.token.Expiry.Sub(e.token.Obtained),
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("timing relative to arrival (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCacheRefreshesInBackground(t *testing.T) {
	clock := newFakeClock()
	src := newFakeSource(clock, 12*time.Hour)
	c := newTestCache(t, src, clock)

	if got := mustToken(t, c); got != "token-1" {
		t.Fatalf("first token = %q, want token-1", got)
	}
	clock.Advance(time.Hour - time.Nanosecond)
	if got := mustToken(t, c); got != "token-1" || src.calls.Load() != 1 {
		t.Fatalf("before stale: token %q after %d fetches, want token-1 after 1", got, src.calls.Load())
	}

	// Stale: calls go on with the old token while one fetch runs.
	clock.Advance(time.Nanosecond)
	started, release := src.hold()
	for i := range 100 {
		if got := mustToken(t, c); got != "token-1" {
			t.Fatalf("call %d during refresh got %q, want token-1", i, got)
		}
	}
	<-started
	release()
	settle(c)
	if got := mustToken(t, c); got != "token-2" {
		t.Errorf("after refresh: token %q, want token-2", got)
	}
	want := CacheStats{Fetches: 2, Refreshes: 1, LastRefresh: t0.Add(time.Hour), Expiry: t0.Add(13 * time.Hour)}
	if diff := cmp.Diff(want, c.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestCacheFetchRunsUnderItsOwnTimeout(t *testing.T) {
	clock := newFakeClock()
	src := newFakeSource(clock, 12*time.Hour)
	c := newTestCache(t, src, clock, WithFetchTimeout(7*time.Minute))
	started, release := src.hold()

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Token(ctx)
		errc <- err
	}()
	<-started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("canceled caller got %v, want context.Canceled", err)
	}
	fetchCtx := src.lastCtx()
	if err := fetchCtx.Err(); err != nil {
		t.Errorf("the fetch's context ended with the caller's: %v", err)
	}
	deadline, ok := fetchCtx.Deadline()
	// The deadline is on the real clock, which the test does not control:
	// check only that there is one, from the fetch timeout.
	if left := time.Until(deadline); !ok || left <= 0 || left > 7*time.Minute {
		t.Errorf("fetch deadline in %v (set: %v), want within the 7m fetch timeout", left, ok)
	}
	release()
	settle(c)
	if got := mustToken(t, c); got != "token-1" {
		t.Errorf("after the fetch: %q, want token-1", got)
	}
}

func TestCacheFetchTimeoutIsAnOutage(t *testing.T) {
	clock := newFakeClock()
	src := newFakeSource(clock, 12*time.Hour)
	c := newTestCache(t, src, clock, WithFetchTimeout(time.Millisecond))
	_, release := src.hold()
	defer release()

	_, err := c.Token(context.Background())
	var fe *FetchError
	if !errors.As(err, &fe) || !fe.Temporary || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Token error = %v, want a temporary FetchError wrapping the fetch's deadline", err)
	}
}

func TestCacheConcurrentCallersShareOneFetch(t *testing.T) {
	const callers = 1000
	tests := []struct {
		name string
		// prepare brings the cache to the moment the callers arrive.
		prepare    func(t *testing.T, c *CachedSource, clock *fakeClock)
		wantBefore string // token callers get while the fetch runs; "" = they wait
		wantAfter  string
	}{
		{
			name:      "cold start",
			prepare:   func(*testing.T, *CachedSource, *fakeClock) {},
			wantAfter: "token-1",
		},
		{
			name: "at expiry",
			prepare: func(t *testing.T, c *CachedSource, clock *fakeClock) {
				mustToken(t, c)
				clock.Advance(12 * time.Hour)
			},
			wantAfter: "token-2",
		},
		{
			name: "at refresh",
			prepare: func(t *testing.T, c *CachedSource, clock *fakeClock) {
				mustToken(t, c)
				clock.Advance(time.Hour)
			},
			wantBefore: "token-1",
			wantAfter:  "token-2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			src := newFakeSource(clock, 12*time.Hour)
			c := newTestCache(t, src, clock)
			tt.prepare(t, c, clock)
			fetchesBefore := src.calls.Load()

			started, release := src.hold()
			var wg sync.WaitGroup
			got := make([]string, callers)
			errs := make([]error, callers)
			for i := range callers {
				wg.Go(func() {
					tok, err := c.Token(context.Background())
					if err == nil {
						got[i] = tok.Value
					}
					errs[i] = err
				})
			}
			<-started
			if tt.wantBefore != "" {
				// Callers that find a valid token do not wait for the
				// fetch: they all return while it is held.
				wg.Wait()
			}
			release()
			wg.Wait()
			settle(c)

			if n := src.calls.Load() - fetchesBefore; n != 1 {
				t.Errorf("%d callers caused %d fetches, want 1", callers, n)
			}
			for i := range callers {
				if errs[i] != nil {
					t.Fatalf("caller %d: %v", i, errs[i])
				}
				if want := tt.wantBefore; want == "" {
					if got[i] != tt.wantAfter {
						t.Fatalf("caller %d got %q, want %q", i, got[i], tt.wantAfter)
					}
				} else if got[i] != want {
					t.Fatalf("caller %d got %q, want %q", i, got[i], want)
				}
			}
			if v := mustToken(t, c); v != tt.wantAfter {
				t.Errorf("after the fetch: %q, want %q", v, tt.wantAfter)
			}
		})
	}
}

func TestCacheCallerWaitsOnlyAsLongAsItsContext(t *testing.T) {
	clock := newFakeClock()
	src := newFakeSource(clock, 12*time.Hour)
	c := newTestCache(t, src, clock)
	started, release := src.hold()

	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	// The caller's deadline passes while the source is held.
	if _, err := c.Token(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Token with a short deadline: %v, want context.DeadlineExceeded", err)
	}
	<-started
	// The fetch went on for the others.
	if err := src.lastCtx().Err(); err != nil {
		t.Fatalf("the fetch was canceled with the caller: %v", err)
	}
	release()
	if got := mustToken(t, c); got != "token-1" || src.calls.Load() != 1 {
		t.Errorf("next caller got %q after %d fetches, want token-1 after 1", got, src.calls.Load())
	}

	canceled, cancelNow := context.WithCancel(context.Background())
	cancelNow()
	clock.Advance(13 * time.Hour)
	if _, err := c.Token(canceled); !errors.Is(err, context.Canceled) {
		t.Errorf("Token with a canceled context: %v, want context.Canceled", err)
	}
	if n := src.calls.Load(); n != 1 {
		t.Errorf("a canceled caller started a fetch: %d fetches, want 1", n)
	}
}

func TestCacheOutage(t *testing.T) {
	// The token lives 3h and is refreshed hourly; the source fails for 4h
	// (longer than two refresh intervals), then comes back.
	clock := newFakeClock()
	src := newFakeSource(clock, 3*time.Hour)
	c := newTestCache(t, src, clock, WithBackoff(time.Second, 5*time.Minute))
	creds := NewPerRPCCredentials(c)
	ctx := requestContext(iamMethod, secureInfo)

	if _, err := creds.GetRequestMetadata(ctx); err != nil {
		t.Fatal(err)
	}
	src.setErr(errOutage)
	expireAt := t0.Add(3*time.Hour - DefaultSafetyMargin)
	var failedFetchesWhileValid int64
	for clock.Now().Before(t0.Add(4 * time.Hour)) {
		clock.Advance(10 * time.Second)
		md, err := creds.GetRequestMetadata(ctx)
		settle(c)
		if clock.Now().Before(expireAt) {
			if err != nil {
				t.Fatalf("at +%v, with a valid token: %v", clock.Now().Sub(t0), err)
			}
			if md["authorization"] != "Bearer token-1" {
				t.Fatalf("at +%v: authorization %q, want the old token", clock.Now().Sub(t0), md["authorization"])
			}
			failedFetchesWhileValid = src.calls.Load() - 1
			continue
		}
		if got := status.Code(err); got != codes.Unavailable {
			t.Fatalf("at +%v, token expired: code %v (%v), want Unavailable", clock.Now().Sub(t0), got, err)
		}
	}
	// Between the first refresh (+1h) and expiry (+2h59m) calls come every
	// 10s: one fetch per call would be 720. The backoff (its lower half
	// here: no jitter) grows from 0.5s to 2.5 min, so there are at most
	// 10 + 7140s/150s ≈ 58 attempts; retries never stop, so at least one
	// per 5 min cap: 24.
	if failedFetchesWhileValid < 24 || failedFetchesWhileValid > 58 {
		t.Errorf("%d fetches during the outage while the token was valid, want one per backoff (24-58)", failedFetchesWhileValid)
	}
	st := c.Stats()
	if st.ConsecutiveFailures == 0 || !errors.Is(st.LastError, errOutage) {
		t.Errorf("Stats during outage: %d consecutive failures, last error %v", st.ConsecutiveFailures, st.LastError)
	}

	src.setErr(nil)
	clock.Advance(5 * time.Minute) // past any backoff
	md, err := creds.GetRequestMetadata(ctx)
	if err != nil {
		t.Fatalf("after the outage: %v", err)
	}
	if !strings.HasPrefix(md["authorization"], "Bearer token-") || md["authorization"] == "Bearer token-1" {
		t.Errorf("after the outage: authorization %q, want a new token", md["authorization"])
	}
	if st := c.Stats(); st.ConsecutiveFailures != 0 || st.LastError != nil || !st.NextAttempt.IsZero() {
		t.Errorf("Stats after recovery: %+v", st)
	}
}

func TestCacheNoValidTokenFailsFastDuringBackoff(t *testing.T) {
	clock := newFakeClock()
	src := newFakeSource(clock, 12*time.Hour)
	src.setErr(errOutage)
	c := newTestCache(t, src, clock, WithBackoff(10*time.Second, time.Minute))

	if _, err := c.Token(context.Background()); !errors.Is(err, errOutage) {
		t.Fatalf("first Token: %v, want the outage", err)
	}
	for range 100 {
		if _, err := c.Token(context.Background()); !errors.Is(err, errOutage) {
			t.Fatalf("Token during backoff: %v, want the last error", err)
		}
	}
	if n := src.calls.Load(); n != 1 {
		t.Errorf("%d fetches during one backoff, want 1", n)
	}
	clock.Advance(5 * time.Second) // the backoff's lower end with no jitter
	src.setErr(nil)
	if got := mustToken(t, c); got != "token-2" {
		t.Errorf("after the backoff: %q, want token-2", got)
	}
}

func TestCacheBackoffSurvivesTheClockGoingBack(t *testing.T) {
	clock := newFakeClock()
	src := newFakeSource(clock, 12*time.Hour)
	src.setErr(errOutage)
	c := newTestCache(t, src, clock, WithBackoff(10*time.Second, time.Minute))
	if _, err := c.Token(context.Background()); !errors.Is(err, errOutage) {
		t.Fatalf("first Token: %v, want the outage", err)
	}
	// NTP sets the clock back an hour: the 5 s backoff must not become
	// 1 h 5 s.
	clock.Advance(-time.Hour)
	src.setErr(nil)
	if got := mustToken(t, c); got != "token-2" {
		t.Errorf("after the clock went back: %q, want token-2", got)
	}
}

func TestCacheBackoff(t *testing.T) {
	tests := []struct {
		name     string
		failures int
		jitter   func(int64) int64
		want     time.Duration
	}{
		{name: "first, no jitter", failures: 1, jitter: func(int64) int64 { return 0 }, want: 500 * time.Millisecond},
		{name: "first, most jitter", failures: 1, jitter: func(n int64) int64 { return n - 1 }, want: time.Second - 1},
		{name: "third doubles twice", failures: 3, jitter: func(int64) int64 { return 0 }, want: 2 * time.Second},
		{name: "capped", failures: 40, jitter: func(n int64) int64 { return n - 1 }, want: time.Minute - 1},
		{name: "capped far out", failures: 1 << 20, jitter: func(int64) int64 { return 0 }, want: 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCachedSource(newFakeSource(newFakeClock(), time.Hour), withJitter(tt.jitter))
			defer c.Close()
			if got := c.backoff(tt.failures); got != tt.want {
				t.Errorf("backoff(%d) = %v, want %v", tt.failures, got, tt.want)
			}
		})
	}
}

func TestCacheWallClockJump(t *testing.T) {
	// A VM suspended for longer than its token lives: the monotonic clock
	// stood still, the wall clock did not. No call may get the old token.
	clock := newFakeClock()
	src := newFakeSource(clock, 12*time.Hour)
	c := newTestCache(t, src, clock)
	mustToken(t, c)

	clock.Advance(12*time.Hour - DefaultSafetyMargin)
	src.setErr(errOutage)
	if tok, err := c.Token(context.Background()); err == nil {
		t.Fatalf("after the jump, with the source down: got %v, want an error", tok)
	}
	src.setErr(nil)
	clock.Advance(DefaultMaxBackoff)
	if got := mustToken(t, c); got == "token-1" {
		t.Errorf("after the jump: got the expired token")
	}
}

func TestCacheRejectsUnusableTokens(t *testing.T) {
	tests := []struct {
		name          string
		tok           *Token
		wantTemporary bool
	}{
		{name: "nil", tok: nil},
		{name: "empty", tok: &Token{Expiry: t0.Add(time.Hour)}},
		{name: "newline", tok: &Token{Value: "a\nb", Expiry: t0.Add(time.Hour)}},
		{name: "space", tok: &Token{Value: "a b", Expiry: t0.Add(time.Hour)}},
		{name: "non-ASCII", tok: &Token{Value: "tökén", Expiry: t0.Add(time.Hour)}},
		{name: "expired", tok: &Token{Value: "v", Expiry: t0.Add(-time.Second)}, wantTemporary: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			src := TokenSourceFunc(func(context.Context) (*Token, error) { return tt.tok, nil })
			c := newTestCache(t, src, clock)
			_, err := c.Token(context.Background())
			var fe *FetchError
			if !errors.As(err, &fe) {
				t.Fatalf("Token error = %v, want a FetchError", err)
			}
			if fe.Temporary != tt.wantTemporary {
				t.Errorf("Temporary = %v, want %v", fe.Temporary, tt.wantTemporary)
			}
		})
	}
}

func TestCacheTokenIsACopy(t *testing.T) {
	clock := newFakeClock()
	tok := &Token{Value: "v1", Expiry: t0.Add(time.Hour), Obtained: t0}
	c := newTestCache(t, TokenSourceFunc(func(context.Context) (*Token, error) { return tok, nil }), clock)
	mustToken(t, c)
	tok.Value = "changed by the source"
	if got := mustToken(t, c); got != "v1" {
		t.Errorf("the source changed the cached token to %q", got)
	}
}

func TestCacheClose(t *testing.T) {
	clock := newFakeClock()
	src := newFakeSource(clock, 12*time.Hour)
	c := NewCachedSource(src, withClock(clock.Now))
	started, release := src.hold()
	defer release()

	errc := make(chan error, 1)
	go func() {
		_, err := c.Token(context.Background())
		errc <- err
	}()
	<-started
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Close returned only after the fetch it canceled ended: nothing of the
	// cache is left running (TestMain's goleak checks the rest).
	if err := src.lastCtx().Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("fetch context after Close: %v, want canceled", err)
	}
	if err := <-errc; !errors.Is(err, ErrCacheClosed) {
		t.Errorf("waiting caller got %v, want ErrCacheClosed", err)
	}
	if _, err := c.Token(context.Background()); !errors.Is(err, ErrCacheClosed) {
		t.Errorf("Token after Close: %v, want ErrCacheClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCacheCloseDropsTheToken(t *testing.T) {
	clock := newFakeClock()
	c := NewCachedSource(newFakeSource(clock, 12*time.Hour), withClock(clock.Now))
	mustToken(t, c)
	c.Close()
	if _, err := c.Token(context.Background()); !errors.Is(err, ErrCacheClosed) {
		t.Errorf("Token after Close: %v, want ErrCacheClosed", err)
	}
	if st := c.Stats(); !st.Expiry.IsZero() {
		t.Errorf("Stats after Close still shows a token expiring at %v", st.Expiry)
	}
}

func TestCacheObserver(t *testing.T) {
	clock := newFakeClock()
	src := newFakeSource(clock, 12*time.Hour)
	var mu sync.Mutex
	var events []CacheEvent
	c := newTestCache(t, src, clock, WithBackoff(time.Second, time.Second), WithObserver(func(ev CacheEvent) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, ev)
	}))
	mustToken(t, c)
	clock.Advance(time.Hour)
	src.setErr(errOutage)
	mustToken(t, c)
	settle(c)
	c.Close()

	want := []CacheEvent{
		{Expiry: t0.Add(12 * time.Hour)},
		{Background: true, Err: errOutage, NextAttempt: t0.Add(time.Hour + 500*time.Millisecond)},
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, events, cmp.Comparer(func(a, b error) bool { return errors.Is(a, b) })); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestCacheNilSourcePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewCachedSource(nil) did not panic")
		}
	}()
	NewCachedSource(nil)
}

func FuzzCacheEntry(f *testing.F) {
	f.Add("token", int64(0), int64(time.Hour))
	f.Add("t\x00k", int64(-time.Hour), int64(48*time.Hour))
	f.Add("", int64(time.Hour), int64(0))
	f.Add("Bearer x", int64(1), int64(-1))
	f.Fuzz(func(t *testing.T, value string, obtained, expiry int64) {
		o := defaultCacheOptions()
		tok := &Token{Value: value, Obtained: t0.Add(time.Duration(obtained)), Expiry: t0.Add(time.Duration(expiry))}
		e, err := newCacheEntry(tok, t0, &o)
		if err != nil {
			return
		}
		v := e.md["authorization"]
		if v != "Bearer "+value || len(e.md) != 1 {
			t.Fatalf("metadata %q does not carry exactly the token", e.md)
		}
		for i := 0; i < len(v); i++ {
			if v[i] < 0x20 || v[i] > 0x7e {
				t.Fatalf("metadata value has byte %#x gRPC would refuse", v[i])
			}
		}
		if e.token.Expiry.Sub(e.token.Obtained) > MaxLifetime {
			t.Fatalf("lifetime %v believed", e.token.Expiry.Sub(e.token.Obtained))
		}
		if e.expireAt <= t0.UnixNano() || e.staleAt > e.expireAt {
			t.Fatalf("stale at %d, unusable at %d, arrived at %d", e.staleAt, e.expireAt, t0.UnixNano())
		}
	})
}
