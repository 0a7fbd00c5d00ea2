package interceptors

import (
	"context"
	"crypto"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/iamtoken/iamtoken-go/authmode"
	"github.com/iamtoken/iamtoken-go/internal/devpki"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
)

// computeServer answers with the caller the interceptors put in the context.
type computeServer struct {
	demov1.UnimplementedComputeServiceServer
}

func callerOf(ctx context.Context) string {
	p, ok := PrincipalFromContext(ctx)
	if !ok {
		return "<none>"
	}
	return p.SubjectID + "/" + string(p.Method) + "/" + p.TokenID + p.AccessKeyID
}

func (computeServer) GetInstance(ctx context.Context, _ *demov1.GetInstanceRequest) (*demov1.GetInstanceResponse, error) {
	return &demov1.GetInstanceResponse{Instance: &demov1.Instance{CreatedBy: callerOf(ctx)}}, nil
}

func (computeServer) WatchInstances(_ *demov1.WatchInstancesRequest, stream demov1.ComputeService_WatchInstancesServer) error {
	return stream.Send(&demov1.WatchInstancesResponse{Instance: &demov1.Instance{CreatedBy: callerOf(stream.Context())}})
}

type storageServer struct {
	demov1.UnimplementedStorageServiceServer
}

func (storageServer) GetObject(ctx context.Context, _ *demov1.GetObjectRequest) (*demov1.GetObjectResponse, error) {
	return &demov1.GetObjectResponse{Etag: callerOf(ctx)}, nil
}

func (storageServer) UploadObject(stream demov1.StorageService_UploadObjectServer) error {
	for {
		if _, err := stream.Recv(); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
	}
	return stream.SendAndClose(&demov1.UploadObjectResponse{Etag: callerOf(stream.Context())})
}

// fakeVerifier accepts "AWS4-HMAC-SHA256 Credential=YCAJgood…" and records
// what it was called with.
type fakeVerifier struct {
	mu    sync.Mutex
	calls []verifierCall // guarded by mu
}

type verifierCall struct{ Method, Authority string }

func (f *fakeVerifier) VerifyAccessKey(_ context.Context, fullMethod, authority string, md metadata.MD) (*Principal, error) {
	f.mu.Lock()
	f.calls = append(f.calls, verifierCall{fullMethod, authority})
	f.mu.Unlock()
	if v := md.Get("authorization"); len(v) == 1 && strings.HasPrefix(v[0], "AWS4-HMAC-SHA256 Credential=YCAJgood") {
		return &Principal{SubjectID: "sa-storage", SubjectType: SubjectServiceAccount, Method: AuthAccessKey, AccessKeyID: "YCAJgood"}, nil
	}
	return nil, status.Error(codes.Unauthenticated, "fake: signature does not match")
}

func (f *fakeVerifier) recorded() []verifierCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]verifierCall(nil), f.calls...)
}

// testServer runs the demo services, health and an unknown-service handler
// behind the interceptors on bufconn.
type testServer struct {
	conn *grpc.ClientConn
}

