package reliability

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/iamtoken/iamtoken-go/grpcauth"
	"github.com/iamtoken/iamtoken-go/interceptors"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
)

// TestIssuerOutage takes the issuer down (every connection to it reset) for
// three refresh intervals while clients keep calling a service. No call may
// fail, since the cached token stays valid for hours; the cache must retry
// with backoff, not in a loop, and recover by itself once the issuer is back.
func TestIssuerOutage(t *testing.T) {
	const (
		refreshInterval = time.Second // the cache's minimum gap between refreshes
		outage          = 3 * refreshInterval
		minBackoff      = 100 * time.Millisecond
		maxBackoff      = 800 * time.Millisecond
		workers         = 8
	)
	iss, exchanges := newIssuer(t, nil)
	sa := iss.CreateServiceAccount("", "outage")
	issuerProxy := newFaultProxy(t, iss.GRPCAddr())

	src, err := grpcauth.ServiceAccountKeySourceFromBytes(sa.AuthorizedKeyJSON, &grpcauth.ExchangeOptions{
		Endpoint:    issuerProxy.Addr(),
		GRPCMethod:  grpcauth.CreateMethod,
		Insecure:    true,
		DialOptions: []grpc.DialOption{fastReconnect},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var (
		eventsMu sync.Mutex
		events   []grpcauth.CacheEvent
	)
	cache := grpcauth.NewCachedSource(src,
		grpcauth.WithRefreshInterval(refreshInterval),
		grpcauth.WithBackoff(minBackoff, maxBackoff),
		grpcauth.WithObserver(func(e grpcauth.CacheEvent) {
			eventsMu.Lock()
			events = append(events, e)
			eventsMu.Unlock()
		}))
	defer cache.Close()

	validator, err := interceptors.NewValidator(interceptors.WithJWKSURL(iss.JWKSURL()))
	if err != nil {
		t.Fatal(err)
	}
	defer validator.Close()
	srv := startServer(t, nil, interceptors.WithValidator(validator))
	client := dial(t, srv.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpcauth.WithTokenSource(cache, grpcauth.WithInsecureTransportForLocalTesting()))

	// Calls run from several goroutines until stop is closed.
	var calls, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := client.ListInstances(ctx, &demov1.ListInstancesRequest{})
				cancel()
				calls.Add(1)
				if err != nil {
					failed.Add(1)
					t.Errorf("call failed: %v", err)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	stopCalls := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	defer stopCalls()

	if !waitFor(5*time.Second, func() bool { return calls.Load() >= workers && cache.Stats().Fetches >= 1 }) {
		t.Fatal("no call got through before the outage")
	}
	before := cache.Stats()
	exchangesBefore := exchanges.Load()

	// The outage: every connection to the issuer is reset, the open one too.
	issuerProxy.setMode(modeRefuse)
	outageStart := time.Now()
	time.Sleep(outage)
	during := cache.Stats()
	callsDuring := calls.Load()
	issuerProxy.setMode(modePass)
	window := time.Since(outageStart)

	// Recovery, with nothing but the calls to drive it.
	if !waitFor(10*time.Second, func() bool {
		s := cache.Stats()
		return s.ConsecutiveFailures == 0 && s.LastRefresh.After(outageStart)
	}) {
		t.Fatalf("the cache did not recover within 10s of the issuer's return: %+v", cache.Stats())
	}
	recovered := time.Since(outageStart)
	stopCalls()
	after := cache.Stats()

	failures := during.Failures - before.Failures
	attempts := during.Fetches - before.Fetches
	bound := maxAttempts(window, minBackoff, maxBackoff)
	t.Logf("outage %v (%.1f refresh intervals): %d calls during it, %d calls in all, %d failed",
		window.Round(time.Millisecond), float64(window)/float64(refreshInterval), callsDuring, calls.Load(), failed.Load())
	t.Logf("fetch attempts during the outage: %d (%d failed; backoff allows at most %d), connections reset by the issuer: %d",
		attempts, failures, bound, issuerProxy.refused.Load())
	t.Logf("recovered %v after the outage began; cache totals: fetches %d, failures %d, background refreshes %d; exchanges the issuer answered: %d",
		recovered.Round(time.Millisecond), after.Fetches, after.Failures, after.Refreshes, exchanges.Load())

	if got := failed.Load(); got != 0 {
		t.Errorf("%d of %d calls failed while the cached token was valid", got, calls.Load())
	}
	if failures < 2 {
		t.Errorf("the cache tried %d times in an outage of %.1f refresh intervals, want at least 2", failures, float64(window)/float64(refreshInterval))
	}
	if int(attempts) > bound {
		t.Errorf("the cache started %d fetches in %v; its backoff allows at most %d", attempts, window, bound)
	}
	if after.Fetches-during.Fetches == 0 || exchanges.Load() == exchangesBefore {
		t.Errorf("no exchange reached the issuer after it came back")
	}
	// Every fetch ran in the background: nobody ever waited for a token.
	eventsMu.Lock()
	defer eventsMu.Unlock()
	for i, e := range events {
		if i > 0 && !e.Background {
			t.Errorf("fetch %d was not a background refresh: a caller had no valid token", i+1)
		}
	}
}
