package iamserver

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

func TestCreateWithJWT(t *testing.T) {
	env := newTestEnv(t)
	now := env.clock.Now()
	a := env.newServiceAccount(t, "user-alice", "robot")
	other := env.newServiceAccount(t, "user-alice", "other-robot")
	stranger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		jwt      func() string
		wantCode codes.Code
	}{
		{name: "good, aud as array (reference SDK)", jwt: func() string { return saJWT(t, now, a, nil) }},
		{name: "good, aud as string", jwt: func() string {
			return saJWT(t, now, a, func(c jwt.MapClaims, _ map[string]any) { c["aud"] = iamjwt.ReferenceTokenURL })
		}},
		{name: "good, our own token URL", jwt: func() string {
			return saJWT(t, now, a, func(c jwt.MapClaims, _ map[string]any) { c["aud"] = iamjwt.Issuer + TokenPath })
		}},
		{name: "good, exactly one hour", jwt: func() string { return saJWT(t, now.Add(-59*time.Minute), a, nil) }},
		{name: "wrong kid", wantCode: codes.Unauthenticated, jwt: func() string {
			return saJWT(t, now, a, func(_ jwt.MapClaims, h map[string]any) { h["kid"] = "ajkaaaaaaaaaaaaaaaaa" })
		}},
		{name: "malformed kid", wantCode: codes.Unauthenticated, jwt: func() string {
			return saJWT(t, now, a, func(_ jwt.MapClaims, h map[string]any) { h["kid"] = "../../etc/passwd" })
		}},
		{name: "no kid", wantCode: codes.Unauthenticated, jwt: func() string {
			return saJWT(t, now, a, func(_ jwt.MapClaims, h map[string]any) { delete(h, "kid") })
		}},
		{name: "another account's kid", wantCode: codes.Unauthenticated, jwt: func() string {
			return saJWT(t, now, a, func(_ jwt.MapClaims, h map[string]any) { h["kid"] = other.key.ID })
		}},
		{name: "iss is not the key's owner", wantCode: codes.Unauthenticated, jwt: func() string {
			return saJWT(t, now, a, func(c jwt.MapClaims, _ map[string]any) { c["iss"] = other.sa.ID })
		}},
		{name: "wrong aud", wantCode: codes.Unauthenticated, jwt: func() string {
			return saJWT(t, now, a, func(c jwt.MapClaims, _ map[string]any) { c["aud"] = "https://evil.example/iam/v1/tokens" })
		}},
		{name: "no aud", wantCode: codes.Unauthenticated, jwt: func() string {
			return saJWT(t, now, a, func(c jwt.MapClaims, _ map[string]any) { delete(c, "aud") })
		}},
		{name: "expired", wantCode: codes.Unauthenticated, jwt: func() string { return saJWT(t, now.Add(-2*time.Hour), a, nil) }},
		{name: "no exp", wantCode: codes.Unauthenticated, jwt: func() string {
			return saJWT(t, now, a, func(c jwt.MapClaims, _ map[string]any) { delete(c, "exp") })
		}},
		{name: "no iat", wantCode: codes.Unauthenticated, jwt: func() string {
			return saJWT(t, now, a, func(c jwt.MapClaims, _ map[string]any) { delete(c, "iat") })
		}},
		// A client clock up to MaxExchangeIATSkew ahead still gets tokens.
		{name: "good, client clock 4m59s ahead", jwt: func() string { return saJWT(t, now.Add(MaxExchangeIATSkew-time.Second), a, nil) }},
		{name: "issued too far in the future", wantCode: codes.Unauthenticated, jwt: func() string {
			return saJWT(t, now.Add(MaxExchangeIATSkew+time.Second), a, nil)
		}},
		{name: "issued in the future, lifetime over one hour", wantCode: codes.Unauthenticated, jwt: func() string {
			return saJWT(t, now.Add(4*time.Minute), a, func(c jwt.MapClaims, _ map[string]any) {
				c["exp"] = now.Add(4*time.Minute + time.Hour + time.Second).Unix()
			})
		}},
		{name: "lifetime over one hour", wantCode: codes.Unauthenticated, jwt: func() string {
			return saJWT(t, now, a, func(c jwt.MapClaims, _ map[string]any) { c["exp"] = now.Add(time.Hour + time.Second).Unix() })
		}},
		{name: "oversized", wantCode: codes.Unauthenticated, jwt: func() string {
			return saJWT(t, now, a, func(c jwt.MapClaims, _ map[string]any) { c["pad"] = strings.Repeat("x", MaxExchangeJWTSize) })
		}},
		{name: "signed by another key", wantCode: codes.Unauthenticated, jwt: func() string {
			b := a
			b.priv = stranger
			return saJWT(t, now, b, nil)
		}},
		{name: "signed RS256", wantCode: codes.Unauthenticated, jwt: func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
				"iss": a.sa.ID, "aud": iamjwt.ReferenceTokenURL, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			})
			tok.Header["kid"] = a.key.ID
			s, _ := tok.SignedString(a.priv)
			return s
		}},
		{name: "alg none", wantCode: codes.Unauthenticated, jwt: func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{
				"iss": a.sa.ID, "aud": iamjwt.ReferenceTokenURL, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			})
			tok.Header["kid"] = a.key.ID
			s, _ := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
			return s
		}},
		{name: "garbage", wantCode: codes.Unauthenticated, jwt: func() string { return "not.a.jwt" }},
		{name: "empty", wantCode: codes.InvalidArgument, jwt: func() string { return "" }},
	}
	ts := env.srv.IamTokenService()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := tt.jwt()
			resp, err := ts.Create(context.Background(), &iamv1.IamTokenServiceCreateRequest{
				Identity: &iamv1.IamTokenServiceCreateRequest_Jwt{Jwt: raw},
			})
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("Create: code %v, want %v (err %v)", got, tt.wantCode, err)
			}
			if err != nil {
				if raw != "" && strings.Contains(err.Error(), raw) {
					t.Errorf("the error echoes the JWT")
				}
				return
			}
			claims, err := verifyWithJWKS(t, env.srv.JWKS(), resp.GetIamToken(), now)
			if err != nil {
				t.Fatalf("issued token does not verify with the JWKS: %v", err)
			}
			want := &iamjwt.Claims{
				RegisteredClaims: jwt.RegisteredClaims{
					Issuer: iamjwt.Issuer, Subject: a.sa.ID, Audience: jwt.ClaimStrings{iamjwt.Audience},
					IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(12 * time.Hour)),
					ID: claims.ID,
				},
				SubjectType: iamjwt.SubjectServiceAccount,
			}
			if diff := cmp.Diff(want, claims); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
			if !resp.GetExpiresAt().AsTime().Equal(now.Add(12 * time.Hour)) {
				t.Errorf("expires_at %v, want %v", resp.GetExpiresAt().AsTime(), now.Add(12*time.Hour))
			}
		})
	}

	t.Run("key shorter than 2048 bits", func(t *testing.T) {
		b := a
		b.priv = weak
		b.key = &AuthorizedKey{ID: "ajkweakweakweakweak0", ServiceAccountID: a.sa.ID, Algorithm: "RSA_2048",
			PublicKeyPEM: publicPEM(t, &weak.PublicKey), CreatedAt: now}
		if err := env.store.CreateAuthorizedKey(context.Background(), b.key); err != nil {
			t.Fatal(err)
		}
		_, err := env.srv.ExchangeJWT(context.Background(), saJWT(t, now, b, nil))
		if err == nil || !strings.Contains(err.Error(), "no usable key") {
			t.Fatalf("ExchangeJWT with a 1024-bit key: %v, want a refusal", err)
		}
	})

	t.Run("deleted service account", func(t *testing.T) {
		gone := env.newServiceAccount(t, "user-alice", "doomed")
		raw := saJWT(t, now, gone, nil)
		if err := env.store.DeleteServiceAccount(context.Background(), gone.sa.ID); err != nil {
			t.Fatal(err)
		}
		_, err := ts.Create(context.Background(), &iamv1.IamTokenServiceCreateRequest{
			Identity: &iamv1.IamTokenServiceCreateRequest_Jwt{Jwt: raw},
		})
		if got := status.Code(err); got != codes.Unauthenticated {
			t.Fatalf("code %v, want Unauthenticated", got)
		}
	})
}

