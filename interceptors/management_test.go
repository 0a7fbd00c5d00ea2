package interceptors_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/authmode"
	"github.com/iamtoken/iamtoken-go/grpcauth"
	"github.com/iamtoken/iamtoken-go/interceptors"
	"github.com/iamtoken/iamtoken-go/internal/devpki"
	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

// The management API stays IAM-token only, over a real TLS gRPC server with
// the full interceptor chain: an access key cannot call AccessKeyService or
// ServiceAccountService, an IAM token can; an IAM token cannot call
// StorageService, an access key can.
//
// Honest clients never send the wrong credential (grpcauth picks it by the
// method's mode), so the wrong-credential clients here are built with
// resolvers that claim every service takes their kind: what a misconfigured
// or hostile client would send.

const (
	mgmtKID     = "test-signing-key-1"
	mgmtUserSA  = "ajeusersa0000001"
	mgmtSAList  = iamv1.ServiceAccountService_List_FullMethodName
	mgmtAKList  = iamv1.AccessKeyService_List_FullMethodName
	mgmtAKMaker = iamv1.AccessKeyService_Create_FullMethodName
)

// mgmtSeen records the Principal each handler saw, by method.
type mgmtSeen struct {
	mu sync.Mutex
	by map[string]*interceptors.Principal // guarded by mu
}

func (s *mgmtSeen) saw(ctx context.Context, method string) {
	p, _ := interceptors.PrincipalFromContext(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.by[method] = p
}

type mgmtAccessKeys struct {
	iamv1.UnimplementedAccessKeyServiceServer
	seen *mgmtSeen
}

func (s mgmtAccessKeys) List(ctx context.Context, _ *iamv1.AccessKeyServiceListRequest) (*iamv1.AccessKeyServiceListResponse, error) {
	s.seen.saw(ctx, mgmtAKList)
	return &iamv1.AccessKeyServiceListResponse{}, nil
}

func (s mgmtAccessKeys) Create(ctx context.Context, _ *iamv1.AccessKeyServiceCreateRequest) (*iamv1.AccessKeyServiceCreateResponse, error) {
	s.seen.saw(ctx, mgmtAKMaker)
	return &iamv1.AccessKeyServiceCreateResponse{}, nil
}

type mgmtServiceAccounts struct {
	iamv1.UnimplementedServiceAccountServiceServer
	seen *mgmtSeen
}

func (s mgmtServiceAccounts) List(ctx context.Context, _ *iamv1.ServiceAccountServiceListRequest) (*iamv1.ServiceAccountServiceListResponse, error) {
	s.seen.saw(ctx, mgmtSAList)
	return &iamv1.ServiceAccountServiceListResponse{}, nil
}

type mgmtStorage struct {
	demov1.UnimplementedStorageServiceServer
	seen *mgmtSeen
}

func (s mgmtStorage) PutObject(ctx context.Context, _ *demov1.PutObjectRequest) (*demov1.PutObjectResponse, error) {
	s.seen.saw(ctx, akPut)
	return &demov1.PutObjectResponse{}, nil
}

func (s mgmtStorage) UploadObject(stream grpc.ClientStreamingServer[demov1.UploadObjectRequest, demov1.UploadObjectResponse]) error {
	s.seen.saw(stream.Context(), demov1.StorageService_UploadObject_FullMethodName)
	for {
		if _, err := stream.Recv(); err != nil {
			return stream.SendAndClose(&demov1.UploadObjectResponse{})
		}
	}
}

// mgmtTLS makes a test CA and a localhost certificate signed by it.
func mgmtTLS(t *testing.T) (server, client credentials.TransportCredentials) {
	t.Helper()
	b := devpki.ForTest(t)
	return credentials.NewTLS(b.ServerConfig()), credentials.NewTLS(b.ClientConfig())
}

// mgmtMust panics on err: the setup of this test cannot fail.
func mgmtMust[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// mgmtToken is an IAM token for mgmtUserSA signed with key, valid for an
// hour from now.
func mgmtToken(t *testing.T, key *ecdsa.PrivateKey, now time.Time) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, iamjwt.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    iamjwt.Issuer,
			Subject:   mgmtUserSA,
			Audience:  jwt.ClaimStrings{iamjwt.Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
			ID:        "mgmt-token-1",
		},
		SubjectType: iamjwt.SubjectServiceAccount,
	})
	tok.Header["kid"] = mgmtKID
	return mgmtMust(tok.SignedString(key))
}

