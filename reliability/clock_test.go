package reliability

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/grpcauth"
	"github.com/iamtoken/iamtoken-go/iamtest"
	"github.com/iamtoken/iamtoken-go/interceptors"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
)

// skewedIssuer starts the issuer with a wall clock offset from the test's
// (the client's and the server's) by whatever *offset holds.
func skewedIssuer(t *testing.T) (*iamtest.Issuer, *atomic.Int64) {
	t.Helper()
	var offset atomic.Int64
	iss, _ := newIssuer(t, &iamtest.IssuerOptions{
		Now: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) },
	})
	return iss, &offset
}

// TestClockSkewLeeway runs the issuer's clock up to ±5 minutes (and a
// little more) away from the clock the client and the server share, and
// checks exactly what the documented leeways accept: the validator's
// (interceptors.DefaultLeeway, 30 s, configurable up to 5 min with
// WithLeeway) on the token's iat and exp, and the issuer's
// MaxExchangeIATSkew (5 min) on the iat of the JWT a service account signs
// for the exchange.
func TestClockSkewLeeway(t *testing.T) {
	iss, offset := skewedIssuer(t)
	sa := iss.CreateServiceAccount("", "skew")

	servers := map[string]*testServer{}
	for name, leeway := range map[string]time.Duration{"default": interceptors.DefaultLeeway, "5m": 5 * time.Minute} {
		v, err := interceptors.NewValidator(interceptors.WithJWKSURL(iss.JWKSURL()), interceptors.WithLeeway(leeway))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Close() })
		servers[name] = startServer(t, nil, interceptors.WithValidator(v))
	}
	clients := map[string]demov1.ComputeServiceClient{}
	for name, s := range servers {
		clients[name] = dial(t, s.addr)
	}
	call := func(leeway, token string) codes.Code {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		_, err := clients[leeway].ListInstances(ctx, &demov1.ListInstancesRequest{})
		return status.Code(err)
	}

	t.Run("token times", func(t *testing.T) {
		tests := []struct {
			name string
			// issuerAhead is the issuer's clock minus the server's: the
			// token's iat is that far in the server's future (or past).
			issuerAhead time.Duration
			// expiredAgo, if set, mints a token (iat an hour before exp)
			// that the server's clock sees expired that long ago: a server
			// ahead of the client's issuer.
			expiredAgo  time.Duration
			wantDefault codes.Code
			want5m      codes.Code
		}{
			{name: "issuer 5m behind", issuerAhead: -5 * time.Minute, wantDefault: codes.OK, want5m: codes.OK},
			{name: "issuer 20s ahead", issuerAhead: 20 * time.Second, wantDefault: codes.OK, want5m: codes.OK},
			{name: "issuer 1m ahead", issuerAhead: time.Minute, wantDefault: codes.Unauthenticated, want5m: codes.OK},
			{name: "issuer 5m ahead", issuerAhead: 5 * time.Minute, wantDefault: codes.Unauthenticated, want5m: codes.OK},
			{name: "issuer 5m10s ahead", issuerAhead: 5*time.Minute + 10*time.Second, wantDefault: codes.Unauthenticated, want5m: codes.Unauthenticated},
			{name: "expired 20s ago", expiredAgo: 20 * time.Second, wantDefault: codes.OK, want5m: codes.OK},
			{name: "expired 40s ago", expiredAgo: 40 * time.Second, wantDefault: codes.Unauthenticated, want5m: codes.OK},
			{name: "expired 4m50s ago", expiredAgo: 4*time.Minute + 50*time.Second, wantDefault: codes.Unauthenticated, want5m: codes.OK},
			{name: "expired 5m10s ago", expiredAgo: 5*time.Minute + 10*time.Second, wantDefault: codes.Unauthenticated, want5m: codes.Unauthenticated},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				offset.Store(int64(tt.issuerAhead))
				defer offset.Store(0)
				var token string
				if tt.expiredAgo > 0 {
					exp := time.Now().Add(-tt.expiredAgo)
					token = iss.Mint(iamtest.TokenSpec{Subject: "ajeskewsa", IssuedAt: exp.Add(-time.Hour), ExpiresAt: exp})
				} else {
					token = iss.Token("ajeskewsa", "service_account")
				}
				gotDefault, got5m := call("default", token), call("5m", token)
				t.Logf("leeway 30s: %v, leeway 5m: %v", gotDefault, got5m)
				if gotDefault != tt.wantDefault {
					t.Errorf("leeway 30s: code %v, want %v", gotDefault, tt.wantDefault)
				}
				if got5m != tt.want5m {
					t.Errorf("leeway 5m: code %v, want %v", got5m, tt.want5m)
				}
			})
		}
	})

	t.Run("exchange", func(t *testing.T) {
		tests := []struct {
			name string
			// clientAhead is the client's clock minus the issuer's: the
			// signed JWT's iat is that far in the issuer's future.
			clientAhead time.Duration
			wantOK      bool
		}{
			{"client 5m behind", -5 * time.Minute, true},
			{"client 20s ahead", 20 * time.Second, true},
			{"client 40s ahead", 40 * time.Second, true},
			{"client 4m50s ahead", 4*time.Minute + 50*time.Second, true},
			{"client 5m10s ahead", 5*time.Minute + 10*time.Second, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				offset.Store(int64(-tt.clientAhead))
				defer offset.Store(0)
				src, err := grpcauth.ServiceAccountKeySourceFromBytes(sa.AuthorizedKeyJSON,
					&grpcauth.ExchangeOptions{Endpoint: iss.GRPCAddr(), Insecure: true})
				if err != nil {
					t.Fatal(err)
				}
				defer src.Close()
				_, err = src.Token(context.Background())
				t.Logf("exchange: err=%v temporary=%v", err, err != nil && grpcauth.IsTemporary(err))
				if gotOK := err == nil; gotOK != tt.wantOK {
					t.Fatalf("exchange succeeded = %v, want %v (%v)", gotOK, tt.wantOK, err)
				}
				if err != nil && grpcauth.IsTemporary(err) {
					t.Errorf("a refused JWT is a temporary error; retrying cannot cure a clock")
				}
			})
		}
	})
}

