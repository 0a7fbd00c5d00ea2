package grpcauth_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/authmode"
	"github.com/iamtoken/iamtoken-go/grpcauth"
	"github.com/iamtoken/iamtoken-go/interceptors"
	"github.com/iamtoken/iamtoken-go/internal/devpki"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
)

// Test credentials: static and made up.
const (
	akKeyID   = "YCAJEtestkey0001"
	akSecret  = "YCtestsecret-not-a-real-one-0123456789ab"
	akSAID    = "ajetestserviceacct01"
	akIAMTok  = "t1.test-iam-token-value"
	akPut     = demov1.StorageService_PutObject_FullMethodName
	akCompute = demov1.ComputeService_GetInstance_FullMethodName
	akHealth  = "/grpc.health.v1.Health/Check"
)

func akCallContext(method string, level credentials.SecurityLevel) context.Context {
	return credentials.NewContextWithRequestInfo(context.Background(), credentials.RequestInfo{
		Method:   method,
		AuthInfo: credentials.TLSInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: level}},
	})
}

func akAudience(method string) string {
	return "https://storage.example:8443" + method[:strings.LastIndex(method, "/")]
}

func newAKCreds(t *testing.T, opts ...grpcauth.AccessKeyOption) *grpcauth.AccessKeyCredentials {
	t.Helper()
	c, err := grpcauth.NewAccessKeyCredentials(akKeyID, akSecret, opts...)
	if err != nil {
		t.Fatalf("NewAccessKeyCredentials: %v", err)
	}
	return c
}

// TestAccessKeyCredentialsByMode: only access-key methods are signed.
func TestAccessKeyCredentialsByMode(t *testing.T) {
	c := newAKCreds(t)
	tests := []struct {
		name, method string
		wantSigned   bool
	}{
		{"access-key unary", akPut, true},
		{"access-key client stream", demov1.StorageService_UploadObject_FullMethodName, true},
		{"IAM-token method", akCompute, false},
		{"IAM-token management", "/iamtoken.iam.v1.AccessKeyService/Create", false},
		{"none method", akHealth, false},
		{"unknown method", "/unknown.v1.Svc/Do", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md, err := c.GetRequestMetadata(akCallContext(tt.method, credentials.PrivacyAndIntegrity), akAudience(tt.method))
			if err != nil {
				t.Fatalf("GetRequestMetadata: %v", err)
			}
			if got := md != nil; got != tt.wantSigned {
				t.Fatalf("signed = %v (%v), want %v", got, md, tt.wantSigned)
			}
			if tt.wantSigned && !strings.HasPrefix(md["authorization"], "AWS4-HMAC-SHA256 Credential="+akKeyID+"/") {
				t.Errorf("authorization = %q", md["authorization"])
			}
		})
	}
}

func TestAccessKeyCredentialsTransportSecurity(t *testing.T) {
	tests := []struct {
		name         string
		opts         []grpcauth.AccessKeyOption
		level        credentials.SecurityLevel
		wantCode     codes.Code
		wantRequires bool
	}{
		{"TLS", nil, credentials.PrivacyAndIntegrity, codes.OK, true},
		{"no security", nil, credentials.NoSecurity, codes.Unauthenticated, true},
		{"integrity only", nil, credentials.IntegrityOnly, codes.Unauthenticated, true},
		{"no security, opted in", []grpcauth.AccessKeyOption{grpcauth.WithAccessKeyInsecureTransportForLocalTesting()}, credentials.NoSecurity, codes.OK, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newAKCreds(t, tt.opts...)
			if got := c.RequireTransportSecurity(); got != tt.wantRequires {
				t.Errorf("RequireTransportSecurity = %v, want %v", got, tt.wantRequires)
			}
			md, err := c.GetRequestMetadata(akCallContext(akPut, tt.level), akAudience(akPut))
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("GetRequestMetadata = %v, %v; want code %v", md, err, tt.wantCode)
			}
			if err != nil && md != nil {
				t.Errorf("metadata %v returned with an error", md)
			}
		})
	}
}

