package iamserver

import (
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/iamtoken/iamtoken-go/interceptors"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

// TestEndToEndWithTheInterceptors serves the issuer behind the real server
// interceptors, which validate tokens against the issuer's JWKS (over HTTP)
// and consult its revocation list and access-key store: the whole loop a
// deployment runs.
func TestEndToEndWithTheInterceptors(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.Now = time.Now })
	web := httptest.NewServer(env.srv.HTTPHandler())
	defer web.Close()
	validator, err := interceptors.NewValidator(
		interceptors.WithJWKSURL(web.URL+JWKSPath),
		interceptors.WithJWKSMinRefreshInterval(time.Nanosecond),
		// Revocation is a validation option: it goes to the Validator.
		interceptors.WithRevocationList(env.srv),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer validator.Close()
	opts := []interceptors.Option{
		interceptors.WithValidator(validator),
		interceptors.WithInsecureTransport(), // bufconn
	}
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(
		grpc.ChainUnaryInterceptor(interceptors.UnaryServerInterceptor(opts...)),
		grpc.ChainStreamInterceptor(interceptors.StreamServerInterceptor(opts...)),
	)
	env.srv.Register(gs)
	go gs.Serve(lis)
	defer gs.Stop()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tokens := iamv1.NewIamTokenServiceClient(conn)
	sas := iamv1.NewServiceAccountServiceClient(conn)
	keys := iamv1.NewKeyServiceClient(conn)
	aks := iamv1.NewAccessKeyServiceClient(conn)
	bearer := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	}
	ctx := context.Background()

	// A user exchanges an OAuth token, with no credentials on the call,
	// under the reference deployment's name.
	var userTok iamv1.IamTokenServiceCreateResponse
	if err := conn.Invoke(ctx, "/"+ReferenceTokenServiceName+"/Create", &iamv1.IamTokenServiceCreateRequest{
		Identity: &iamv1.IamTokenServiceCreateRequest_OauthToken{OauthToken: "y0_good-oauth-token"},
	}, &userTok); err != nil {
		t.Fatalf("OAuth exchange: %v", err)
	}

	// Management needs a token.
	if _, err := sas.Create(ctx, &iamv1.ServiceAccountServiceCreateRequest{Name: "robot"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Create without a token: %v, want Unauthenticated", err)
	}
	sa, err := sas.Create(bearer(userTok.GetIamToken()), &iamv1.ServiceAccountServiceCreateRequest{Name: "robot"})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	saID := sa.GetServiceAccount().GetId()
	if sa.GetServiceAccount().GetCreatedBy() != "user-alice" {
		t.Errorf("created_by %q, want user-alice", sa.GetServiceAccount().GetCreatedBy())
	}
	key, err := keys.Create(bearer(userTok.GetIamToken()), &iamv1.KeyServiceCreateRequest{ServiceAccountId: saID})
	if err != nil {
		t.Fatalf("KeyService.Create: %v", err)
	}

	// The service account exchanges a JWT signed with the key it was given.
	var file AuthorizedKeyFile
	if err := json.Unmarshal([]byte(key.GetAuthorizedKeyJson()), &file); err != nil {
		t.Fatal(err)
	}
	robot := saWithKey{sa: &ServiceAccount{ID: saID}, key: &AuthorizedKey{ID: file.ID}, priv: parsePrivatePEM(t, file.PrivateKey)}
	saTok, err := tokens.Create(ctx, &iamv1.IamTokenServiceCreateRequest{
		Identity: &iamv1.IamTokenServiceCreateRequest_Jwt{Jwt: saJWT(t, time.Now(), robot, nil)},
	})
	if err != nil {
		t.Fatalf("JWT exchange: %v", err)
	}
	// It manages its own access keys, and cannot delete itself.
	if _, err := aks.Create(bearer(saTok.GetIamToken()), &iamv1.AccessKeyServiceCreateRequest{ServiceAccountId: saID}); err != nil {
		t.Fatalf("AccessKeyService.Create as the account: %v", err)
	}
	if _, err := sas.Delete(bearer(saTok.GetIamToken()), &iamv1.ServiceAccountServiceDeleteRequest{ServiceAccountId: saID}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Delete itself: %v, want PermissionDenied", err)
	}

	// After a rotation, tokens signed by the old and the new key both pass.
	if err := env.srv.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	fresh, err := tokens.CreateForServiceAccount(bearer(userTok.GetIamToken()), &iamv1.IamTokenServiceCreateForServiceAccountRequest{ServiceAccountId: saID})
	if err != nil {
		t.Fatalf("CreateForServiceAccount: %v", err)
	}
	for name, tok := range map[string]string{"old key": saTok.GetIamToken(), "new key": fresh.GetIamToken()} {
		if _, err := keys.List(bearer(tok), &iamv1.KeyServiceListRequest{ServiceAccountId: saID}); err != nil {
			t.Errorf("token signed by the %s: %v", name, err)
		}
	}

	// A revoked token is refused from then on.
	if _, err := tokens.Revoke(bearer(userTok.GetIamToken()), &iamv1.IamTokenServiceRevokeRequest{IamToken: saTok.GetIamToken()}); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if _, err := keys.List(bearer(saTok.GetIamToken()), &iamv1.KeyServiceListRequest{ServiceAccountId: saID}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("revoked token: %v, want Unauthenticated", err)
	}
}