func startServer(t *testing.T, serverCreds, clientCreds credentials.TransportCredentials, opts ...Option) *testServer {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	sopts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(UnaryServerInterceptor(opts...)),
		grpc.ChainStreamInterceptor(StreamServerInterceptor(opts...)),
		grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
			var m emptypb.Empty
			if err := stream.RecvMsg(&m); err != nil {
				return err
			}
			return stream.SendMsg(&emptypb.Empty{})
		}),
	}
	if serverCreds != nil {
		sopts = append(sopts, grpc.Creds(serverCreds))
	}
	srv := grpc.NewServer(sopts...)
	demov1.RegisterComputeServiceServer(srv, computeServer{})
	demov1.RegisterStorageServiceServer(srv, storageServer{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	if clientCreds == nil {
		clientCreds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient("passthrough:///storage.test",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(clientCreds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &testServer{conn: conn}
}

func withAuth(values ...string) context.Context {
	md := metadata.MD{}
	for _, v := range values {
		md.Append("authorization", v)
	}
	return metadata.NewOutgoingContext(context.Background(), md)
}

// staticKeyOptions are the options of a server that trusts keyFor("ES256",
// "k1") and runs on plaintext bufconn.
func staticKeyOptions(clock *fakeClock) []Option {
	return []Option{
		WithStaticKeys(map[string]crypto.PublicKey{"k1": keyFor("ES256", "k1").public()}),
		withClock(clock.Now),
		WithInsecureTransport(),
	}
}

func TestRouting(t *testing.T) {
	clock := newFakeClock()
	es := keyFor("ES256", "k1")
	token := sign(t, es, goodHeader(es), goodClaims(clock.Now()))
	verifier := &fakeVerifier{}
	srv := startServer(t, nil, nil, append(staticKeyOptions(clock), WithAccessKeyVerifier(verifier))...)
	compute := demov1.NewComputeServiceClient(srv.conn)
	storage := demov1.NewStorageServiceClient(srv.conn)
	signed := "AWS4-HMAC-SHA256 Credential=YCAJgood/20260301/ru-central1/s3/aws4_request, SignedHeaders=x-amz-date, Signature=00"

	tests := []struct {
		name     string
		call     func(ctx context.Context) (string, error)
		ctx      context.Context
		want     string
		wantCode codes.Code
		wantMsg  string
	}{
		{name: "IAM token", ctx: withAuth("Bearer " + token), want: "ajeSA123/iam_token/tok-1"},
		{name: "IAM token, lower-case scheme", ctx: withAuth("bearer " + token), want: "ajeSA123/iam_token/tok-1"},
		{name: "IAM method without credentials", ctx: context.Background(), wantCode: codes.Unauthenticated, wantMsg: msgNoCredentials},
		{name: "two authorization values", ctx: withAuth("Bearer "+token, "Bearer "+token), wantCode: codes.Unauthenticated, wantMsg: msgManyAuthorization},
		{name: "Basic scheme", ctx: withAuth("Basic dXNlcjpwYXNz"), wantCode: codes.Unauthenticated, wantMsg: msgBadScheme},
		{name: "empty bearer", ctx: withAuth("Bearer "), wantCode: codes.Unauthenticated, wantMsg: msgEmptyBearer},
		{name: "access key signature to an IAM-token service", ctx: withAuth(signed), wantCode: codes.Unauthenticated, wantMsg: msgAccessKeyToIAM},
		{name: "access key ID as bearer to an IAM-token service", ctx: withAuth("Bearer YCAJexample123"), wantCode: codes.Unauthenticated, wantMsg: msgAccessKeyToIAM},
		{name: "invalid token", ctx: withAuth("Bearer " + token + "x"), wantCode: codes.Unauthenticated, wantMsg: ErrInvalidToken.Error()},
		{name: "access key", call: getObject(storage), ctx: withAuth(signed), want: "sa-storage/access_key/YCAJgood"},
		{name: "IAM token to an access-key service", call: getObject(storage), ctx: withAuth("Bearer " + token), wantCode: codes.Unauthenticated, wantMsg: msgIAMToAccessKey},
		{name: "bad access-key signature", call: getObject(storage), ctx: withAuth("AWS4-HMAC-SHA256 Credential=YCAJbad"), wantCode: codes.Unauthenticated, wantMsg: "fake: signature does not match"},
		{name: "two authorization values to an access-key service", call: getObject(storage), ctx: withAuth(signed, signed), wantCode: codes.Unauthenticated, wantMsg: msgManyAuthorization},
		{name: "unknown method without credentials", call: unknownMethod(srv.conn), ctx: context.Background(), wantCode: codes.Unauthenticated, wantMsg: msgNoCredentials},
		{name: "unknown method with an IAM token", call: unknownMethod(srv.conn), ctx: withAuth("Bearer " + token), want: "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			call := tt.call
			if call == nil {
				call = getInstance(compute)
			}
			got, err := call(tt.ctx)
			if code := status.Code(err); code != tt.wantCode {
				t.Fatalf("code = %v (%v), want %v", code, err, tt.wantCode)
			}
			if err != nil {
				if msg := status.Convert(err).Message(); !strings.Contains(msg, tt.wantMsg) {
					t.Errorf("message = %q, want it to contain %q", msg, tt.wantMsg)
				}
				if containsSecret(err.Error(), token) {
					t.Errorf("error echoes the token: %v", err)
				}
				return
			}
			if got != tt.want {
				t.Errorf("caller = %q, want %q", got, tt.want)
			}
		})
	}

	// The verifier saw only signed calls, never one carrying the IAM token,
	// with the method and the call's :authority.
	want := []verifierCall{
		{demov1.StorageService_GetObject_FullMethodName, "storage.test"},
		{demov1.StorageService_GetObject_FullMethodName, "storage.test"},
	}
	if diff := cmp.Diff(want, verifier.recorded()); diff != "" {
		t.Errorf("verifier calls (-want +got):\n%s", diff)
	}
}

func getInstance(c demov1.ComputeServiceClient) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		resp, err := c.GetInstance(ctx, &demov1.GetInstanceRequest{InstanceId: "i1"})
		return resp.GetInstance().GetCreatedBy(), err
	}
}

func getObject(c demov1.StorageServiceClient) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		resp, err := c.GetObject(ctx, &demov1.GetObjectRequest{Bucket: "b", Key: "k"})
		return resp.GetEtag(), err
	}
}

