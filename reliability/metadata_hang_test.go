package reliability

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/grpcauth"
	"github.com/iamtoken/iamtoken-go/iamtest"
	"github.com/iamtoken/iamtoken-go/interceptors"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
)

// TestMetadataServiceHangs makes the VM metadata service accept requests
// and never answer. Calls that have no token fail within their own
// deadlines, with the codes the credentials document (DeadlineExceeded while
// the one fetch runs, then Unavailable during the backoff), and no goroutine
// piles up however many calls are made. Calls that hold a valid token go on
// succeeding while the background refresh hangs.
func TestMetadataServiceHangs(t *testing.T) {
	const (
		workers       = 20
		callDeadline  = 100 * time.Millisecond
		fetchTimeout  = 500 * time.Millisecond // the metadata request's own bound
		hangFor       = 4 * fetchTimeout
		minBackoff    = 200 * time.Millisecond
		maxBackoff    = 400 * time.Millisecond
		goroutineWait = 5 * time.Second
	)
	iss, _ := newIssuer(t, nil)
	validator, err := interceptors.NewValidator(interceptors.WithJWKSURL(iss.JWKSURL()))
	if err != nil {
		t.Fatal(err)
	}
	defer validator.Close()
	srv := startServer(t, nil, interceptors.WithValidator(validator))
	// Fetch the key set now: its keep-alive connection's goroutines must be
	// in the baseline, not counted as piling up.
	if _, err := validator.Validate(context.Background(), iss.Token("ajewarmsa", "service_account")); err != nil {
		t.Fatal(err)
	}

	meta := iamtest.NewMetadataServer()
	defer meta.Close()
	meta.SetToken(iss.Token("ajemetadatasa", "service_account"), time.Hour)

	newClient := func(t *testing.T) (demov1.ComputeServiceClient, *grpcauth.CachedSource) {
		src, err := grpcauth.NewMetadataSource(&grpcauth.MetadataOptions{Addr: meta.Addr(), Timeout: fetchTimeout})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { src.Close() })
		cache := grpcauth.NewCachedSource(src,
			grpcauth.WithRefreshInterval(time.Second),
			grpcauth.WithBackoff(minBackoff, maxBackoff))
		t.Cleanup(func() { cache.Close() })
		conn := dialConn(t, srv.addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpcauth.WithTokenSource(cache, grpcauth.WithInsecureTransportForLocalTesting()))
		connect(t, conn)
		return demov1.NewComputeServiceClient(conn), cache
	}

	t.Run("no token yet", func(t *testing.T) {
		meta.SetDelay(time.Hour) // until the client gives up
		defer meta.SetDelay(0)
		client, cache := newClient(t)
		// The connection is open: the baseline counts gRPC's own goroutines,
		// once both ends have started all of theirs.
		baseline := settledGoroutines()
		callsBefore := meta.Calls()

		start := time.Now()
		codesSeen := map[codes.Code]int{}
		var (
			mu         sync.Mutex
			peak       int
			wg         sync.WaitGroup
			unexpected []string
		)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Since(start) < hangFor {
					ctx, cancel := context.WithTimeout(context.Background(), callDeadline)
					_, err := client.ListInstances(ctx, &demov1.ListInstancesRequest{})
					cancel()
					n := runtime.NumGoroutine()
					mu.Lock()
					code := status.Code(err)
					codesSeen[code]++
					if code != codes.DeadlineExceeded && code != codes.Unavailable {
						unexpected = append(unexpected, fmt.Sprintf("%v: %v", code, err))
					}
					peak = max(peak, n)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		total := 0
		for _, n := range codesSeen {
			total += n
		}

		// The hung fetch ends at its own timeout; then nothing may be left.
		settled := waitFor(goroutineWait, func() bool { return runtime.NumGoroutine() <= baseline })
		after := runtime.NumGoroutine()
		st := cache.Stats()
		metaCalls := meta.Calls() - callsBefore
		bound := maxAttempts(elapsed, minBackoff, maxBackoff)
		t.Logf("%d calls (%d goroutines, deadline %v each) in %v: DeadlineExceeded %d, Unavailable %d, other %d",
			total, workers, callDeadline, elapsed.Round(time.Millisecond),
			codesSeen[codes.DeadlineExceeded], codesSeen[codes.Unavailable], len(unexpected))
		t.Logf("cache fetches %d (backoff allows at most %d), failures %d; requests that reached the hung metadata service: %d",
			st.Fetches, bound, st.Failures, metaCalls)
		t.Logf("goroutines: %d before, peak %d during (the %d callers included), %d after",
			baseline, peak, workers, after)

		if len(unexpected) > 0 {
			t.Errorf("calls failed with codes the credentials do not document for a hung source: %q", unexpected)
		}
		if codesSeen[codes.DeadlineExceeded] == 0 {
			t.Errorf("no call ended at its own deadline while the fetch hung")
		}
		if int(st.Fetches) > bound {
			t.Errorf("%d fetches from the metadata service in %v, backoff allows %d", st.Fetches, elapsed, bound)
		}
		if !settled {
			buf := make([]byte, 1<<20)
			t.Errorf("goroutines piled up: %d before the calls, %d after\n%s", baseline, after, buf[:runtime.Stack(buf, true)])
		}
	})

	t.Run("valid token, refresh hangs", func(t *testing.T) {
		client, cache := newClient(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := client.ListInstances(ctx, &demov1.ListInstancesRequest{}); err != nil {
			t.Fatalf("first call: %v", err)
		}
		meta.SetDelay(time.Hour)
		defer meta.SetDelay(0)
		// Past the refresh interval every call starts (or finds) a refresh,
		// which hangs until the fetch timeout.
		stale := cache.Stats().LastRefresh.Add(time.Second)
		time.Sleep(time.Until(stale))
		calls, failed := 0, 0
		for end := time.Now().Add(3 * fetchTimeout); time.Now().Before(end); calls++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if _, err := client.ListInstances(ctx, &demov1.ListInstancesRequest{}); err != nil {
				failed++
				t.Errorf("call with a valid token failed while the refresh hung: %v", err)
			}
			cancel()
			time.Sleep(5 * time.Millisecond)
		}
		st := cache.Stats()
		t.Logf("%d calls while the refresh hung, %d failed; cache fetches %d, failures %d, background refreshes %d",
			calls, failed, st.Fetches, st.Failures, st.Refreshes)
		if st.Failures == 0 {
			t.Errorf("no refresh failed: the metadata service did not hang")
		}
	})
}

// settledGoroutines answers the goroutine count once it has stayed the same
// for 100 ms: a connection that just became ready may still be starting the
// server end's goroutines.
func settledGoroutines() int {
	n, stable := runtime.NumGoroutine(), 0
	for deadline := time.Now().Add(5 * time.Second); stable < 10 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		if m := runtime.NumGoroutine(); m != n {
			n, stable = m, 0
			continue
		}
		stable++
	}
	return n
}
