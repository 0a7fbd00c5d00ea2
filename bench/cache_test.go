package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/auth"
	"golang.org/x/oauth2"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/oauth"

	"github.com/iamtoken/iamtoken-go/grpcauth"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
)

// tokenValue is about as long as a real IAM token, so that building the
// header costs what it costs in production.
var tokenValue = "t1." + strings.Repeat("9euelZqJx5KWmJmVlpeUk5vJ", 36)

// callContext is what gRPC hands GetRequestMetadata for a call of an
// IAM-token method over TLS.
func callContext() context.Context {
	return credentials.NewContextWithRequestInfo(context.Background(), credentials.RequestInfo{
		Method: demov1.ComputeService_GetInstance_FullMethodName,
		AuthInfo: credentials.TLSInfo{CommonAuthInfo: credentials.CommonAuthInfo{
			SecurityLevel: credentials.PrivacyAndIntegrity,
		}},
	})
}

// googleAuthCreds is what cloud.google.com/go/auth's grpctransport does per
// call (less its universe-domain check): ask the cached provider, check the
// connection, build the header.
type googleAuthCreds struct{ tp auth.TokenProvider }

func (c googleAuthCreds) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	tok, err := c.tp.Token(ctx)
	if err != nil {
		return nil, err
	}
	ri, _ := credentials.RequestInfoFromContext(ctx)
	if err := credentials.CheckSecurityLevel(ri.AuthInfo, credentials.PrivacyAndIntegrity); err != nil {
		return nil, err
	}
	md := make(map[string]string, 1)
	md["authorization"] = tok.Type + " " + tok.Value
	return md, nil
}

func (googleAuthCreds) RequireTransportSecurity() bool { return true }

type googleAuthProvider func(context.Context) (*auth.Token, error)

func (f googleAuthProvider) Token(ctx context.Context) (*auth.Token, error) { return f(ctx) }

// hotPathCreds returns the three credentials, each holding a fresh token,
// and a function that releases them.
func hotPathCreds(b *testing.B) ([]namedCreds, func()) {
	iam := grpcauth.NewPerRPCCredentials(grpcauth.TokenSourceFunc(func(context.Context) (*grpcauth.Token, error) {
		now := time.Now()
		return &grpcauth.Token{Value: tokenValue, Obtained: now, Expiry: now.Add(12 * time.Hour)}, nil
	}))
	grpcOAuth := oauth.TokenSource{TokenSource: oauth2.ReuseTokenSource(nil, oauth2TokenSource(func() (*oauth2.Token, error) {
		return &oauth2.Token{AccessToken: tokenValue, TokenType: "Bearer", Expiry: time.Now().Add(12 * time.Hour)}, nil
	}))}
	googleAuth := googleAuthCreds{tp: auth.NewCachedTokenProvider(googleAuthProvider(func(context.Context) (*auth.Token, error) {
		return &auth.Token{Value: tokenValue, Type: "Bearer", Expiry: time.Now().Add(12 * time.Hour)}, nil
	}), nil)}
	all := []namedCreds{
		{"iamtoken", iam},
		{"grpc-oauth", grpcOAuth},
		{"google-auth", googleAuth},
	}
	ctx := callContext()
	for _, c := range all {
		// Prime each cache, and check that all build the same header.
		md, err := c.creds.GetRequestMetadata(ctx)
		if err != nil {
			b.Fatalf("%s: %v", c.name, err)
		}
		if got := md["authorization"]; got != "Bearer "+tokenValue {
			b.Fatalf("%s: authorization %.20q…, want the bearer token", c.name, got)
		}
	}
	return all, func() { iam.Close() }
}

type namedCreds struct {
	name  string
	creds credentials.PerRPCCredentials
}

type oauth2TokenSource func() (*oauth2.Token, error)

func (f oauth2TokenSource) Token() (*oauth2.Token, error) { return f() }

