package iamtest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/grpcauth"
	"github.com/iamtoken/iamtoken-go/iamtest"
	"github.com/iamtoken/iamtoken-go/interceptors"
	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

// fetchJWKS reads the issuer's key set over HTTP, as a validator does.
func fetchJWKS(t *testing.T, url string) map[string]*ecdsa.PublicKey {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Keys []struct{ Kid, X, Y string } `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	keys := map[string]*ecdsa.PublicKey{}
	for _, k := range doc.Keys {
		x, _ := base64.RawURLEncoding.DecodeString(k.X)
		y, _ := base64.RawURLEncoding.DecodeString(k.Y)
		keys[k.Kid] = &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
	}
	return keys
}

func verify(t *testing.T, iss *iamtest.Issuer, token string) (*iamjwt.Claims, error) {
	t.Helper()
	keys := fetchJWKS(t, iss.JWKSURL())
	var claims iamjwt.Claims
	_, err := jwt.NewParser(
		jwt.WithValidMethods([]string{"ES256"}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(iamjwt.Issuer),
		jwt.WithAudience(iamjwt.Audience),
	).ParseWithClaims(token, &claims, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		k, ok := keys[kid]
		if !ok {
			return nil, errors.New("unknown kid")
		}
		return k, nil
	})
	return &claims, err
}

func TestIssuerServesTheClientKeySource(t *testing.T) {
	iss := iamtest.NewIssuer(t, nil)
	sa := iss.CreateServiceAccount("", "robot")
	for _, tc := range []struct {
		name    string
		keyJSON []byte
		opts    *grpcauth.ExchangeOptions
	}{
		{name: "gRPC, reference method", keyJSON: sa.AuthorizedKeyJSON, opts: &grpcauth.ExchangeOptions{Endpoint: iss.GRPCAddr(), Insecure: true}},
		{name: "gRPC, our method", keyJSON: sa.Key.JSON(), opts: &grpcauth.ExchangeOptions{Endpoint: iss.GRPCAddr(), GRPCMethod: iamv1.IamTokenService_Create_FullMethodName, Insecure: true}},
		{name: "REST", keyJSON: sa.AuthorizedKeyJSON, opts: &grpcauth.ExchangeOptions{Endpoint: iss.TokenURL(), Insecure: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := grpcauth.ServiceAccountKeySourceFromBytes(tc.keyJSON, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			tok, err := src.Token(context.Background())
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			claims, err := verify(t, iss, tok.Value)
			if err != nil {
				t.Fatalf("the issued token does not verify with the JWKS: %v", err)
			}
			if claims.Subject != sa.ServiceAccountID || claims.SubjectType != iamjwt.SubjectServiceAccount {
				t.Errorf("sub %q sub_type %q, want %q service_account", claims.Subject, claims.SubjectType, sa.ServiceAccountID)
			}
		})
	}
}

func TestIssuerMint(t *testing.T) {
	iss := iamtest.NewIssuer(t, nil)
	now := time.Now()
	tests := []struct {
		name    string
		token   string
		wantErr error
	}{
		{name: "Token", token: iss.Token("user-1", iamjwt.SubjectUserAccount)},
		{name: "plain spec", token: iss.Mint(iamtest.TokenSpec{Subject: "sa-1"})},
		{name: "expired", wantErr: jwt.ErrTokenExpired, token: iss.Mint(iamtest.TokenSpec{Subject: "sa-1", IssuedAt: now.Add(-13 * time.Hour), ExpiresAt: now.Add(-time.Hour)})},
		{name: "no exp", wantErr: jwt.ErrTokenRequiredClaimMissing, token: iss.Mint(iamtest.TokenSpec{Subject: "sa-1", Omit: []string{"exp"}})},
		{name: "other audience", wantErr: jwt.ErrTokenInvalidAudience, token: iss.Mint(iamtest.TokenSpec{Subject: "sa-1", Audience: []string{"someone-else"}})},
		{name: "other issuer", wantErr: jwt.ErrTokenInvalidIssuer, token: iss.Mint(iamtest.TokenSpec{Subject: "sa-1", Issuer: "https://evil.example"})},
		{name: "unknown kid", wantErr: jwt.ErrTokenUnverifiable, token: iss.Mint(iamtest.TokenSpec{Subject: "sa-1", Header: map[string]any{"kid": "nope"}})},
		{name: "foreign key", wantErr: jwt.ErrTokenSignatureInvalid, token: iss.Mint(iamtest.TokenSpec{Subject: "sa-1", ForeignKey: true})},
		{name: "alg none", wantErr: jwt.ErrTokenSignatureInvalid, token: iss.Mint(iamtest.TokenSpec{Subject: "sa-1", Unsigned: true})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := verify(t, iss, tt.token)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("verify: %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("verify: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestIssuerManagementNeedsAPrincipal(t *testing.T) {
	// A stand-in for the server interceptors: every caller is alice.
	asAlice := grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return h(interceptors.NewContextWithPrincipal(ctx, &interceptors.Principal{
			SubjectID: "user-alice", SubjectType: interceptors.SubjectUserAccount, Method: interceptors.AuthIAMToken,
		}), req)
	})
	for _, tc := range []struct {
		name     string
		opts     *iamtest.IssuerOptions
		wantCode codes.Code
	}{
		{name: "no interceptors", wantCode: codes.Unauthenticated},
		{name: "an interceptor that authenticates", opts: &iamtest.IssuerOptions{GRPCServerOptions: []grpc.ServerOption{asAlice}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iss := iamtest.NewIssuer(t, tc.opts)
			conn, err := grpc.NewClient(iss.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_, err = iamv1.NewServiceAccountServiceClient(conn).Create(context.Background(), &iamv1.ServiceAccountServiceCreateRequest{Name: "robot"})
			if got := status.Code(err); got != tc.wantCode {
				t.Fatalf("Create: %v, want %v", err, tc.wantCode)
			}
		})
	}
}

func TestIssuerAccessKeyAndRotation(t *testing.T) {
	iss := iamtest.NewIssuer(t, nil)
	sa := iss.CreateServiceAccount("", "robot")
	keyID, secret := iss.CreateAccessKey(sa.ServiceAccountID)
	got, err := iss.Store.LookupAccessKey(context.Background(), keyID)
	if err != nil || string(got.Secret) != secret {
		t.Fatalf("LookupAccessKey: %v, %v", got, err)
	}
	before := iss.Token(sa.ServiceAccountID, iamjwt.SubjectServiceAccount)
	if err := iss.Server.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := verify(t, iss, before); err != nil {
		t.Errorf("token signed before a rotation: %v", err)
	}
}

// An in-process issuer for a test: create a service account, mint tokens,
// point validators at its JWKS.
func ExampleNewIssuer() {
	iss := iamtest.NewIssuer(nil, nil)
	defer iss.Close()

	sa := iss.CreateServiceAccount("", "robot")
	good := iss.Token(sa.ServiceAccountID, "service_account")
	expired := iss.Mint(iamtest.TokenSpec{
		Subject:   sa.ServiceAccountID,
		IssuedAt:  time.Now().Add(-13 * time.Hour),
		ExpiresAt: time.Now().Add(-time.Hour),
	})
	fmt.Println(good != "", expired != "", iss.JWKSURL() != "")
	// Output: true true true
}