func unknownMethod(conn *grpc.ClientConn) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		err := conn.Invoke(ctx, "/acme.v1.Unknown/Do", &emptypb.Empty{}, &emptypb.Empty{})
		if err != nil {
			return "", err
		}
		return "ok", nil
	}
}

func TestStreamPrincipal(t *testing.T) {
	clock := newFakeClock()
	es := keyFor("ES256", "k1")
	token := sign(t, es, goodHeader(es), goodClaims(clock.Now()))
	srv := startServer(t, nil, nil, append(staticKeyOptions(clock), WithAccessKeyVerifier(&fakeVerifier{}))...)

	t.Run("server stream with an IAM token", func(t *testing.T) {
		stream, err := demov1.NewComputeServiceClient(srv.conn).WatchInstances(withAuth("Bearer "+token), &demov1.WatchInstancesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := resp.GetInstance().GetCreatedBy(), "ajeSA123/iam_token/tok-1"; got != want {
			t.Errorf("caller in the stream's context = %q, want %q", got, want)
		}
	})
	t.Run("server stream without credentials", func(t *testing.T) {
		stream, err := demov1.NewComputeServiceClient(srv.conn).WatchInstances(context.Background(), &demov1.WatchInstancesRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		if code := status.Code(err); code != codes.Unauthenticated {
			t.Errorf("code = %v (%v), want Unauthenticated", code, err)
		}
	})
	t.Run("client stream with an access key", func(t *testing.T) {
		stream, err := demov1.NewStorageServiceClient(srv.conn).UploadObject(withAuth("AWS4-HMAC-SHA256 Credential=YCAJgood/x"))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&demov1.UploadObjectRequest{Bucket: "b", Key: "k", Chunk: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.CloseAndRecv()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := resp.GetEtag(), "sa-storage/access_key/YCAJgood"; got != want {
			t.Errorf("caller in the stream's context = %q, want %q", got, want)
		}
	})
}

func TestHealthNeedsNoCredentials(t *testing.T) {
	srv := startServer(t, nil, nil, staticKeyOptions(newFakeClock())...)
	client := healthpb.NewHealthClient(srv.conn)
	ctx := context.Background()
	resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("Check status = %v, want SERVING", resp.GetStatus())
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch = %v, %v; want SERVING", resp, err)
	}
}

func TestHealthCanRequireATokenByResolver(t *testing.T) {
	r, err := authmode.New(authmode.WithOverride(authmode.HealthService, authmode.IAMToken))
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, nil, nil, append(staticKeyOptions(newFakeClock()), WithResolver(r))...)
	_, err = healthpb.NewHealthClient(srv.conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if code := status.Code(err); code != codes.Unauthenticated {
		t.Errorf("Check without credentials = %v, want Unauthenticated", err)
	}
}

func TestAccessKeyWithoutVerifier(t *testing.T) {
	srv := startServer(t, nil, nil, staticKeyOptions(newFakeClock())...)
	_, err := getObject(demov1.NewStorageServiceClient(srv.conn))(withAuth("AWS4-HMAC-SHA256 Credential=YCAJgood/x"))
	if code, msg := status.Code(err), status.Convert(err).Message(); code != codes.Unauthenticated || msg != msgNoVerifier {
		t.Errorf("access-key call without a verifier = %v, want Unauthenticated %q", err, msgNoVerifier)
	}
}

func TestTransportSecurity(t *testing.T) {
	clock := newFakeClock()
	es := keyFor("ES256", "k1")
	token := sign(t, es, goodHeader(es), goodClaims(clock.Now()))
	keys := WithStaticKeys(map[string]crypto.PublicKey{"k1": es.public()})

	t.Run("plaintext refused by default", func(t *testing.T) {
		srv := startServer(t, nil, nil, keys, withClock(clock.Now))
		_, err := getInstance(demov1.NewComputeServiceClient(srv.conn))(withAuth("Bearer " + token))
		if code, msg := status.Code(err), status.Convert(err).Message(); code != codes.Unauthenticated || msg != msgInsecure {
			t.Errorf("token over plaintext = %v, want Unauthenticated %q", err, msgInsecure)
		}
	})
	t.Run("access-key call over plaintext refused by default", func(t *testing.T) {
		verifier := &fakeVerifier{}
		srv := startServer(t, nil, nil, keys, withClock(clock.Now), WithAccessKeyVerifier(verifier))
		_, err := getObject(demov1.NewStorageServiceClient(srv.conn))(withAuth("AWS4-HMAC-SHA256 Credential=YCAJgood/x"))
		if code, msg := status.Code(err), status.Convert(err).Message(); code != codes.Unauthenticated || msg != msgInsecureAccessKey {
			t.Errorf("access-key call over plaintext = %v, want Unauthenticated %q", err, msgInsecureAccessKey)
		}
		if calls := verifier.recorded(); len(calls) != 0 {
			t.Errorf("the verifier was asked %d times, want never", len(calls))
		}
	})
	t.Run("access-key call over plaintext with the opt-in", func(t *testing.T) {
		srv := startServer(t, nil, nil, keys, withClock(clock.Now), WithAccessKeyVerifier(&fakeVerifier{}), WithInsecureTransport())
		if _, err := getObject(demov1.NewStorageServiceClient(srv.conn))(withAuth("AWS4-HMAC-SHA256 Credential=YCAJgood/x")); err != nil {
			t.Errorf("access-key call with WithInsecureTransport: %v", err)
		}
	})
	t.Run("TLS accepted", func(t *testing.T) {
		serverCreds, clientCreds := tlsCreds(t)
		srv := startServer(t, serverCreds, clientCreds, keys, withClock(clock.Now))
		got, err := getInstance(demov1.NewComputeServiceClient(srv.conn))(withAuth("Bearer " + token))
		if err != nil || got != "ajeSA123/iam_token/tok-1" {
			t.Errorf("token over TLS = %q, %v", got, err)
		}
	})
}

// tlsCreds returns credentials for a self-signed server "storage.test".
func tlsCreds(t *testing.T) (server, client credentials.TransportCredentials) {
	t.Helper()
	b := devpki.ForTest(t, "storage.test")
	client = credentials.NewTLS(b.ClientConfig())
	if err := client.OverrideServerName("storage.test"); err != nil {
		t.Fatal(err)
	}
	return credentials.NewTLS(b.ServerConfig()), client
}

func TestAuthorizer(t *testing.T) {
	clock := newFakeClock()
	es := keyFor("ES256", "k1")
	token := sign(t, es, goodHeader(es), goodClaims(clock.Now()))
	tests := []struct {
		name     string
		authz    func(context.Context, string, *Principal) error
		wantCode codes.Code
	}{
		{"allows", func(context.Context, string, *Principal) error { return nil }, codes.OK},
		{"plain error", func(_ context.Context, m string, p *Principal) error {
			return errors.New(p.SubjectID + " may not call " + m)
		}, codes.PermissionDenied},
		{"status error keeps its code", func(context.Context, string, *Principal) error {
			return status.Error(codes.FailedPrecondition, "account suspended")
		}, codes.FailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, nil, nil, append(staticKeyOptions(clock), WithAuthorizer(tt.authz))...)
			_, err := getInstance(demov1.NewComputeServiceClient(srv.conn))(withAuth("Bearer " + token))
			if code := status.Code(err); code != tt.wantCode {
				t.Errorf("code = %v (%v), want %v", code, err, tt.wantCode)
			}
		})
	}
}