func TestAccessKeyCredentialsRefusesCall(t *testing.T) {
	r, err := authmode.New(authmode.WithOverride("pkg.v1.Odd", authmode.AccessKey))
	if err != nil {
		t.Fatal(err)
	}
	c := newAKCreds(t, grpcauth.WithAccessKeyResolver(r))
	tests := []struct {
		name     string
		ctx      context.Context
		uri      []string
		wantCode codes.Code
	}{
		{"no request info", context.Background(), []string{akAudience(akPut)}, codes.Internal},
		{"unsignable method", akCallContext("/pkg.v1.Odd/M%20x", credentials.PrivacyAndIntegrity), []string{"https://h/pkg.v1.Odd"}, codes.Internal},
		{"no audience", akCallContext(akPut, credentials.PrivacyAndIntegrity), nil, codes.Internal},
		{"audience not https", akCallContext(akPut, credentials.PrivacyAndIntegrity), []string{"http://h/x"}, codes.Internal},
		{"audience without host", akCallContext(akPut, credentials.PrivacyAndIntegrity), []string{"https:///x"}, codes.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md, err := c.GetRequestMetadata(tt.ctx, tt.uri...)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("GetRequestMetadata = %v, %v; want code %v", md, err, tt.wantCode)
			}
			if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, "grpcauth: ") || strings.Contains(msg, akSecret) {
				t.Errorf("message %q", msg)
			}
		})
	}
}

func TestNewAccessKeyCredentialsRefuses(t *testing.T) {
	tests := []struct {
		name, keyID, secret string
		opt                 grpcauth.AccessKeyOption
	}{
		{"empty key ID", "", akSecret, nil},
		{"key ID with slash", "YCAJ/x", akSecret, nil},
		{"key ID with space", "YCAJ x", akSecret, nil},
		{"empty secret", akKeyID, "", nil},
		{"empty region", akKeyID, akSecret, grpcauth.WithAccessKeyRegion("")},
		{"region with slash", akKeyID, akSecret, grpcauth.WithAccessKeyRegion("ru/central1")},
		{"uppercase service", akKeyID, akSecret, grpcauth.WithAccessKeyService("S3")},
		{"nil resolver", akKeyID, akSecret, grpcauth.WithAccessKeyResolver(nil)},
		{"nil clock", akKeyID, akSecret, grpcauth.WithAccessKeyClock(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []grpcauth.AccessKeyOption
			if tt.opt != nil {
				opts = append(opts, tt.opt)
			}
			c, err := grpcauth.NewAccessKeyCredentials(tt.keyID, tt.secret, opts...)
			if err == nil {
				t.Fatalf("NewAccessKeyCredentials = %v, want an error", c)
			}
			if !strings.HasPrefix(err.Error(), "grpcauth: ") || strings.Contains(err.Error(), akSecret) {
				t.Errorf("error %q", err)
			}
		})
	}
}

func TestAccessKeyCredentialsStringRedactsSecret(t *testing.T) {
	c := newAKCreds(t)
	for _, s := range []string{c.String(), c.GoString(), fmt.Sprintf("%v %+v %#v %s", c, c, c, c)} {
		if strings.Contains(s, akSecret) {
			t.Errorf("%q holds the secret", s)
		}
		if !strings.Contains(s, akKeyID) {
			t.Errorf("%q does not name the key", s)
		}
	}
	if got := c.KeyID(); got != akKeyID {
		t.Errorf("KeyID() = %q, want %q", got, akKeyID)
	}
}

func TestAccessKeyCredentialsRegionAndService(t *testing.T) {
	at := time.Date(2026, 12, 4, 23, 59, 59, 0, time.UTC)
	c := newAKCreds(t, grpcauth.WithAccessKeyRegion("eu-north1"), grpcauth.WithAccessKeyService("storage"),
		grpcauth.WithAccessKeyClock(func() time.Time { return at }))
	md, err := c.GetRequestMetadata(akCallContext(akPut, credentials.PrivacyAndIntegrity), akAudience(akPut))
	if err != nil {
		t.Fatal(err)
	}
	if want := "Credential=" + akKeyID + "/20261204/eu-north1/storage/aws4_request, "; !strings.Contains(md["authorization"], want) {
		t.Errorf("authorization %q does not contain %q", md["authorization"], want)
	}
	if diff := cmp.Diff("20261204T235959Z", md["x-amz-date"]); diff != "" {
		t.Errorf("x-amz-date (-want +got):\n%s", diff)
	}
}