// BenchmarkGetRequestMetadata is the per-call cost of putting a cached
// token on a call: ours, grpc-go's oauth.TokenSource over
// oauth2.ReuseTokenSource, and cloud.google.com/go/auth's cached provider.
func BenchmarkGetRequestMetadata(b *testing.B) {
	all, release := hotPathCreds(b)
	defer release()
	ctx := callContext()
	for _, c := range all {
		b.Run(c.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.creds.GetRequestMetadata(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.creds.GetRequestMetadata(ctx); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// The refresh-boundary scenario: boundaryCallers goroutines each call every
// boundaryInterval for boundaryWindow; boundaryRefreshIn into the window the
// token needs refreshing (ours: it turns stale; ReuseTokenSource: it
// expires, as it has no notion of stale), and the source takes
// upstreamLatency to answer.
const (
	boundaryCallers   = 64
	boundaryInterval  = time.Millisecond
	boundaryWindow    = 300 * time.Millisecond
	boundaryRefreshIn = 100 * time.Millisecond
	upstreamLatency   = 100 * time.Millisecond
	// ours spaces refreshes at least a second apart after a fetch, so the
	// primed token is made to turn stale later than that.
	boundaryLead = 1200 * time.Millisecond
)

// BenchmarkRefreshBoundary measures call latency through a refresh, from
// when each call was due (so that a call stuck behind a blocked one counts
// its wait, as an open-loop client would see it). One op is one scenario;
// read the latency and fetch metrics, not ns/op.
func BenchmarkRefreshBoundary(b *testing.B) {
	b.Run("iamtoken", func(b *testing.B) {
		runBoundary(b, func(refreshAt time.Time, fetches *atomic.Int64) (credentials.PerRPCCredentials, func()) {
			first := true
			cache := grpcauth.NewCachedSource(grpcauth.TokenSourceFunc(func(ctx context.Context) (*grpcauth.Token, error) {
				now := time.Now()
				if first { // primed: stale at refreshAt
					first = false
					return &grpcauth.Token{Value: tokenValue, Obtained: now, Expiry: now.Add(12 * time.Hour)}, nil
				}
				fetches.Add(1)
				select {
				case <-time.After(upstreamLatency):
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				now = time.Now()
				return &grpcauth.Token{Value: tokenValue, Obtained: now, Expiry: now.Add(12 * time.Hour)}, nil
			}), grpcauth.WithRefreshInterval(time.Until(refreshAt)))
			return grpcauth.NewPerRPCCredentials(cache), func() { cache.Close() }
		})
	})
	b.Run("oauth2-reuse", func(b *testing.B) {
		runBoundary(b, func(refreshAt time.Time, fetches *atomic.Int64) (credentials.PerRPCCredentials, func()) {
			primed := &oauth2.Token{AccessToken: tokenValue, TokenType: "Bearer", Expiry: refreshAt}
			src := oauth2.ReuseTokenSourceWithExpiry(primed, oauth2TokenSource(func() (*oauth2.Token, error) {
				fetches.Add(1)
				time.Sleep(upstreamLatency)
				return &oauth2.Token{AccessToken: tokenValue, TokenType: "Bearer", Expiry: time.Now().Add(12 * time.Hour)}, nil
			}), time.Nanosecond)
			return oauth.TokenSource{TokenSource: src}, func() {}
		})
	})
}

// runBoundary runs b.N scenarios with credentials from setup, which must
// need a refresh at refreshAt and count its upstream fetches.
func runBoundary(b *testing.B, setup func(refreshAt time.Time, fetches *atomic.Int64) (credentials.PerRPCCredentials, func())) {
	ctx := callContext()
	var all []time.Duration
	var fetches atomic.Int64
	var blocked int
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		refreshAt := time.Now().Add(boundaryLead)
		creds, closeCreds := setup(refreshAt, &fetches)
		if _, err := creds.GetRequestMetadata(ctx); err != nil { // prime
			b.Fatal(err)
		}
		start := refreshAt.Add(-boundaryRefreshIn)
		time.Sleep(time.Until(start))
		b.StartTimer()

		lat := make([][]time.Duration, boundaryCallers)
		blockedBy := make([]int, boundaryCallers)
		var wg sync.WaitGroup
		for g := range boundaryCallers {
			wg.Go(func() {
				lat[g], blockedBy[g] = callOnSchedule(b, ctx, creds, start.Add(time.Duration(g)*boundaryInterval/boundaryCallers))
			})
		}
		wg.Wait()
		b.StopTimer()
		closeCreds()
		for g, l := range lat {
			all = append(all, l...)
			blocked += blockedBy[g]
		}
	}
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[min(len(all)-1, int(p*float64(len(all))))]) }
	b.ReportMetric(pct(0.50), "p50-ns")
	b.ReportMetric(pct(0.99), "p99-ns")
	b.ReportMetric(pct(0.999), "p99.9-ns")
	b.ReportMetric(float64(all[len(all)-1]), "max-ns")
	b.ReportMetric(float64(blocked)/float64(b.N), "blocked-calls/op")
	b.ReportMetric(float64(len(all))/float64(b.N), "calls/op")
	b.ReportMetric(float64(fetches.Load())/float64(b.N), "fetches/op")
}

// callOnSchedule calls creds every boundaryInterval from first until the
// window ends. It returns each call's latency, and how many calls themselves
// ran for half the upstream latency or more: those waited for the fetch (a
// scheduler stall on a busy machine rarely lasts that long within one call).
//
// A call that was due while the previous one still ran counts its latency
// from when it was due, as an open-loop client would see it; one that was
// due when the caller was free counts from when it started, so that a late
// wake-up from sleep is not charged to the credentials.
func callOnSchedule(b *testing.B, ctx context.Context, creds credentials.PerRPCCredentials, first time.Time) (lat []time.Duration, blocked int) {
	end := first.Add(boundaryWindow)
	lat = make([]time.Duration, 0, int(boundaryWindow/boundaryInterval)+1)
	var prevEnd time.Time
	for due := first; due.Before(end); due = due.Add(boundaryInterval) {
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		begin := time.Now()
		from := begin
		if prevEnd.After(due) {
			from = due
		}
		if _, err := creds.GetRequestMetadata(ctx); err != nil {
			b.Error(fmt.Errorf("call due at +%v: %w", due.Sub(first), err))
			return lat, blocked
		}
		prevEnd = time.Now()
		if prevEnd.Sub(begin) >= upstreamLatency/2 {
			blocked++
		}
		lat = append(lat, prevEnd.Sub(from))
	}
	return lat, blocked
}