func TestOutcomeHook(t *testing.T) {
	clock := newFakeClock()
	es := keyFor("ES256", "k1")
	token := sign(t, es, goodHeader(es), goodClaims(clock.Now()))
	var (
		mu  sync.Mutex
		got []Outcome
	)
	hook := func(_ context.Context, o Outcome) {
		mu.Lock()
		defer mu.Unlock()
		if o.Err != nil && containsSecret(o.Err.Error(), token) {
			t.Errorf("outcome error echoes the token: %v", o.Err)
		}
		o.Err = nil // compared by Code
		got = append(got, o)
	}
	srv := startServer(t, nil, nil, append(staticKeyOptions(clock), WithOutcomeHook(hook))...)
	compute := demov1.NewComputeServiceClient(srv.conn)
	getInstance(compute)(withAuth("Bearer " + token))
	getInstance(compute)(withAuth("Bearer " + token + "x"))
	getObject(demov1.NewStorageServiceClient(srv.conn))(withAuth("Bearer " + token))
	healthpb.NewHealthClient(srv.conn).Check(context.Background(), &healthpb.HealthCheckRequest{})

	want := []Outcome{
		{FullMethod: demov1.ComputeService_GetInstance_FullMethodName, Mode: authmode.IAMToken, Code: codes.OK, Subject: "ajeSA123"},
		{FullMethod: demov1.ComputeService_GetInstance_FullMethodName, Mode: authmode.IAMToken, Code: codes.Unauthenticated},
		{FullMethod: demov1.StorageService_GetObject_FullMethodName, Mode: authmode.AccessKey, Code: codes.Unauthenticated},
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
}

func TestInterceptorOptionsPanic(t *testing.T) {
	v, err := NewValidator(WithStaticKeys(map[string]crypto.PublicKey{"k1": keyFor("ES256", "k1").public()}))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	tests := []struct {
		name string
		opts []Option
	}{
		{"no keys", nil},
		{"JWKS URL without a Validator", []Option{WithJWKSURL("https://iam.example/jwks")}},
		{"nil verifier", []Option{WithStaticKeys(map[string]crypto.PublicKey{"k1": keyFor("ES256", "k1").public()}), WithAccessKeyVerifier(nil)}},
		// The Validator was made without these: ignoring them would, for a
		// revocation list, accept revoked tokens.
		{"revocation list beside a Validator", []Option{WithValidator(v), WithRevocationList(revokedNone{})}},
		{"static keys beside a Validator", []Option{WithValidator(v), WithStaticKeys(map[string]crypto.PublicKey{"k1": keyFor("ES256", "k1").public()})}},
		{"issuer beside a Validator", []Option{WithValidator(v), WithIssuer("https://other")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("UnaryServerInterceptor did not panic")
				}
			}()
			UnaryServerInterceptor(tt.opts...)
		})
	}
}

type revokedNone struct{}

func (revokedNone) IsRevoked(context.Context, string) (bool, error) { return false, nil }