// akTLS makes a test CA and a certificate for localhost signed by it, and
// returns the server's and the client's transport credentials.
func akTLS(t *testing.T) (server, client credentials.TransportCredentials) {
	t.Helper()
	b := devpki.ForTest(t)
	return credentials.NewTLS(b.ServerConfig()), credentials.NewTLS(b.ClientConfig())
}

// akCall is what the recording server saw of one call.
type akCall struct {
	Bearer    bool // authorization: Bearer <the IAM token>
	Signature bool // authorization: AWS4-HMAC-SHA256 …
	AmzMD     bool // any x-amz-* or nonce metadata
	Principal *interceptors.Principal
	VerifyErr string
}

// akRecorder records each call's credentials and checks signatures with the
// real verifier, over the authority gRPC delivered.
type akRecorder struct {
	verifier *interceptors.SigV4Verifier

	mu    sync.Mutex
	calls map[string]akCall // by full method; guarded by mu
}

func (r *akRecorder) record(ctx context.Context, method string) {
	md, _ := metadata.FromIncomingContext(ctx)
	var c akCall
	for _, a := range md.Get("authorization") {
		c.Bearer = c.Bearer || a == "Bearer "+akIAMTok
		c.Signature = c.Signature || strings.HasPrefix(a, "AWS4-HMAC-SHA256 ")
	}
	for k := range md {
		if strings.HasPrefix(k, "x-amz-") || k == grpcauth.AccessKeyNonceKey {
			c.AmzMD = true
		}
	}
	if c.Signature {
		var authority string
		if a := md.Get(":authority"); len(a) == 1 {
			authority = a[0]
		}
		p, err := r.verifier.VerifyAccessKey(ctx, method, authority, md)
		c.Principal = p
		if err != nil {
			c.VerifyErr = err.Error()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[method] = c
}

func (r *akRecorder) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	r.record(ctx, info.FullMethod)
	return handler(ctx, req)
}

func (r *akRecorder) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	r.record(ss.Context(), info.FullMethod)
	return handler(srv, ss)
}

type akStore struct{}

func (akStore) LookupAccessKey(_ context.Context, keyID string) (*interceptors.AccessKey, error) {
	if keyID != akKeyID {
		return nil, interceptors.ErrAccessKeyNotFound
	}
	return &interceptors.AccessKey{KeyID: akKeyID, Secret: []byte(akSecret), ServiceAccountID: akSAID, Active: true}, nil
}

type akStorageServer struct {
	demov1.UnimplementedStorageServiceServer
}

func (akStorageServer) PutObject(context.Context, *demov1.PutObjectRequest) (*demov1.PutObjectResponse, error) {
	return &demov1.PutObjectResponse{}, nil
}

func (akStorageServer) UploadObject(s grpc.ClientStreamingServer[demov1.UploadObjectRequest, demov1.UploadObjectResponse]) error {
	for {
		if _, err := s.Recv(); err != nil {
			return s.SendAndClose(&demov1.UploadObjectResponse{})
		}
	}
}

type akComputeServer struct {
	demov1.UnimplementedComputeServiceServer
}

func (akComputeServer) GetInstance(context.Context, *demov1.GetInstanceRequest) (*demov1.GetInstanceResponse, error) {
	return &demov1.GetInstanceResponse{}, nil
}

