package grpcauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/credentials/local"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/iamtoken/iamtoken-go/authmode"
	"github.com/iamtoken/iamtoken-go/internal/devpki"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
)

// Methods of each auth mode; importing demov1 registers their descriptors.
const (
	iamMethod       = demov1.ComputeService_GetInstance_FullMethodName
	accessKeyMethod = demov1.StorageService_PutObject_FullMethodName
	healthMethod    = "/grpc.health.v1.Health/Check"
)

var (
	secureInfo    = credentials.TLSInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}
	integrityOnly = credentials.TLSInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.IntegrityOnly}}
	plaintext     = credentials.TLSInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}
)

// requestContext is the context gRPC gives GetRequestMetadata for a call of
// method over a connection with info.
func requestContext(method string, info credentials.AuthInfo) context.Context {
	return credentials.NewContextWithRequestInfo(context.Background(), credentials.RequestInfo{Method: method, AuthInfo: info})
}

func TestCredentialsByAuthMode(t *testing.T) {
	storageNone, err := authmode.New(authmode.WithOverride("iamtoken.demo.v1.StorageService", authmode.None))
	if err != nil {
		t.Fatal(err)
	}
	computeAccessKey, err := authmode.New(authmode.WithOverride(iamMethod, authmode.AccessKey))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		opts        []CredentialsOption
		ctx         context.Context
		want        map[string]string
		wantCode    codes.Code
		wantFetches int64
	}{
		{
			name:        "IAM-token method gets the bearer token",
			ctx:         requestContext(iamMethod, secureInfo),
			want:        map[string]string{"authorization": "Bearer token-1"},
			wantFetches: 1,
		},
		{
			name: "access-key method gets nothing and fetches nothing",
			ctx:  requestContext(accessKeyMethod, secureInfo),
		},
		{
			name: "health check gets nothing and fetches nothing",
			ctx:  requestContext(healthMethod, secureInfo),
		},
		{
			name: "none over plaintext is fine: nothing is sent",
			ctx:  requestContext(healthMethod, plaintext),
		},
		{
			name:        "unknown method is an IAM-token method",
			ctx:         requestContext("/other.v1.Service/Call", secureInfo),
			want:        map[string]string{"authorization": "Bearer token-1"},
			wantFetches: 1,
		},
		{
			name:     "plaintext connection: refused before any fetch",
			ctx:      requestContext(iamMethod, plaintext),
			wantCode: codes.Unauthenticated,
		},
		{
			name:     "integrity without privacy: refused",
			ctx:      requestContext(iamMethod, integrityOnly),
			wantCode: codes.Unauthenticated,
		},
		{
			name:     "no request info: refused",
			ctx:      context.Background(),
			wantCode: codes.Unauthenticated,
		},
		{
			name:        "insecure opt-in sends over plaintext",
			opts:        []CredentialsOption{WithInsecureTransportForLocalTesting()},
			ctx:         requestContext(iamMethod, plaintext),
			want:        map[string]string{"authorization": "Bearer token-1"},
			wantFetches: 1,
		},
		{
			name: "resolver override: none",
			opts: []CredentialsOption{WithAuthModeResolver(storageNone)},
			ctx:  requestContext(accessKeyMethod, secureInfo),
		},
		{
			name: "resolver override: access key",
			opts: []CredentialsOption{WithAuthModeResolver(computeAccessKey)},
			ctx:  requestContext(iamMethod, secureInfo),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			src := newFakeSource(clock, 12*time.Hour)
			creds := NewPerRPCCredentials(src, append(tt.opts, WithCacheOptions(withClock(clock.Now)))...)
			defer creds.Close()

			got, err := creds.GetRequestMetadata(tt.ctx, "https://example.test/svc")
			if code := status.Code(err); code != tt.wantCode {
				t.Fatalf("GetRequestMetadata code = %v (%v), want %v", code, err, tt.wantCode)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("metadata (-want +got):\n%s", diff)
			}
			if n := src.calls.Load(); n != tt.wantFetches {
				t.Errorf("source called %d times, want %d", n, tt.wantFetches)
			}
		})
	}
}

