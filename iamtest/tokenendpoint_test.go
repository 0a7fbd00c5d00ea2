package iamtest_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/iamtest"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

const refAud = "https://iam.api.cloud.yandex.net/iam/v1/tokens"

var (
	key   = sync.OnceValue(func() *iamtest.KeyFile { return iamtest.NewKeyFile("kid1", "sa1") })
	other = sync.OnceValue(func() *iamtest.KeyFile { return iamtest.NewKeyFile("kid1", "sa1") })
)

// psAutoSalt signs PS256 with the longest salt, which RFC 7518 forbids and
// golang-jwt's verifier would still accept.
var psAutoSalt = &jwt.SigningMethodRSAPSS{
	SigningMethodRSA: &jwt.SigningMethodRSA{Name: "PS256", Hash: crypto.SHA256},
	Options:          &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto},
}

// signed makes a JWT with the given method, header kid and claims.
func signed(t *testing.T, method jwt.SigningMethod, kid any, claims jwt.MapClaims, priv *rsa.PrivateKey) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != nil {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func dial(t *testing.T, ep *iamtest.TokenEndpoint) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(ep.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func create(ctx context.Context, conn *grpc.ClientConn, method, jwtValue string) (*iamv1.IamTokenServiceCreateResponse, error) {
	resp := new(iamv1.IamTokenServiceCreateResponse)
	req := &iamv1.IamTokenServiceCreateRequest{Identity: &iamv1.IamTokenServiceCreateRequest_Jwt{Jwt: jwtValue}}
	return resp, conn.Invoke(ctx, method, req, resp)
}

func TestTokenEndpointVerifiesJWT(t *testing.T) {
	now := time.Now()
	claims := func(change map[string]any) jwt.MapClaims {
		c := jwt.MapClaims{"iss": "sa1", "aud": refAud, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		for k, v := range change {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return c
	}
	ps := jwt.SigningMethodPS256
	tests := []struct {
		name    string
		jwt     func(t *testing.T) string
		wantErr string // "" for accepted
	}{
		{"valid, aud a string", func(t *testing.T) string { return signed(t, ps, "kid1", claims(nil), key().PrivateKey) }, ""},
		{"valid, aud an array", func(t *testing.T) string {
			return signed(t, ps, "kid1", claims(map[string]any{"aud": []string{refAud}}), key().PrivateKey)
		}, ""},
		{"RS256", func(t *testing.T) string {
			return signed(t, jwt.SigningMethodRS256, "kid1", claims(nil), key().PrivateKey)
		}, "signing method RS256 is invalid"},
		{"salt longer than the hash", func(t *testing.T) string { return signed(t, psAutoSalt, "kid1", claims(nil), key().PrivateKey) }, "PSS salt length"},
		{"no kid", func(t *testing.T) string { return signed(t, ps, nil, claims(nil), key().PrivateKey) }, "header kid is missing"},
		{"unknown kid", func(t *testing.T) string { return signed(t, ps, "kid2", claims(nil), key().PrivateKey) }, `unknown kid "kid2"`},
		{"signed by another key", func(t *testing.T) string { return signed(t, ps, "kid1", claims(nil), other().PrivateKey) }, "signature is invalid"},
		{"iss of another account", func(t *testing.T) string {
			return signed(t, ps, "kid1", claims(map[string]any{"iss": "sa2"}), key().PrivateKey)
		}, `iss "sa2" is not the key's account`},
		{"wrong aud", func(t *testing.T) string {
			return signed(t, ps, "kid1", claims(map[string]any{"aud": "https://elsewhere"}), key().PrivateKey)
		}, "invalid audience"},
		{"no exp", func(t *testing.T) string {
			return signed(t, ps, "kid1", claims(map[string]any{"exp": nil}), key().PrivateKey)
		}, "exp claim is required"},
		{"no iat", func(t *testing.T) string {
			return signed(t, ps, "kid1", claims(map[string]any{"iat": nil}), key().PrivateKey)
		}, "iat is missing"},
		{"expired", func(t *testing.T) string {
			return signed(t, ps, "kid1", claims(map[string]any{"iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix()}), key().PrivateKey)
		}, "token is expired"},
		{"lives longer than an hour", func(t *testing.T) string {
			return signed(t, ps, "kid1", claims(map[string]any{"exp": now.Add(2 * time.Hour).Unix()}), key().PrivateKey)
		}, "exp is more than 1h0m0s after iat"},
		{"issued in the future", func(t *testing.T) string {
			return signed(t, ps, "kid1", claims(map[string]any{"iat": now.Add(10 * time.Minute).Unix()}), key().PrivateKey)
		}, "token used before issued"},
	}
	ep := iamtest.NewTokenEndpoint()
	defer ep.Close()
	ep.AddKeyFile(key())
	conn := dial(t, ep)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := create(context.Background(), conn, iamtest.CreateMethod, tt.jwt(t))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Create: %v", err)
				}
				if account, ok := ep.Subject(resp.GetIamToken()); !ok || account != "sa1" {
					t.Errorf("issued to %q, want sa1", account)
				}
				return
			}
			if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Create: %v, want Unauthenticated mentioning %q", err, tt.wantErr)
			}
			if ep.LastRefusal() == "" {
				t.Error("LastRefusal is empty")
			}
		})
	}
}

func TestTokenEndpointServesBothMethodNames(t *testing.T) {
	ep := iamtest.NewTokenEndpoint()
	defer ep.Close()
	ep.AddKeyFile(key())
	ep.SetLifetime(time.Hour)
	conn := dial(t, ep)
	now := time.Now()
	good := signed(t, jwt.SigningMethodPS256, "kid1",
		jwt.MapClaims{"iss": "sa1", "aud": refAud, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}, key().PrivateKey)
	for _, m := range []string{iamtest.ReferenceCreateMethod, iamtest.CreateMethod, iamtest.CreateMethod} {
		resp, err := create(context.Background(), conn, m, good)
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		if lt := time.Until(resp.GetExpiresAt().AsTime()); lt > time.Hour || lt < 59*time.Minute {
			t.Errorf("%s: token lives %s, want about 1h", m, lt)
		}
	}
	if got, want := ep.Calls(), (iamtest.EndpointCalls{ReferenceGRPC: 1, GRPC: 2}); got != want {
		t.Errorf("Calls = %+v, want %+v", got, want)
	}
}

func TestTokenEndpointRefusesWireErrors(t *testing.T) {
	ep := iamtest.NewTokenEndpoint()
	defer ep.Close()
	ep.AddOAuthToken("y0_ok", "user1")
	conn := dial(t, ep)

	t.Run("gRPC call with an authorization", func(t *testing.T) {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer t1.x")
		resp := new(iamv1.IamTokenServiceCreateResponse)
		err := conn.Invoke(ctx, iamtest.CreateMethod, &iamv1.IamTokenServiceCreateRequest{
			Identity: &iamv1.IamTokenServiceCreateRequest_OauthToken{OauthToken: "y0_ok"}}, resp)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "must carry no authorization") {
			t.Fatalf("Create: %v, want InvalidArgument about the authorization", err)
		}
	})
	t.Run("gRPC call without identity", func(t *testing.T) {
		err := conn.Invoke(context.Background(), iamtest.CreateMethod, &iamv1.IamTokenServiceCreateRequest{}, new(iamv1.IamTokenServiceCreateResponse))
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("Create: %v, want InvalidArgument", err)
		}
	})

	rest := []struct {
		name, method, path, contentType, body, auth string
		wantStatus                                  int
		wantMsg                                     string
	}{
		{"valid", "POST", "/iam/v1/tokens", "application/json", `{"yandexPassportOauthToken":"y0_ok"}`, "", 200, ""},
		{"unknown OAuth token", "POST", "/iam/v1/tokens", "application/json", `{"yandexPassportOauthToken":"y0_no"}`, "", 401, "unknown OAuth token"},
		{"GET", "GET", "/iam/v1/tokens", "application/json", ``, "", 400, "method GET, want POST"},
		{"wrong path", "POST", "/iam/v1/token", "application/json", `{"yandexPassportOauthToken":"y0_ok"}`, "", 400, `path \"/iam/v1/token\"`},
		{"form body", "POST", "/iam/v1/tokens", "application/x-www-form-urlencoded", `jwt=x`, "", 400, "Content-Type"},
		{"unknown field", "POST", "/iam/v1/tokens", "application/json", `{"oauthToken":"y0_ok"}`, "", 400, "only jwt or yandexPassportOauthToken"},
		{"both proofs", "POST", "/iam/v1/tokens", "application/json", `{"jwt":"x","yandexPassportOauthToken":"y0_ok"}`, "", 400, "exactly one"},
		{"with an authorization", "POST", "/iam/v1/tokens", "application/json", `{"yandexPassportOauthToken":"y0_ok"}`, "Bearer t1.x", 400, "no authorization"},
	}
	base := strings.TrimSuffix(ep.RESTURL(), iamtest.RESTPath)
	for _, tt := range rest {
		t.Run("REST "+tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, base+tt.path, bytes.NewReader([]byte(tt.body)))
			req.Header.Set("Content-Type", tt.contentType)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.wantStatus)
			}
			if tt.wantStatus == 200 {
				var a struct{ IAMToken, ExpiresAt string }
				if err := json.Unmarshal(body, &a); err != nil || a.IAMToken == "" {
					t.Fatalf("answer %s: %v", body, err)
				}
				if _, err := time.Parse(time.RFC3339, a.ExpiresAt); err != nil {
					t.Errorf("expiresAt %q is not RFC 3339", a.ExpiresAt)
				}
				return
			}
			if !strings.Contains(string(body), tt.wantMsg) {
				t.Errorf("answer %s does not mention %q", body, tt.wantMsg)
			}
		})
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestTokenEndpointFailNext(t *testing.T) {
	ep := iamtest.NewTokenEndpoint()
	defer ep.Close()
	ep.AddOAuthToken("y0_ok", "user1")
	tests := []struct {
		code       codes.Code
		wantStatus int
	}{
		{codes.Unavailable, 503},
		{codes.ResourceExhausted, 429},
		{codes.PermissionDenied, 403},
		{codes.Internal, 500},
	}
	client := &http.Client{}
	defer client.CloseIdleConnections()
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			ep.FailNext(1, tt.code)
			for i, want := range []int{tt.wantStatus, 200} {
				resp, err := client.Post(ep.RESTURL(), "application/json", strings.NewReader(`{"yandexPassportOauthToken":"y0_ok"}`))
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Errorf("call %d: status %d, want %d", i, resp.StatusCode, want)
				}
			}
		})
	}
}