func TestCreateWithOAuthToken(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.TokenLifetime = time.Hour })
	now := env.clock.Now()
	tests := []struct {
		name     string
		req      *iamv1.IamTokenServiceCreateRequest
		wantSub  string
		wantCode codes.Code
	}{
		{name: "known token", wantSub: "user-alice",
			req: &iamv1.IamTokenServiceCreateRequest{Identity: &iamv1.IamTokenServiceCreateRequest_OauthToken{OauthToken: "y0_good-oauth-token"}}},
		{name: "unknown token", wantCode: codes.Unauthenticated,
			req: &iamv1.IamTokenServiceCreateRequest{Identity: &iamv1.IamTokenServiceCreateRequest_OauthToken{OauthToken: "y0_good-oauth-tokeN"}}},
		{name: "oversized token", wantCode: codes.Unauthenticated,
			req: &iamv1.IamTokenServiceCreateRequest{Identity: &iamv1.IamTokenServiceCreateRequest_OauthToken{OauthToken: strings.Repeat("y", MaxOAuthTokenSize+1)}}},
		{name: "empty token", wantCode: codes.InvalidArgument,
			req: &iamv1.IamTokenServiceCreateRequest{Identity: &iamv1.IamTokenServiceCreateRequest_OauthToken{}}},
		{name: "no identity", wantCode: codes.InvalidArgument, req: &iamv1.IamTokenServiceCreateRequest{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := env.srv.IamTokenService().Create(context.Background(), tt.req)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("Create: code %v, want %v (err %v)", got, tt.wantCode, err)
			}
			if err != nil {
				if strings.Contains(err.Error(), "y0_good") {
					t.Errorf("the error echoes the OAuth token: %v", err)
				}
				return
			}
			claims, err := verifyWithJWKS(t, env.srv.JWKS(), resp.GetIamToken(), now)
			if err != nil {
				t.Fatal(err)
			}
			if claims.Subject != tt.wantSub || claims.SubjectType != iamjwt.SubjectUserAccount {
				t.Errorf("sub %q sub_type %q, want %q user_account", claims.Subject, claims.SubjectType, tt.wantSub)
			}
			// A configured lifetime below 12 h is honoured.
			if got := claims.ExpiresAt.Sub(claims.IssuedAt.Time); got != time.Hour {
				t.Errorf("lifetime %v, want 1h", got)
			}
		})
	}
}

func TestOptionsValidation(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{name: "no store", opts: Options{}},
		{name: "lifetime over 12h", opts: Options{Store: NewMemoryStore(), TokenLifetime: 13 * time.Hour}},
		{name: "negative lifetime", opts: Options{Store: NewMemoryStore(), TokenLifetime: -time.Hour}},
		{name: "rotation too often", opts: Options{Store: NewMemoryStore(), KeyRotationInterval: time.Second}},
		{name: "empty OAuth user", opts: Options{Store: NewMemoryStore(), OAuthTokens: map[string]string{"t": ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := New(context.Background(), tt.opts); err == nil {
				s.Close()
				t.Fatal("New succeeded, want an error")
			}
		})
	}
}