// akServe starts a gRPC server on loopback with creds and returns its
// address; the server stops when the test ends.
func akServe(t *testing.T, creds credentials.TransportCredentials, rec *akRecorder) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(creds), grpc.UnaryInterceptor(rec.unary), grpc.StreamInterceptor(rec.stream))
	demov1.RegisterStorageServiceServer(srv, akStorageServer{})
	demov1.RegisterComputeServiceServer(srv, akComputeServer{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// TestBothCredentialsOnOneConnection: one TLS connection carries the
// IAM-token credentials and the access-key credentials; each call gets
// exactly what its method's mode asks for, and the signatures verify on the
// server over the authority gRPC delivered.
func TestBothCredentialsOnOneConnection(t *testing.T) {
	serverCreds, clientCreds := akTLS(t)
	now := time.Now()
	verifier, err := interceptors.NewAccessKeyVerifier(akStore{}, interceptors.WithAccessKeyClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	rec := &akRecorder{verifier: verifier, calls: map[string]akCall{}}
	addr := akServe(t, serverCreds, rec)
	_, port, _ := net.SplitHostPort(addr)

	src, err := grpcauth.NewStaticSource(akIAMTok, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	iamCreds := grpcauth.NewPerRPCCredentials(src)
	defer iamCreds.Close()
	akCreds := newAKCreds(t, grpcauth.WithAccessKeyClock(func() time.Time { return now }))

	conn, err := grpc.NewClient("passthrough:///localhost:"+port,
		grpc.WithTransportCredentials(clientCreds),
		grpc.WithPerRPCCredentials(iamCreds),
		grpcauth.WithAccessKey(akCreds),
	)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	storage := demov1.NewStorageServiceClient(conn)
	if _, err := storage.PutObject(ctx, &demov1.PutObjectRequest{Bucket: "b", Key: "k"}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	up, err := storage.UploadObject(ctx)
	if err != nil {
		t.Fatalf("UploadObject: %v", err)
	}
	if err := up.Send(&demov1.UploadObjectRequest{Bucket: "b", Key: "k", Chunk: []byte("x")}); err != nil {
		t.Fatalf("UploadObject Send: %v", err)
	}
	if _, err := up.CloseAndRecv(); err != nil {
		t.Fatalf("UploadObject CloseAndRecv: %v", err)
	}
	if _, err := demov1.NewComputeServiceClient(conn).GetInstance(ctx, &demov1.GetInstanceRequest{}); err != nil {
		t.Fatalf("GetInstance: %v", err)
	}
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("Health.Check: %v", err)
	}

	signed := akCall{Signature: true, AmzMD: true, Principal: &interceptors.Principal{
		SubjectID:   akSAID,
		SubjectType: interceptors.SubjectServiceAccount,
		Method:      interceptors.AuthAccessKey,
		AccessKeyID: akKeyID,
		ExpiresAt:   now.UTC().Truncate(time.Second).Add(interceptors.AccessKeySignatureWindow),
	}}
	want := map[string]akCall{
		akPut: signed,
		demov1.StorageService_UploadObject_FullMethodName: signed,
		akCompute: {Bearer: true},
		akHealth:  {},
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if diff := cmp.Diff(want, rec.calls); diff != "" {
		t.Errorf("credentials per method (-want +got):\n%s", diff)
	}
}

// TestAccessKeyCredentialsNeedTLS: without the opt-in, gRPC refuses to dial
// an insecure connection with the credentials; with it, calls on loopback
// are signed.
func TestAccessKeyCredentialsNeedTLS(t *testing.T) {
	if _, err := grpc.NewClient("passthrough:///127.0.0.1:1",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpcauth.WithAccessKey(newAKCreds(t)),
	); err == nil {
		t.Fatal("NewClient with insecure transport succeeded, want an error")
	}

	now := time.Now()
	verifier, err := interceptors.NewAccessKeyVerifier(akStore{}, interceptors.WithAccessKeyClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	rec := &akRecorder{verifier: verifier, calls: map[string]akCall{}}
	addr := akServe(t, insecure.NewCredentials(), rec)
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpcauth.WithAccessKey(newAKCreds(t, grpcauth.WithAccessKeyInsecureTransportForLocalTesting(),
			grpcauth.WithAccessKeyClock(func() time.Time { return now }))),
	)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := demov1.NewStorageServiceClient(conn).PutObject(ctx, &demov1.PutObjectRequest{}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if c := rec.calls[akPut]; !c.Signature || c.Principal == nil {
		t.Errorf("call = %+v, want a verified signature", c)
	}
}