// TestWallClockJumpForward is a client that sleeps through its token's
// expiry with nothing running (a suspended VM): its next call must not send
// the expired token, but wait for a new one. The server's validator has no
// leeway, so an expired token would be refused there.
//
// The cache judges expiry by the wall clock; only grpcauth's own tests
// (TestCacheWallClockJump) can move that clock apart from the monotonic one,
// since the clock hook is unexported. Here both advance together, which
// proves that expiry needs no timer or goroutine to take effect.
func TestWallClockJumpForward(t *testing.T) {
	const lifetime = 3 * time.Second
	iss, _ := newIssuer(t, nil)
	v, err := interceptors.NewValidator(interceptors.WithJWKSURL(iss.JWKSURL()), interceptors.WithLeeway(0))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	srv := startServer(t, nil, interceptors.WithValidator(v))

	meta := iamtest.NewMetadataServer()
	defer meta.Close()
	short := iss.Mint(iamtest.TokenSpec{Subject: "ajesuspendsa", TokenID: "short", ExpiresAt: time.Now().Add(lifetime)})
	meta.SetToken(short, lifetime)

	src, err := grpcauth.NewMetadataSource(&grpcauth.MetadataOptions{Addr: meta.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// The margin covers exp's truncation to whole seconds and the time
	// between minting and the client's receipt.
	cache := grpcauth.NewCachedSource(src, grpcauth.WithSafetyMargin(1500*time.Millisecond))
	defer cache.Close()
	client := dial(t, srv.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpcauth.WithTokenSource(cache, grpcauth.WithInsecureTransportForLocalTesting()))
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := client.ListInstances(ctx, &demov1.ListInstancesRequest{})
		return err
	}

	if err := call(); err != nil {
		t.Fatalf("before the jump: %v", err)
	}
	// The "suspend": no call, no timer, until the short token has expired.
	time.Sleep(lifetime + 500*time.Millisecond)
	meta.SetToken(iss.Mint(iamtest.TokenSpec{Subject: "ajesuspendsa", TokenID: "fresh"}), time.Hour)
	if err := call(); err != nil {
		t.Fatalf("after the jump: %v", err)
	}

	got := srv.tokens()
	st := cache.Stats()
	t.Logf("calls accepted per token ID: %v; refused by the server: %d; cache fetches %d, background refreshes %d, metadata requests %d",
		got, srv.refused(), st.Fetches, st.Refreshes, meta.Calls())
	if diff := cmp.Diff(map[string]int{"short": 1, "fresh": 1}, got); diff != "" {
		t.Errorf("calls accepted per token ID (-want +got):\n%s", diff)
	}
	if n := srv.refused(); n != 0 {
		t.Errorf("the server refused %d calls: an expired token was sent", n)
	}
	if st.Refreshes != 0 {
		t.Errorf("the fresh token came from a background refresh, yet no call ran before the jump")
	}
}
