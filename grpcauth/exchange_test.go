package grpcauth_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/iamtoken/iamtoken-go/grpcauth"
	"github.com/iamtoken/iamtoken-go/iamtest"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

// transport is one way to reach the fake token endpoint.
type transport struct {
	name  string
	opts  func(ep *iamtest.TokenEndpoint) *grpcauth.ExchangeOptions
	calls func(c iamtest.EndpointCalls) int
}

var transports = []transport{
	{
		name: "gRPC, reference method name (default)",
		opts: func(ep *iamtest.TokenEndpoint) *grpcauth.ExchangeOptions {
			return &grpcauth.ExchangeOptions{Endpoint: ep.GRPCAddr(), Insecure: true}
		},
		calls: func(c iamtest.EndpointCalls) int { return c.ReferenceGRPC },
	},
	{
		name: "gRPC, this module's method name",
		opts: func(ep *iamtest.TokenEndpoint) *grpcauth.ExchangeOptions {
			return &grpcauth.ExchangeOptions{Endpoint: ep.GRPCAddr(), Insecure: true, GRPCMethod: grpcauth.CreateMethod}
		},
		calls: func(c iamtest.EndpointCalls) int { return c.GRPC },
	},
	{
		name: "REST",
		opts: func(ep *iamtest.TokenEndpoint) *grpcauth.ExchangeOptions {
			return &grpcauth.ExchangeOptions{Endpoint: ep.RESTURL(), Insecure: true}
		},
		calls: func(c iamtest.EndpointCalls) int { return c.REST },
	},
}

// closer is what every exchanging source is.
type closer interface {
	grpcauth.TokenSource
	Close() error
}