func TestTokenEndpointCloseEndsDelayedCalls(t *testing.T) {
	ep := iamtest.NewTokenEndpoint()
	ep.SetDelay(time.Hour)
	conn := dial(t, ep)
	errc := make(chan error, 1)
	go func() {
		_, err := create(context.Background(), conn, iamtest.CreateMethod, "x.y.z")
		errc <- err
	}()
	// Wait until the call is inside the endpoint, then close it.
	for ep.Calls().GRPC == 0 {
		time.Sleep(time.Millisecond)
	}
	ep.Close()
	if err := <-errc; status.Code(err) != codes.Unavailable {
		t.Fatalf("delayed call ended with %v, want Unavailable", err)
	}
}

func TestKeyFileFormat(t *testing.T) {
	k := key()
	var f map[string]string
	if err := json.Unmarshal(k.JSON(), &f); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"id", "service_account_id", "created_at", "key_algorithm", "public_key", "private_key"} {
		if f[name] == "" {
			t.Errorf("key file lacks %s", name)
		}
	}
	if !strings.HasPrefix(f["private_key"], "PLEASE DO NOT REMOVE THIS LINE!") {
		t.Error("private_key does not start with the warning line")
	}
	if s := k.String(); strings.Contains(s, "PRIVATE") {
		t.Errorf("String %q shows the key", s)
	}
	var camel map[string]string
	if err := json.Unmarshal(k.CamelJSON(), &camel); err != nil || camel["serviceAccountId"] != "sa1" {
		t.Errorf("CamelJSON: %v, %v", camel["serviceAccountId"], err)
	}
}
