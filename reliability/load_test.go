package reliability

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/iamtoken/iamtoken-go/grpcauth"
	"github.com/iamtoken/iamtoken-go/iamserver"
	"github.com/iamtoken/iamtoken-go/interceptors"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
)

// TestLoadThroughRefreshAndRotation makes 10,000 calls from 50 goroutines
// over TLS to a server with the library's interceptor chain, while the
// issuer rotates its signing key and the client's cache refreshes its token
// (the new token is signed by the new key, so every server goroutine meets
// an unknown kid at once). No call may fail; the issuer must see exactly one
// exchange per fetch of the cache, and the JWKS endpoint exactly one fetch
// for the new key.
func TestLoadThroughRefreshAndRotation(t *testing.T) {
	const (
		totalCalls      = 10000
		workers         = 50
		rotateAt        = 4000 // calls from here on find the token stale
		refreshedBy     = 8000 // calls from here on start after the refresh
		refreshInterval = time.Second
	)
	iss, exchanges := newIssuer(t, nil)
	sa := iss.CreateServiceAccount("", "load")

	// The issuer's JWKS, counted.
	var jwksFetches atomic.Int64
	issuerHTTP := iss.Server.HTTPHandler()
	jwksServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == iamserver.JWKSPath {
			jwksFetches.Add(1)
		}
		issuerHTTP.ServeHTTP(w, r)
	}))
	defer jwksServer.Close()

	validator, err := interceptors.NewValidator(
		interceptors.WithJWKSURL(jwksServer.URL+iamserver.JWKSPath),
		// An immediate rotation is found by the fetch on an unknown kid,
		// which the default (30 s) would rate-limit this soon after the
		// first fetch.
		interceptors.WithJWKSMinRefreshInterval(200*time.Millisecond),
		interceptors.WithRevocationList(iss.Store),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer validator.Close()
	serverTLS, clientTLS := testTLS(t)
	srv := startServer(t, serverTLS, interceptors.WithValidator(validator))

	src, err := grpcauth.ServiceAccountKeySourceFromBytes(sa.AuthorizedKeyJSON, &grpcauth.ExchangeOptions{
		Endpoint:   iss.GRPCAddr(),
		GRPCMethod: grpcauth.CreateMethod,
		Insecure:   true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	cache := grpcauth.NewCachedSource(src, grpcauth.WithRefreshInterval(refreshInterval))
	defer cache.Close()
	client := dial(t, srv.addr, grpc.WithTransportCredentials(clientTLS), grpcauth.WithTokenSource(cache))

	var (
		tickets  atomic.Int64
		failed   atomic.Int64
		rotated  = make(chan struct{}) // calls from rotateAt wait for it
		refresh  = make(chan struct{}) // calls from refreshedBy wait for it
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := tickets.Add(1) - 1
				if n >= totalCalls {
					return
				}
				switch {
				case n >= refreshedBy:
					<-refresh
				case n >= rotateAt:
					<-rotated
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := client.ListInstances(ctx, &demov1.ListInstancesRequest{})
				cancel()
				if err != nil {
					failed.Add(1)
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
				}
			}
		}()
	}

	// However the test ends, no worker is left waiting at a gate.
	var rotatedOnce, refreshOnce sync.Once
	openRotated := func() { rotatedOnce.Do(func() { close(rotated) }) }
	openRefresh := func() { refreshOnce.Do(func() { close(refresh) }) }
	defer func() {
		openRotated()
		openRefresh()
		wg.Wait()
	}()

	// The controller: once the first phase has begun, wait for the token to
	// go stale, rotate the issuer's key, and let the calls go on.
	start := time.Now()
	if !waitFor(30*time.Second, func() bool { return tickets.Load() >= rotateAt }) {
		t.Fatal("the first phase did not finish")
	}
	first := cache.Stats()
	time.Sleep(time.Until(first.LastRefresh.Add(refreshInterval)))
	oldKid := iss.Server.CurrentKeyID()
	if err := iss.Server.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	jwksBefore := jwksFetches.Load()
	openRotated()
	// The stale token's first caller starts the one refresh; let the last
	// phase start after it completed, so that it surely runs on the new
	// token and key.
	refreshed := waitFor(30*time.Second, func() bool { return cache.Stats().LastRefresh.After(first.LastRefresh) })
	openRefresh()
	wg.Wait()
	elapsed := time.Since(start)
	if !refreshed {
		t.Fatal("the cache did not refresh the stale token")
	}

	st := cache.Stats()
	tokens := srv.tokens()
	accepted := 0
	for _, n := range tokens {
		accepted += n
	}
	t.Logf("%d calls from %d goroutines over TLS in %v: %d accepted, %d failed, %d refused by the interceptors",
		totalCalls, workers, elapsed.Round(time.Millisecond), accepted, failed.Load(), srv.refused())
	t.Logf("cache: fetches %d (background refreshes %d, failures %d); exchanges the issuer answered: %d; tokens seen by the server: %d",
		st.Fetches, st.Refreshes, st.Failures, exchanges.Load(), len(tokens))
	t.Logf("key rotation %s → %s: JWKS fetches %d before it, %d after it",
		oldKid, iss.Server.CurrentKeyID(), jwksBefore, jwksFetches.Load()-jwksBefore)

	if failed.Load() != 0 {
		t.Errorf("%d calls failed, the first with: %v", failed.Load(), firstErr)
	}
	if accepted != totalCalls || srv.refused() != 0 {
		t.Errorf("the server accepted %d calls and refused %d, want %d and 0", accepted, srv.refused(), totalCalls)
	}
	if st.Refreshes < 1 || st.Failures != 0 {
		t.Errorf("cache: %d background refreshes, %d failures; want at least 1 and 0", st.Refreshes, st.Failures)
	}
	if got := exchanges.Load(); got != int64(st.Fetches) {
		t.Errorf("the issuer answered %d exchanges for %d fetches of the cache: want one per fetch", got, st.Fetches)
	}
	if len(tokens) != int(st.Fetches) {
		t.Errorf("the server saw %d tokens for %d fetches", len(tokens), st.Fetches)
	}
	if got := jwksFetches.Load() - jwksBefore; got != 1 {
		t.Errorf("%d JWKS fetches after the rotation, want exactly 1 (the one on the unknown kid)", got)
	}
}
