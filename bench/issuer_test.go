package bench

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/iamtoken/iamtoken-go/iamserver"
	"github.com/iamtoken/iamtoken-go/iamtest"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

// referenceTokenURL is the audience service accounts sign for.
const referenceTokenURL = "https://iam.api.cloud.yandex.net/iam/v1/tokens"

// issuerClaims are an IAM token's claims, as iamserver signs them.
type issuerClaims struct {
	jwt.RegisteredClaims
	SubjectType string `json:"sub_type,omitempty"`
}

func newIssuerClaims() *issuerClaims {
	now := time.Now()
	return &issuerClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: iamIssuer, Subject: "ajsaaaaaaaaaaaaaaaaa", Audience: jwt.ClaimStrings{iamAudience},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(12 * time.Hour)),
			ID: "ajjaaaaaaaaaaaaaaaaa",
		},
		SubjectType: "service_account",
	}
}

// BenchmarkIssuerSigningAlgorithm measures what the choice of the issuer's
// signing algorithm costs: signing one IAM token (the issuer, once per
// exchange) and verifying it (every validator, once per token thanks to
// their caches), with the token's and the public key's sizes as metrics.
func BenchmarkIssuerSigningAlgorithm(b *testing.B) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	algs := []struct {
		name   string
		method jwt.SigningMethod
		priv   crypto.Signer
	}{
		{"ES256", jwt.SigningMethodES256, ecKey},
		{"RS256", jwt.SigningMethodRS256, rsaKey},
		{"PS256", jwt.SigningMethodPS256, rsaKey},
		{"EdDSA", jwt.SigningMethodEdDSA, edKey},
	}
	for _, a := range algs {
		pubDER, err := x509.MarshalPKIXPublicKey(a.priv.Public())
		if err != nil {
			b.Fatal(err)
		}
		sign := func() string {
			t := jwt.NewWithClaims(a.method, newIssuerClaims())
			t.Header["kid"] = "ajtaaaaaaaaaaaaaaaaa"
			s, err := t.SignedString(a.priv)
			if err != nil {
				b.Fatal(err)
			}
			return s
		}
		b.Run("sign/"+a.name, func(b *testing.B) {
			b.ReportAllocs()
			var tok string
			for b.Loop() {
				tok = sign()
			}
			b.ReportMetric(float64(len(tok)), "token-bytes")
			b.ReportMetric(float64(len(pubDER)), "pubkey-der-bytes")
		})
		b.Run("verify/"+a.name, func(b *testing.B) {
			tok := sign()
			p := jwt.NewParser(jwt.WithValidMethods([]string{a.name}))
			pub := a.priv.Public()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.ParseWithClaims(tok, &issuerClaims{}, func(*jwt.Token) (any, error) { return pub, nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCreateToken measures the token exchange: a service account's
// PS256 JWT (or a user's OAuth token) in, an ES256 IAM token out; in
// process, over gRPC on loopback (this module's method name and the
// reference deployment's), and over REST on loopback. "golang-jwt-sign" is
// the floor: signing the same claims with golang-jwt alone, no checks.
func BenchmarkCreateToken(b *testing.B) {
	const oauthToken = "y0_bench-oauth-token"
	iss := iamtest.NewIssuer(b, &iamtest.IssuerOptions{OAuthTokens: map[string]string{oauthToken: "user-bench"}})
	sa := iss.CreateServiceAccount("", "bench")
	saJWT := func() string {
		now := time.Now()
		t := jwt.NewWithClaims(jwt.SigningMethodPS256, jwt.MapClaims{
			"iss": sa.ServiceAccountID, "aud": []string{referenceTokenURL},
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		})
		t.Header["kid"] = sa.Key.ID
		s, err := t.SignedString(sa.Key.PrivateKey)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	// The exchange does not forbid reusing a JWT within its hour, so one
	// JWT serves every iteration and the client's signing is not measured.
	raw := saJWT()
	jwtReq := &iamv1.IamTokenServiceCreateRequest{Identity: &iamv1.IamTokenServiceCreateRequest_Jwt{Jwt: raw}}
	oauthReq := &iamv1.IamTokenServiceCreateRequest{Identity: &iamv1.IamTokenServiceCreateRequest_OauthToken{OauthToken: oauthToken}}
	ts := iss.Server.IamTokenService()
	ctx := context.Background()

	b.Run("golang-jwt-sign", func(b *testing.B) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		b.ReportAllocs()
		for b.Loop() {
			t := jwt.NewWithClaims(jwt.SigningMethodES256, newIssuerClaims())
			if _, err := t.SignedString(key); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("in-process/jwt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ts.Create(ctx, jwtReq); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("in-process/jwt-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := ts.Create(ctx, jwtReq); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("in-process/oauth", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ts.Create(ctx, oauthReq); err != nil {
				b.Fatal(err)
			}
		}
	})

	conn, err := grpc.NewClient(iss.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	for _, method := range []struct{ name, path string }{
		{"grpc-loopback/jwt", iamv1.IamTokenService_Create_FullMethodName},
		{"grpc-loopback-reference-name/jwt", "/" + iamserver.ReferenceTokenServiceName + "/Create"},
	} {
		b.Run(method.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var resp iamv1.IamTokenServiceCreateResponse
				if err := conn.Invoke(ctx, method.path, jwtReq, &resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}

	b.Run("rest-loopback/jwt", func(b *testing.B) {
		body, _ := json.Marshal(map[string]string{"jwt": raw})
		client := &http.Client{}
		defer client.CloseIdleConnections()
		b.ReportAllocs()
		for b.Loop() {
			resp, err := client.Post(iss.TokenURL(), "application/json", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			var out struct {
				IAMToken string `json:"iamToken"`
			}
			err = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || out.IAMToken == "" {
				b.Fatalf("status %d, %v", resp.StatusCode, err)
			}
		}
	})
}