func TestCredentialsRequireTransportSecurity(t *testing.T) {
	src := newFakeSource(newFakeClock(), time.Hour)
	tests := []struct {
		name string
		opts []CredentialsOption
		want bool
	}{
		{name: "default", want: true},
		{name: "insecure opt-in", opts: []CredentialsOption{WithInsecureTransportForLocalTesting()}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			creds := NewPerRPCCredentials(src, tt.opts...)
			defer creds.Close()
			if got := creds.RequireTransportSecurity(); got != tt.want {
				t.Errorf("RequireTransportSecurity() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCredentialsErrorCodes(t *testing.T) {
	// Codes gRPC rewrites to Internal when call credentials return them
	// (gRFC A54); none may come out of GetRequestMetadata.
	rewritten := map[codes.Code]bool{
		codes.InvalidArgument: true, codes.NotFound: true, codes.AlreadyExists: true,
		codes.FailedPrecondition: true, codes.Aborted: true, codes.OutOfRange: true, codes.DataLoss: true,
	}
	expired, cancelExpired := context.WithDeadline(requestContext(iamMethod, secureInfo), t0)
	defer cancelExpired()
	canceled, cancel := context.WithCancel(requestContext(iamMethod, secureInfo))
	cancel()

	tests := []struct {
		name     string
		src      TokenSource
		ctx      context.Context
		closed   bool
		wantCode codes.Code
	}{
		{
			name:     "source unreachable",
			src:      failingSource(&FetchError{Source: "metadata service", Temporary: true, Err: errors.New("connection refused")}),
			wantCode: codes.Unavailable,
		},
		{
			name:     "credentials refused",
			src:      failingSource(&FetchError{Source: "token exchange", Err: errors.New("invalid key")}),
			wantCode: codes.Unauthenticated,
		},
		{
			name:     "wrapped refusal",
			src:      failingSource(fmt.Errorf("loading key: %w", &FetchError{Source: "key file", Err: errors.New("bad PEM")})),
			wantCode: codes.Unauthenticated,
		},
		{
			name:     "plain error counts as an outage",
			src:      failingSource(errors.New("boom")),
			wantCode: codes.Unavailable,
		},
		{
			name:     "source says NotFound: still Unavailable, not Internal",
			src:      failingSource(status.Error(codes.NotFound, "no such service account")),
			wantCode: codes.Unavailable,
		},
		{
			name:     "source's token has a newline",
			src:      TokenSourceFunc(func(context.Context) (*Token, error) { return &Token{Value: "a\r\nb"}, nil }),
			wantCode: codes.Unauthenticated,
		},
		{
			name:     "caller's deadline",
			src:      blockingSource{},
			ctx:      expired,
			wantCode: codes.DeadlineExceeded,
		},
		{
			name:     "caller canceled",
			src:      blockingSource{},
			ctx:      canceled,
			wantCode: codes.Canceled,
		},
		{
			name:     "cache closed",
			src:      newFakeSource(newFakeClock(), time.Hour),
			closed:   true,
			wantCode: codes.Unavailable,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCachedSource(tt.src)
			defer c.Close()
			if tt.closed {
				c.Close()
			}
			ctx := tt.ctx
			if ctx == nil {
				ctx = requestContext(iamMethod, secureInfo)
			}
			creds := NewPerRPCCredentials(c)
			_, err := creds.GetRequestMetadata(ctx)
			code := status.Code(err)
			if code != tt.wantCode {
				t.Errorf("code = %v (%v), want %v", code, err, tt.wantCode)
			}
			if rewritten[code] {
				t.Errorf("code %v would reach the caller as Internal", code)
			}
		})
	}
}

func failingSource(err error) TokenSource {
	return TokenSourceFunc(func(context.Context) (*Token, error) { return nil, err })
}

// blockingSource answers only when its context ends.
type blockingSource struct{}

func (blockingSource) Token(ctx context.Context) (*Token, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestCredentialsShareOneMapPerToken(t *testing.T) {
	clock := newFakeClock()
	src := newFakeSource(clock, 12*time.Hour)
	c := newTestCache(t, src, clock)
	creds := NewPerRPCCredentials(c)
	ctx := requestContext(iamMethod, secureInfo)

	first, err := creds.GetRequestMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	second, err := creds.GetRequestMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%p", first) != fmt.Sprintf("%p", second) {
		t.Error("two calls with the same token got two maps")
	}
}

func TestCredentialsLeaveAPassedCacheOpen(t *testing.T) {
	clock := newFakeClock()
	c := newTestCache(t, newFakeSource(clock, 12*time.Hour), clock)
	creds := NewPerRPCCredentials(c)
	if err := creds.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Token(context.Background()); err != nil {
		t.Errorf("cache closed by the credentials it was passed to: %v", err)
	}
}

// recordingServer answers every method with an empty message and records
// the authorization metadata each call carried.
type recordingServer struct {
	mu    sync.Mutex
	calls map[string][]string // method → authorization values
}

func (s *recordingServer) handle(_ any, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	md, _ := metadata.FromIncomingContext(stream.Context())
	s.mu.Lock()
	if s.calls == nil {
		s.calls = map[string][]string{}
	}
	s.calls[method] = append(s.calls[method], md.Get("authorization")...)
	s.mu.Unlock()
	if err := stream.RecvMsg(&emptypb.Empty{}); err != nil {
		return err
	}
	return stream.SendMsg(&emptypb.Empty{})
}

func (s *recordingServer) seen() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]string{}
	for k, v := range s.calls {
		out[k] = append([]string{}, v...)
	}
	return out
}

// startServer serves rec on a loopback port with creds until the test ends.
func startServer(t *testing.T, creds credentials.TransportCredentials) (*recordingServer, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingServer{}
	srv := grpc.NewServer(grpc.Creds(creds), grpc.UnknownServiceHandler(rec.handle))
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return rec, lis.Addr().String()
}

// testTLS returns a server certificate for "localhost" and 127.0.0.1 issued
// by a CA made for this test, and a pool holding that CA.
func testTLS(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	b := devpki.ForTest(t)
	return b.Cert, b.Pool()
}

// callAll makes one call of each mode; it returns each call's code.
func callAll(t *testing.T, conn *grpc.ClientConn) map[string]codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got := map[string]codes.Code{}
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	got[healthMethod] = status.Code(err)
	if err != nil {
		t.Logf("%s: %v", healthMethod, err)
	}
	for _, m := range []string{iamMethod, accessKeyMethod} {
		err := conn.Invoke(ctx, m, &emptypb.Empty{}, &emptypb.Empty{})
		got[m] = status.Code(err)
		if err != nil {
			t.Logf("%s: %v", m, err)
		}
	}
	return got
}

