package iamserver

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

// grpcEnv serves env's services over bufconn and records the full method
// names its interceptor saw.
type grpcEnv struct {
	conn *grpc.ClientConn
	mu   sync.Mutex // guards seen
	seen []string
}

func startGRPC(t *testing.T, env *testEnv) *grpcEnv {
	t.Helper()
	g := &grpcEnv{}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		g.mu.Lock()
		g.seen = append(g.seen, info.FullMethod)
		g.mu.Unlock()
		return h(ctx, req)
	}))
	env.srv.Register(srv)
	go srv.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	g.conn = conn
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
	})
	return g
}

// tokenAnswer is what the three front ends answer, less the token ID that
// differs on every issue.
type tokenAnswer struct {
	Claims    *iamjwt.Claims
	ExpiresAt time.Time
}

func TestFrontEndsAnswerAlike(t *testing.T) {
	env := newTestEnv(t)
	now := env.clock.Now()
	a := env.newServiceAccount(t, "user-alice", "robot")
	g := startGRPC(t, env)
	web := httptest.NewServer(env.srv.HTTPHandler())
	defer web.Close()

	answer := func(t *testing.T, token string, exp time.Time) tokenAnswer {
		t.Helper()
		claims, err := verifyWithJWKS(t, env.srv.JWKS(), token, now)
		if err != nil {
			t.Fatalf("token does not verify: %v", err)
		}
		claims.ID = ""
		return tokenAnswer{Claims: claims, ExpiresAt: exp.UTC()}
	}
	ctx := context.Background()

	for _, proof := range []struct {
		name string
		req  *iamv1.IamTokenServiceCreateRequest
		body string
	}{
		{name: "jwt", req: &iamv1.IamTokenServiceCreateRequest{Identity: &iamv1.IamTokenServiceCreateRequest_Jwt{Jwt: saJWT(t, now, a, nil)}}},
		{name: "oauth", req: &iamv1.IamTokenServiceCreateRequest{Identity: &iamv1.IamTokenServiceCreateRequest_OauthToken{OauthToken: "y0_good-oauth-token"}}},
	} {
		t.Run(proof.name, func(t *testing.T) {
			native, err := iamv1.NewIamTokenServiceClient(g.conn).Create(ctx, proof.req)
			if err != nil {
				t.Fatalf("native: %v", err)
			}
			want := answer(t, native.GetIamToken(), native.GetExpiresAt().AsTime())

			var alias iamv1.IamTokenServiceCreateResponse
			if err := g.conn.Invoke(ctx, "/"+ReferenceTokenServiceName+"/Create", proof.req, &alias); err != nil {
				t.Fatalf("alias: %v", err)
			}
			if diff := cmp.Diff(want, answer(t, alias.GetIamToken(), alias.GetExpiresAt().AsTime())); diff != "" {
				t.Errorf("alias vs native (-want +got):\n%s", diff)
			}

			body := map[string]string{}
			if j := proof.req.GetJwt(); j != "" {
				body["jwt"] = j
			} else {
				body["yandexPassportOauthToken"] = proof.req.GetOauthToken()
			}
			b, _ := json.Marshal(body)
			resp, err := http.Post(web.URL+TokenPath, "application/json", strings.NewReader(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("REST status %d", resp.StatusCode)
			}
			var rest struct {
				IAMToken  string `json:"iamToken"`
				ExpiresAt string `json:"expiresAt"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&rest); err != nil {
				t.Fatal(err)
			}
			exp, err := time.Parse(time.RFC3339, rest.ExpiresAt)
			if err != nil {
				t.Fatalf("expiresAt %q: %v", rest.ExpiresAt, err)
			}
			if diff := cmp.Diff(want, answer(t, rest.IAMToken, exp)); diff != "" {
				t.Errorf("REST vs native (-want +got):\n%s", diff)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
		})
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	wantSeen := []string{
		iamv1.IamTokenService_Create_FullMethodName, "/yandex.cloud.iam.v1.IamTokenService/Create",
		iamv1.IamTokenService_Create_FullMethodName, "/yandex.cloud.iam.v1.IamTokenService/Create",
	}
	if diff := cmp.Diff(wantSeen, g.seen); diff != "" {
		t.Errorf("methods the interceptor saw (-want +got):\n%s", diff)
	}
}

func TestRESTExchangeErrors(t *testing.T) {
	env := newTestEnv(t)
	web := httptest.NewServer(env.srv.HTTPHandler())
	defer web.Close()
	tests := []struct {
		name        string
		method      string
		contentType string
		body        string
		wantStatus  int
	}{
		{name: "GET", method: http.MethodGet, wantStatus: http.StatusMethodNotAllowed},
		{name: "form body", method: http.MethodPost, contentType: "application/x-www-form-urlencoded", body: "jwt=x", wantStatus: http.StatusUnsupportedMediaType},
		{name: "not JSON", method: http.MethodPost, contentType: "application/json", body: "jwt", wantStatus: http.StatusBadRequest},
		{name: "name in another case", method: http.MethodPost, contentType: "application/json", body: `{"JWT":"a"}`, wantStatus: http.StatusBadRequest},
		{name: "repeated name", method: http.MethodPost, contentType: "application/json", body: `{"jwt":"a","jwt":"b"}`, wantStatus: http.StatusBadRequest},
		{name: "number value", method: http.MethodPost, contentType: "application/json", body: `{"jwt":1}`, wantStatus: http.StatusBadRequest},
		{name: "nested value", method: http.MethodPost, contentType: "application/json", body: `{"jwt":{"a":"b"}}`, wantStatus: http.StatusBadRequest},
		{name: "unknown field", method: http.MethodPost, contentType: "application/json", body: `{"jwt":"a","extra":1}`, wantStatus: http.StatusBadRequest},
		{name: "both proofs", method: http.MethodPost, contentType: "application/json", body: `{"jwt":"a","yandexPassportOauthToken":"b"}`, wantStatus: http.StatusBadRequest},
		{name: "no proof", method: http.MethodPost, contentType: "application/json", body: `{}`, wantStatus: http.StatusBadRequest},
		{name: "trailing data", method: http.MethodPost, contentType: "application/json", body: `{"jwt":"a"} {}`, wantStatus: http.StatusBadRequest},
		{name: "empty jwt", method: http.MethodPost, contentType: "application/json", body: `{"jwt":""}`, wantStatus: http.StatusBadRequest},
		{name: "bad jwt", method: http.MethodPost, contentType: "application/json; charset=utf-8", body: `{"jwt":"a.b.c"}`, wantStatus: http.StatusUnauthorized},
		{name: "bad oauth token", method: http.MethodPost, contentType: "application/json", body: `{"yandexPassportOauthToken":"nope"}`, wantStatus: http.StatusUnauthorized},
		{name: "too large", method: http.MethodPost, contentType: "application/json", body: `{"jwt":"` + strings.Repeat("a", maxExchangeBodySize) + `"}`, wantStatus: http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, web.URL+TokenPath, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", resp.StatusCode, tt.wantStatus, b)
			}
			var e errorResponse
			if err := json.Unmarshal(b, &e); err != nil || e.Code != tt.wantStatus || !strings.HasPrefix(e.Message, "iamserver: ") {
				t.Errorf("error body %s: want {code, message}", b)
			}
		})
	}
}

func TestJWKSEndpoint(t *testing.T) {
	env := newTestEnv(t)
	web := httptest.NewServer(env.srv.HTTPHandler())
	defer web.Close()

	resp, err := http.Get(web.URL + JWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if diff := cmp.Diff(string(env.srv.JWKS()), string(body)); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
	if got := resp.Header.Get("Cache-Control"); got != "public, max-age=300" {
		t.Errorf("Cache-Control %q", got)
	}
	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}

	req, _ := http.NewRequest(http.MethodGet, web.URL+JWKSPath, nil)
	req.Header.Set("If-None-Match", etag)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("conditional GET: status %d, want 304", resp.StatusCode)
	}

	// After a rotation the ETag changes, so a cached copy is refetched.
	if err := env.srv.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == etag {
		t.Errorf("after rotation: status %d ETag %q, want 200 and a new ETag", resp.StatusCode, resp.Header.Get("ETag"))
	}

	resp, err = http.Post(web.URL+JWKSPath, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d, want 405", resp.StatusCode)
	}
}

func FuzzParseExchangeRequest(f *testing.F) {
	for _, s := range []string{
		`{"jwt":"a.b.c"}`, `{"yandexPassportOauthToken":"y0_x"}`, `{}`, `{"jwt":null}`,
		`{"jwt":"a","yandexPassportOauthToken":"b"}`, `{"jwt":1}`, `[]`, `{"jwt":"a"}{}`, ``, `{"JWT":"a"}`, `{"jwt":"a","jwt":"b"}`, `{"jwt":"a",}`, `{"jwt":{"x":[1]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := parseExchangeRequest(body)
		if err != nil {
			if strings.Contains(err.Error(), string(body)) && len(body) > 8 {
				t.Errorf("error echoes the body")
			}
			return
		}
		if (req.JWT == nil) == (req.OAuthToken == nil) {
			t.Fatalf("accepted a request without exactly one proof")
		}
		// Whatever is accepted is valid JSON with exactly that one member.
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil || len(m) != 1 {
			t.Errorf("accepted %q, which is not a one-member JSON object", body)
		}
	})
}
