package interceptors

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// jwksSource is a key set fetched from the issuer's JWKS URL.
//
// Why not keyfunc/jwkset's HTTP storage: we need a size limit on the fetched
// document, fail-fast rate limiting of unknown-kid refreshes (callers never
// queue behind a limiter), one shared fetch whatever the number of waiters,
// each waiter bounded by its own context, and a signal when a key leaves the
// set so that its cached tokens go too.
type jwksSource struct {
	url          string
	client       *http.Client
	now          func() time.Time
	refreshEvery time.Duration
	minRefresh   time.Duration
	onChange     func() // called after keys changed and some key left
	ctx          context.Context
	cancel       context.CancelFunc
	wg           sync.WaitGroup // the refresh loop and fetches in flight
	keys         atomic.Pointer[map[string]*keyRecord]

	// mu guards flight, lastFetch, lastErr and closed.
	mu        sync.Mutex
	flight    *fetchCall // the fetch in progress, if any
	lastFetch time.Time  // when the last fetch started
	lastErr   error      // how the last fetch ended
	closed    bool
}

// fetchCall is one fetch of the key set, shared by everyone waiting for it.
type fetchCall struct {
	done chan struct{}
	err  error // set before done is closed
}

func newJWKSSource(o *options, onChange func()) *jwksSource {
	ctx, cancel := context.WithCancel(context.Background())
	s := &jwksSource{
		url:          o.jwksURL,
		client:       o.httpClient,
		now:          o.now,
		refreshEvery: o.jwksRefresh,
		minRefresh:   o.jwksMinRefresh,
		onChange:     onChange,
		ctx:          ctx,
		cancel:       cancel,
	}
	empty := map[string]*keyRecord{}
	s.keys.Store(&empty)
	s.wg.Add(1)
	go s.loop()
	return s
}

// loop fetches the key set at once, then every refreshEvery, retrying after
// minRefresh when a fetch failed.
func (s *jwksSource) loop() {
	defer s.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		c, _ := s.startFetch(true)
		if c == nil {
			return
		}
		select {
		case <-s.ctx.Done():
			return
		case <-c.done:
		}
		next := s.refreshEvery
		if c.err != nil {
			next = min(s.minRefresh, s.refreshEvery)
		}
		t.Reset(next)
	}
}

func (s *jwksSource) lookup(ctx context.Context, kid string) (*keyRecord, error) {
	if r, ok := (*s.keys.Load())[kid]; ok {
		return r, nil
	}
	c, lastErr := s.startFetch(false)
	if c == nil {
		// Refreshed too recently: an unknown kid costs no fetch. If that
		// fetch failed, the kid may well be in the set we could not get.
		if lastErr != nil {
			return nil, fmt.Errorf("%w: kid is not in the keys fetched last, and the key set could not be fetched: %w", ErrUnavailable, lastErr)
		}
		return nil, errUnknownKID
	}
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for the key set: %w", ErrUnavailable, ctx.Err())
	case <-c.done:
	}
	if r, ok := (*s.keys.Load())[kid]; ok {
		return r, nil
	}
	if c.err != nil {
		return nil, fmt.Errorf("%w: kid is not in the keys fetched last, and the key set could not be fetched: %w", ErrUnavailable, c.err)
	}
	return nil, errUnknownKID
}

// startFetch joins the fetch in progress or starts one. Unless force is set,
// it starts none within minRefresh of the last one and returns nil and the
// last fetch's error. It returns nil once the source is closed.
func (s *jwksSource) startFetch(force bool) (*fetchCall, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil
	}
	if s.flight != nil {
		return s.flight, nil
	}
	now := s.now()
	if !force && !s.lastFetch.IsZero() && now.Sub(s.lastFetch) < s.minRefresh {
		return nil, s.lastErr
	}
	s.lastFetch = now
	c := &fetchCall{done: make(chan struct{})}
	s.flight = c
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := s.fetch()
		s.mu.Lock()
		s.flight = nil
		s.lastErr = err
		s.mu.Unlock()
		c.err = err
		close(c.done)
	}()
	return c, nil
}

// fetch gets the key set and installs it. Keys whose kid and key are
// unchanged keep their record, so their cached tokens stay; the others are
// marked removed before the new set is visible.
func (s *jwksSource) fetch() error {
	ctx, cancel := context.WithTimeout(s.ctx, jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return fmt.Errorf("interceptors: fetch key set: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("interceptors: fetch key set: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("interceptors: fetch key set: HTTP status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("interceptors: fetch key set: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return errors.New("interceptors: fetch key set: larger than 1 MiB")
	}
	fresh, err := parseJWKS(body)
	if err != nil {
		return err
	}
	// Only one fetch runs at a time (flight), so nobody else writes keys.
	old := *s.keys.Load()
	removed := false
	for kid, r := range old {
		if n, ok := fresh[kid]; ok && n.alg == r.alg && publicKeysEqual(n.key, r.key) {
			fresh[kid] = r
			continue
		}
		r.removed.Store(true)
		removed = true
	}
	s.keys.Store(&fresh)
	if removed && s.onChange != nil {
		s.onChange()
	}
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ka, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ka.Equal(b)
}

// close stops the loop and waits for fetches in flight.
func (s *jwksSource) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}