func newKeySource(t *testing.T, opts *grpcauth.ExchangeOptions) closer {
	t.Helper()
	src, err := grpcauth.ServiceAccountKeySourceFromBytes(testKey().JSON(), opts)
	if err != nil {
		t.Fatalf("ServiceAccountKeySourceFromBytes: %v", err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

func newOAuthSource(t *testing.T, oauth string, opts *grpcauth.ExchangeOptions) closer {
	t.Helper()
	src, err := grpcauth.NewOAuthSource(oauth, opts)
	if err != nil {
		t.Fatalf("NewOAuthSource: %v", err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

func TestExchange(t *testing.T) {
	const oauth = "y0_oauth-token-of-a-user"
	proofs := []struct {
		name        string
		source      func(t *testing.T, opts *grpcauth.ExchangeOptions) closer
		wantAccount string
	}{
		{"service account key", newKeySource, "ajesa1"},
		{"OAuth token", func(t *testing.T, o *grpcauth.ExchangeOptions) closer { return newOAuthSource(t, oauth, o) }, "ajeuser"},
	}
	for _, tr := range transports {
		for _, p := range proofs {
			t.Run(tr.name+"/"+p.name, func(t *testing.T) {
				ep := iamtest.NewTokenEndpoint()
				defer ep.Close()
				ep.AddKeyFile(testKey())
				ep.AddOAuthToken(oauth, "ajeuser")
				ep.SetLifetime(2 * time.Hour)
				src := p.source(t, tr.opts(ep))

				for i := 0; i < 3; i++ {
					tok, err := src.Token(context.Background())
					if err != nil {
						t.Fatalf("Token: %v (endpoint: %s)", err, ep.LastRefusal())
					}
					if account, ok := ep.Subject(tok.Value); !ok || account != p.wantAccount {
						t.Errorf("token belongs to %q (issued: %v), want %q", account, ok, p.wantAccount)
					}
					// The expiry is the endpoint's, which issued it just
					// before the client noted Obtained.
					if lt := tok.Expiry.Sub(tok.Obtained); lt > 2*time.Hour || lt < 2*time.Hour-time.Minute {
						t.Errorf("lifetime %s, want about 2h", lt)
					}
				}
				c := ep.Calls()
				if got := tr.calls(c); got != 3 || c.Refused != 0 {
					t.Errorf("endpoint calls %+v, want 3 of this kind and none refused", c)
				}
			})
		}
	}
}

func TestExchangeReusesOneConnection(t *testing.T) {
	ep := iamtest.NewTokenEndpoint()
	defer ep.Close()
	ep.AddKeyFile(testKey())

	t.Run("gRPC", func(t *testing.T) {
		var dials atomic.Int32
		opts := &grpcauth.ExchangeOptions{Endpoint: ep.GRPCAddr(), Insecure: true, DialOptions: []grpc.DialOption{
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				dials.Add(1)
				return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			}),
		}}
		src := newKeySource(t, opts)
		for i := 0; i < 3; i++ {
			if _, err := src.Token(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if got := dials.Load(); got != 1 {
			t.Errorf("%d dials for 3 exchanges, want 1", got)
		}
	})
	t.Run("REST", func(t *testing.T) {
		src := newKeySource(t, &grpcauth.ExchangeOptions{Endpoint: ep.RESTURL(), Insecure: true})
		for i := 0; i < 3; i++ {
			if _, err := src.Token(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if got := ep.Calls().RESTConnections; got != 1 {
			t.Errorf("%d connections for 3 exchanges, want 1", got)
		}
	})
}

func TestExchangeFailures(t *testing.T) {
	tests := []struct {
		name          string
		setup         func(ep *iamtest.TokenEndpoint, opts *grpcauth.ExchangeOptions)
		ctxTimeout    time.Duration
		wantTemporary bool
		wantErr       string
	}{
		{
			name:          "unavailable",
			setup:         func(ep *iamtest.TokenEndpoint, _ *grpcauth.ExchangeOptions) { ep.FailNext(1, codes.Unavailable) },
			wantTemporary: true,
			wantErr:       "unavailable",
		},
		{
			name:          "rate limited",
			setup:         func(ep *iamtest.TokenEndpoint, _ *grpcauth.ExchangeOptions) { ep.FailNext(1, codes.ResourceExhausted) },
			wantTemporary: true,
			wantErr:       "injected failure",
		},
		{
			name:          "internal error",
			setup:         func(ep *iamtest.TokenEndpoint, _ *grpcauth.ExchangeOptions) { ep.FailNext(1, codes.Internal) },
			wantTemporary: true,
			wantErr:       "injected failure",
		},
		{
			name:    "permission denied",
			setup:   func(ep *iamtest.TokenEndpoint, _ *grpcauth.ExchangeOptions) { ep.FailNext(1, codes.PermissionDenied) },
			wantErr: "refused",
		},
		{
			name:    "unknown key",
			setup:   func(*iamtest.TokenEndpoint, *grpcauth.ExchangeOptions) {},
			wantErr: `unknown kid "ajekey1"`,
		},
		{
			name: "wrong audience",
			setup: func(ep *iamtest.TokenEndpoint, o *grpcauth.ExchangeOptions) {
				ep.AddKeyFile(testKey())
				ep.SetAudience("https://issuer.test/iam/v1/tokens")
			},
			wantErr: "aud",
		},
		{
			name: "slow answer",
			setup: func(ep *iamtest.TokenEndpoint, _ *grpcauth.ExchangeOptions) {
				ep.AddKeyFile(testKey())
				ep.SetDelay(time.Hour)
			},
			ctxTimeout:    50 * time.Millisecond,
			wantTemporary: true,
			wantErr:       "deadline",
		},
		{
			name: "slow answer, exchange timeout",
			setup: func(ep *iamtest.TokenEndpoint, o *grpcauth.ExchangeOptions) {
				ep.AddKeyFile(testKey())
				ep.SetDelay(time.Hour)
				o.Timeout = 50 * time.Millisecond
			},
			wantTemporary: true,
			wantErr:       "deadline",
		},
	}
	for _, tr := range transports {
		for _, tt := range tests {
			t.Run(tr.name+"/"+tt.name, func(t *testing.T) {
				ep := iamtest.NewTokenEndpoint()
				defer ep.Close()
				opts := tr.opts(ep)
				tt.setup(ep, opts)
				src := newKeySource(t, opts)
				fe, err := fetchError(t, src, tt.ctxTimeout)
				if fe.Temporary != tt.wantTemporary {
					t.Errorf("Temporary = %v, want %v (%v)", fe.Temporary, tt.wantTemporary, err)
				}
				if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tt.wantErr)) {
					t.Errorf("error %q does not mention %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "eyJ") {
					t.Errorf("error %q contains a JWT", err)
				}
			})
		}
	}
}

func TestOAuthRefusedIsFinalAndRedacted(t *testing.T) {
	const oauth = "y0_not-known-to-the-endpoint"
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ep := iamtest.NewTokenEndpoint()
			defer ep.Close()
			src := newOAuthSource(t, oauth, tr.opts(ep))
			_, err := src.Token(context.Background())
			if err == nil || grpcauth.IsTemporary(err) || !strings.Contains(err.Error(), "unknown OAuth token") {
				t.Fatalf("error %v, want a final one about the unknown OAuth token", err)
			}
			if strings.Contains(err.Error(), oauth) {
				t.Errorf("error %q contains the OAuth token", err)
			}
		})
	}
}

func TestExchangeConfig(t *testing.T) {
	tests := []struct {
		name    string
		opts    *grpcauth.ExchangeOptions
		wantErr string
	}{
		{"defaults", nil, ""},
		{"REST over TLS", &grpcauth.ExchangeOptions{Endpoint: "https://iam.example"}, ""},
		{"gRPC dns target", &grpcauth.ExchangeOptions{Endpoint: "dns:///iam.example:443"}, ""},
		{"loopback cleartext gRPC", &grpcauth.ExchangeOptions{Endpoint: "127.0.0.1:1", Insecure: true}, ""},
		{"loopback cleartext REST", &grpcauth.ExchangeOptions{Endpoint: "http://localhost:1", Insecure: true}, ""},
		{"cleartext gRPC to a remote host", &grpcauth.ExchangeOptions{Endpoint: "iam.example:443", Insecure: true}, "only allowed for loopback"},
		{"cleartext REST to a remote host", &grpcauth.ExchangeOptions{Endpoint: "http://iam.example", Insecure: true}, "only allowed for loopback"},
		{"http without Insecure", &grpcauth.ExchangeOptions{Endpoint: "http://127.0.0.1:1"}, "is not https"},
		{"unknown scheme", &grpcauth.ExchangeOptions{Endpoint: "ftp://iam.example"}, "scheme not supported"},
		{"cleartext over a Unix socket", &grpcauth.ExchangeOptions{Endpoint: "unix:///run/iam.sock", Insecure: true}, ""},
		{"cleartext passthrough to loopback", &grpcauth.ExchangeOptions{Endpoint: "passthrough:///127.0.0.1:1", Insecure: true}, ""},
		{"cleartext dns to a remote host", &grpcauth.ExchangeOptions{Endpoint: "dns:///iam.example:443", Insecure: true}, "only allowed for loopback"},
		{"user info in the URL", &grpcauth.ExchangeOptions{Endpoint: "https://u:p@iam.example"}, "user information"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := grpcauth.NewOAuthSource("y0_token", tt.opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewOAuthSource: %v", err)
				}
				if err := src.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
				return
			}
			if err == nil {
				src.Close()
				t.Fatalf("NewOAuthSource succeeded, want an error mentioning %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || grpcauth.IsTemporary(err) {
				t.Errorf("error %v, want a final one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

// TestExchangeOverTLS checks that the default transport is TLS: it trusts
// the configured roots and nothing else.
func TestExchangeOverTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"iamToken":"t1.tls","expiresAt":%q}`, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	}))
	defer srv.Close()
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()

	src := newOAuthSource(t, "y0_token", &grpcauth.ExchangeOptions{Endpoint: srv.URL, TLSConfig: roots})
	if tok, err := src.Token(context.Background()); err != nil || tok.Value != "t1.tls" {
		t.Fatalf("Token = %v, %v; want t1.tls", tok, err)
	}
	untrusting := newOAuthSource(t, "y0_token", &grpcauth.ExchangeOptions{Endpoint: srv.URL})
	if _, err := untrusting.Token(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Token with the system roots: %v, want a certificate error", err)
	}
}

func TestRESTMalformedAnswers(t *testing.T) {
	const oauth = "y0_secret-oauth-token"
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	tests := []struct {
		name          string
		status        int
		body          string
		wantErr       string
		wantTemporary bool
	}{
		{"empty body", 200, "", "not a JSON object", false},
		{"HTML", 200, "<html>hi</html>", "not a JSON object", false},
		{"JSON array", 200, `[{"iamToken":"t"}]`, "not a JSON object", false},
		{"truncated", 200, `{"iamToken":"t1.abc","expi`, "not valid JSON", false},
		{"trailing data", 200, `{"iamToken":"t1.abc","expiresAt":"` + future + `"} {}`, "unexpected data after the JSON object", false},
		{"missing iamToken", 200, `{"expiresAt":"` + future + `"}`, "iamToken is missing", false},
		{"empty iamToken", 200, `{"iamToken":"","expiresAt":"` + future + `"}`, "iamToken is empty", false},
		{"iamToken with a newline", 200, `{"iamToken":"t1.a\nb","expiresAt":"` + future + `"}`, "iamToken has a byte that is not printable ASCII", false},
		{"iamToken is a number", 200, `{"iamToken":42,"expiresAt":"` + future + `"}`, `field "iamToken" has the wrong type`, false},
		{"iamToken too long", 200, `{"iamToken":"` + strings.Repeat("a", grpcauth.MaxTokenSize+1) + `","expiresAt":"` + future + `"}`, "iamToken is longer than", false},
		{"missing expiresAt", 200, `{"iamToken":"t1.abc"}`, "expiresAt is missing", false},
		{"expiresAt not RFC 3339", 200, `{"iamToken":"t1.abc","expiresAt":"tomorrow"}`, "expiresAt is not an RFC 3339 time", false},
		{"expiresAt is a number", 200, `{"iamToken":"t1.abc","expiresAt":1700000000}`, `field "expiresAt" has the wrong type`, false},
		{"already expired", 200, `{"iamToken":"t1.abc","expiresAt":"2020-01-01T00:00:00Z"}`, "token has already expired", false},
		{"body too large", 200, `{"iamToken":"t1.abc","pad":"` + strings.Repeat("x", 70<<10) + `"}`, "larger than", false},
		{"server error echoing the request", 500, `{"code":13,"message":"bad request: ` + oauth + `"}`, "HTTP 500: bad request: [redacted]", true},
		{"bad gateway HTML", 502, `<html>bad gateway</html>`, "HTTP 502", true},
		{"rate limited", 429, `{"code":8,"message":"slow down"}`, "HTTP 429: slow down", true},
		{"refused", 401, `{"code":16,"message":"The token is invalid"}`, "HTTP 401: The token is invalid", false},
		{"redirect", 302, ``, "HTTP 302", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.status == 302 {
					w.Header().Set("Location", "http://127.0.0.1:1/elsewhere")
				}
				w.WriteHeader(tt.status)
				fmt.Fprint(w, tt.body)
			}))
			defer srv.Close()
			src := newOAuthSource(t, oauth, &grpcauth.ExchangeOptions{Endpoint: srv.URL, Insecure: true})
			tok, err := src.Token(context.Background())
			if err == nil {
				t.Fatalf("Token = %v, want an error", tok)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
			if got := grpcauth.IsTemporary(err); got != tt.wantTemporary {
				t.Errorf("IsTemporary = %v, want %v", got, tt.wantTemporary)
			}
			if strings.Contains(err.Error(), oauth) || strings.Contains(err.Error(), "t1.abc") {
				t.Errorf("error %q contains a credential or token", err)
			}
		})
	}
}

// badIssuer answers Create with a fixed response.
type badIssuer struct {
	iamv1.UnimplementedIamTokenServiceServer
	resp *iamv1.IamTokenServiceCreateResponse
}

func (b *badIssuer) Create(context.Context, *iamv1.IamTokenServiceCreateRequest) (*iamv1.IamTokenServiceCreateResponse, error) {
	return b.resp, nil
}

func TestGRPCMalformedAnswers(t *testing.T) {
	future := timestamppb.New(time.Now().Add(time.Hour))
	tests := []struct {
		name    string
		resp    *iamv1.IamTokenServiceCreateResponse
		wantErr string
	}{
		{"empty answer", &iamv1.IamTokenServiceCreateResponse{}, "iam_token is empty"},
		{"no expiry", &iamv1.IamTokenServiceCreateResponse{IamToken: "t1.abc"}, "expires_at is missing"},
		{"invalid timestamp", &iamv1.IamTokenServiceCreateResponse{IamToken: "t1.abc", ExpiresAt: &timestamppb.Timestamp{Nanos: -1}}, "expires_at is not a valid timestamp"},
		{"expired", &iamv1.IamTokenServiceCreateResponse{IamToken: "t1.abc", ExpiresAt: timestamppb.New(time.Unix(1, 0))}, "token has already expired"},
		{"token with a space", &iamv1.IamTokenServiceCreateResponse{IamToken: "t1 abc", ExpiresAt: future}, "iam_token has a byte that is not printable ASCII"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer()
			iamv1.RegisterIamTokenServiceServer(srv, &badIssuer{resp: tt.resp})
			done := make(chan struct{})
			go func() { defer close(done); srv.Serve(lis) }()
			defer func() { srv.Stop(); <-done }()

			src := newOAuthSource(t, "y0_token", &grpcauth.ExchangeOptions{
				Endpoint: lis.Addr().String(), Insecure: true, GRPCMethod: grpcauth.CreateMethod})
			_, err = src.Token(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || grpcauth.IsTemporary(err) {
				t.Fatalf("error %v, want a final one mentioning %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "t1") {
				t.Errorf("error %q contains the token", err)
			}
		})
	}
}

func TestExchangeAfterClose(t *testing.T) {
	ep := iamtest.NewTokenEndpoint()
	defer ep.Close()
	ep.AddKeyFile(testKey())
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			src, err := grpcauth.ServiceAccountKeySourceFromBytes(testKey().JSON(), tr.opts(ep))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := src.Token(context.Background()); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ {
				if err := src.Close(); err != nil {
					t.Fatalf("Close %d: %v", i, err)
				}
			}
			_, err = src.Token(context.Background())
			if err == nil || !strings.Contains(err.Error(), "source is closed") || grpcauth.IsTemporary(err) {
				t.Fatalf("Token after Close: %v, want a final 'source is closed'", err)
			}
		})
	}
}

// TestGRPCExchangeOverTLS checks that gRPC, too, uses TLS unless told
// otherwise.
func TestGRPCExchangeOverTLS(t *testing.T) {
	// httptest makes a certificate for 127.0.0.1 and a pool that trusts it.
	certSrv := httptest.NewTLSServer(http.NotFoundHandler())
	cert := certSrv.TLS.Certificates[0]
	roots := certSrv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	certSrv.Close()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
	iamv1.RegisterIamTokenServiceServer(srv, &badIssuer{resp: &iamv1.IamTokenServiceCreateResponse{
		IamToken: "t1.tls", ExpiresAt: timestamppb.New(time.Now().Add(time.Hour))}})
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(lis) }()
	defer func() { srv.Stop(); <-done }()

	tests := []struct {
		name    string
		opts    *grpcauth.ExchangeOptions
		wantErr string
	}{
		{"trusted roots", &grpcauth.ExchangeOptions{TLSConfig: roots}, ""},
		{"system roots", &grpcauth.ExchangeOptions{}, "certificate"},
		{"cleartext to a TLS server", &grpcauth.ExchangeOptions{Insecure: true}, "Unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Endpoint = lis.Addr().String()
			tt.opts.GRPCMethod = grpcauth.CreateMethod
			src := newOAuthSource(t, "y0_token", tt.opts)
			tok, err := src.Token(context.Background())
			if tt.wantErr == "" {
				if err != nil || tok.Value != "t1.tls" {
					t.Fatalf("Token = %v, %v; want t1.tls", tok, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Token = %v, %v; want an error mentioning %q", tok, err, tt.wantErr)
			}
		})
	}
}

// TestExchangeConcurrentCallers runs many exchanges at once on one source
// (for the race detector: sources must be safe for concurrent use).
func TestExchangeConcurrentCallers(t *testing.T) {
	ep := iamtest.NewTokenEndpoint()
	defer ep.Close()
	ep.AddKeyFile(testKey())
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			src := newKeySource(t, tr.opts(ep))
			const n = 8
			errs := make(chan error, n)
			for i := 0; i < n; i++ {
				go func() {
					_, err := src.Token(context.Background())
					errs <- err
				}()
			}
			for i := 0; i < n; i++ {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// fetchError calls src.Token, within timeout when it is set, and answers the
// FetchError it must fail with.
func fetchError(t *testing.T, src grpcauth.TokenSource, timeout time.Duration) (*grpcauth.FetchError, error) {
	t.Helper()
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	tok, err := src.Token(ctx)
	if err == nil {
		t.Fatalf("Token = %v, want an error", tok)
	}
	var fe *grpcauth.FetchError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v is not a FetchError", err)
	}
	return fe, err
}