func TestCredentialsOverLoopback(t *testing.T) {
	cert, pool := testTLS(t)
	serverTLS := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	clientTLS := credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12})

	tests := []struct {
		name        string
		serverCreds credentials.TransportCredentials
		clientCreds credentials.TransportCredentials
		opts        []CredentialsOption
		wantDialErr bool
		wantCodes   map[string]codes.Code
		wantSeen    map[string][]string
		wantFetches int64
	}{
		{
			name:        "TLS: the bearer token on IAM-token calls only",
			serverCreds: serverTLS,
			clientCreds: clientTLS,
			wantCodes:   map[string]codes.Code{healthMethod: codes.OK, iamMethod: codes.OK, accessKeyMethod: codes.OK},
			wantSeen:    map[string][]string{healthMethod: nil, iamMethod: {"Bearer token-1"}, accessKeyMethod: nil},
			wantFetches: 1,
		},
		{
			name:        "plaintext: refused at dial",
			serverCreds: insecure.NewCredentials(),
			clientCreds: insecure.NewCredentials(),
			wantDialErr: true,
		},
		{
			name: "connection without privacy: refused before anything is sent",
			// Local credentials over TCP report NoSecurity without being
			// "insecure", so the dial succeeds; the connection is then
			// refused because the credentials require transport security.
			serverCreds: local.NewCredentials(),
			clientCreds: local.NewCredentials(),
			wantCodes:   map[string]codes.Code{healthMethod: codes.Unavailable, iamMethod: codes.Unavailable, accessKeyMethod: codes.Unavailable},
			wantSeen:    map[string][]string{},
			wantFetches: 0,
		},
		{
			name:        "plaintext with the insecure opt-in",
			serverCreds: insecure.NewCredentials(),
			clientCreds: insecure.NewCredentials(),
			opts:        []CredentialsOption{WithInsecureTransportForLocalTesting()},
			wantCodes:   map[string]codes.Code{healthMethod: codes.OK, iamMethod: codes.OK, accessKeyMethod: codes.OK},
			wantSeen:    map[string][]string{healthMethod: nil, iamMethod: {"Bearer token-1"}, accessKeyMethod: nil},
			wantFetches: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, addr := startServer(t, tt.serverCreds)
			clock := newFakeClock()
			src := newFakeSource(clock, 12*time.Hour)
			cache := newTestCache(t, src, clock)

			conn, err := grpc.NewClient(addr,
				grpc.WithTransportCredentials(tt.clientCreds),
				WithTokenSource(cache, tt.opts...))
			if tt.wantDialErr {
				if err == nil {
					conn.Close()
					t.Fatal("NewClient succeeded, want an error")
				}
				if n := src.calls.Load(); n != 0 {
					t.Errorf("source called %d times, want 0", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()

			if diff := cmp.Diff(tt.wantCodes, callAll(t, conn)); diff != "" {
				t.Errorf("codes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantSeen, rec.seen(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("authorization the server saw (-want +got):\n%s", diff)
			}
			if n := src.calls.Load(); n != tt.wantFetches {
				t.Errorf("source called %d times, want %d", n, tt.wantFetches)
			}
		})
	}
}

func TestWithTokenSourceDialsInOneLine(t *testing.T) {
	cert, pool := testTLS(t)
	rec, addr := startServer(t, credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
	src := TokenSourceFunc(func(context.Context) (*Token, error) {
		return &Token{Value: "one-line", Expiry: time.Now().Add(time.Hour)}, nil
	})
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost"})),
		WithTokenSource(src))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := conn.Invoke(ctx, iamMethod, &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]string{iamMethod: {"Bearer one-line"}}, rec.seen()); diff != "" {
		t.Errorf("authorization the server saw (-want +got):\n%s", diff)
	}
}