// allServicesAre returns a client-side resolver that claims every service of
// this test takes mode.
func allServicesAre(t *testing.T, mode authmode.Mode) *authmode.Resolver {
	t.Helper()
	var opts []authmode.Option
	for _, svc := range []string{"iamtoken.iam.v1.AccessKeyService", "iamtoken.iam.v1.ServiceAccountService", "iamtoken.demo.v1.StorageService"} {
		opts = append(opts, authmode.WithOverride(svc, mode))
	}
	return mgmtMust(authmode.New(opts...))
}

func TestManagementStaysIAMTokenOnly(t *testing.T) {
	serverTLS, clientTLS := mgmtTLS(t)
	signingKey := mgmtMust(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	verifier := mgmtMust(interceptors.NewAccessKeyVerifier(newAKStore(activeKey())))
	opts := []interceptors.Option{
		interceptors.WithStaticKeys(map[string]crypto.PublicKey{mgmtKID: signingKey.Public()}),
		interceptors.WithAccessKeyVerifier(verifier),
	}
	seen := &mgmtSeen{by: map[string]*interceptors.Principal{}}
	srv := grpc.NewServer(grpc.Creds(serverTLS),
		grpc.ChainUnaryInterceptor(interceptors.UnaryServerInterceptor(opts...)),
		grpc.ChainStreamInterceptor(interceptors.StreamServerInterceptor(opts...)))
	iamv1.RegisterAccessKeyServiceServer(srv, mgmtAccessKeys{seen: seen})
	iamv1.RegisterServiceAccountServiceServer(srv, mgmtServiceAccounts{seen: seen})
	demov1.RegisterStorageServiceServer(srv, mgmtStorage{seen: seen})
	lis := mgmtMust(net.Listen("tcp", "127.0.0.1:0"))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	defer func() {
		srv.Stop()
		<-done
	}()
	_, port, _ := net.SplitHostPort(lis.Addr().String())
	target := "passthrough:///localhost:" + port

	now := time.Now()
	tokenSrc := mgmtMust(grpcauth.NewStaticSource(mgmtToken(t, signingKey, now), now.Add(time.Hour)))
	dial := func(creds ...credentials.PerRPCCredentials) *grpc.ClientConn {
		t.Helper()
		dopts := []grpc.DialOption{grpc.WithTransportCredentials(clientTLS)}
		for _, c := range creds {
			dopts = append(dopts, grpc.WithPerRPCCredentials(c))
		}
		conn := mgmtMust(grpc.NewClient(target, dopts...))
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	iamCreds := func(r *authmode.Resolver) *grpcauth.PerRPCCredentials {
		c := grpcauth.NewPerRPCCredentials(tokenSrc, grpcauth.WithAuthModeResolver(r))
		t.Cleanup(func() { c.Close() })
		return c
	}
	akCreds := func(r *authmode.Resolver) *grpcauth.AccessKeyCredentials {
		return mgmtMust(grpcauth.NewAccessKeyCredentials(akKeyID, akSecret, grpcauth.WithAccessKeyResolver(r)))
	}
	conns := map[string]*grpc.ClientConn{
		"access key only": dial(akCreds(allServicesAre(t, authmode.AccessKey))),
		"IAM token only":  dial(iamCreds(allServicesAre(t, authmode.IAMToken))),
		"both, by mode":   dial(iamCreds(authmode.Default()), akCreds(authmode.Default())),
	}

	tokenPrincipal := &interceptors.Principal{
		SubjectID: mgmtUserSA, SubjectType: interceptors.SubjectServiceAccount, Method: interceptors.AuthIAMToken,
		TokenID: "mgmt-token-1", ExpiresAt: time.Unix(now.Add(time.Hour).Unix(), 0),
	}
	keyPrincipal := &interceptors.Principal{
		SubjectID: akSAID, SubjectType: interceptors.SubjectServiceAccount, Method: interceptors.AuthAccessKey,
		AccessKeyID: akKeyID,
	}
	calls := map[string]func(ctx context.Context, conn *grpc.ClientConn) error{
		mgmtAKList: func(ctx context.Context, conn *grpc.ClientConn) error {
			_, err := iamv1.NewAccessKeyServiceClient(conn).List(ctx, &iamv1.AccessKeyServiceListRequest{})
			return err
		},
		mgmtAKMaker: func(ctx context.Context, conn *grpc.ClientConn) error {
			_, err := iamv1.NewAccessKeyServiceClient(conn).Create(ctx, &iamv1.AccessKeyServiceCreateRequest{})
			return err
		},
		mgmtSAList: func(ctx context.Context, conn *grpc.ClientConn) error {
			_, err := iamv1.NewServiceAccountServiceClient(conn).List(ctx, &iamv1.ServiceAccountServiceListRequest{})
			return err
		},
		akPut: func(ctx context.Context, conn *grpc.ClientConn) error {
			_, err := demov1.NewStorageServiceClient(conn).PutObject(ctx, &demov1.PutObjectRequest{})
			return err
		},
		demov1.StorageService_UploadObject_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn) error {
			s, err := demov1.NewStorageServiceClient(conn).UploadObject(ctx)
			if err != nil {
				return err
			}
			if err := s.Send(&demov1.UploadObjectRequest{Bucket: "b", Key: "k"}); err != nil {
				_, err = s.CloseAndRecv()
				return err
			}
			_, err = s.CloseAndRecv()
			return err
		},
	}

	tests := []struct {
		name, conn, method string
		wantCode           codes.Code
		wantMsg            string
		wantPrincipal      *interceptors.Principal
	}{
		{"access key -> AccessKeyService.List", "access key only", mgmtAKList, codes.Unauthenticated, "needs an IAM token", nil},
		{"access key -> AccessKeyService.Create", "access key only", mgmtAKMaker, codes.Unauthenticated, "needs an IAM token", nil},
		{"access key -> ServiceAccountService.List", "access key only", mgmtSAList, codes.Unauthenticated, "needs an IAM token", nil},
		{"access key -> StorageService.PutObject", "access key only", akPut, codes.OK, "", keyPrincipal},
		{"access key -> StorageService.UploadObject", "access key only", demov1.StorageService_UploadObject_FullMethodName, codes.OK, "", keyPrincipal},
		{"IAM token -> AccessKeyService.List", "IAM token only", mgmtAKList, codes.OK, "", tokenPrincipal},
		{"IAM token -> AccessKeyService.Create", "IAM token only", mgmtAKMaker, codes.OK, "", tokenPrincipal},
		{"IAM token -> ServiceAccountService.List", "IAM token only", mgmtSAList, codes.OK, "", tokenPrincipal},
		{"IAM token -> StorageService.PutObject", "IAM token only", akPut, codes.Unauthenticated, "access keys only", nil},
		{"IAM token -> StorageService.UploadObject", "IAM token only", demov1.StorageService_UploadObject_FullMethodName, codes.Unauthenticated, "access keys only", nil},
		{"both -> AccessKeyService.List", "both, by mode", mgmtAKList, codes.OK, "", tokenPrincipal},
		{"both -> ServiceAccountService.List", "both, by mode", mgmtSAList, codes.OK, "", tokenPrincipal},
		{"both -> StorageService.PutObject", "both, by mode", akPut, codes.OK, "", keyPrincipal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen.mu.Lock()
			delete(seen.by, tt.method)
			seen.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := calls[tt.method](ctx, conns[tt.conn])
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("call: %v, want code %v", err, tt.wantCode)
			}
			if msg := status.Convert(err).Message(); !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("message %q does not contain %q", msg, tt.wantMsg)
			}
			seen.mu.Lock()
			p, reached := seen.by[tt.method]
			seen.mu.Unlock()
			if reached != (tt.wantCode == codes.OK) {
				t.Fatalf("handler reached = %v, want %v", reached, tt.wantCode == codes.OK)
			}
			// An access key's ExpiresAt follows the signing time; check it
			// is within the window and compare the rest.
			if p != nil && p.Method == interceptors.AuthAccessKey {
				if d := p.ExpiresAt.Sub(now); d < 14*time.Minute || d > 16*time.Minute {
					t.Errorf("access-key Principal expires %v after the test began, want about 15m", d)
				}
				q := *p
				q.ExpiresAt = time.Time{}
				p = &q
			}
			if diff := cmp.Diff(tt.wantPrincipal, p); diff != "" {
				t.Errorf("Principal (-want +got):\n%s", diff)
			}
		})
	}
}
