package reliability

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/interceptors"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
)

// TestJWKSOutageAcrossRotation takes the issuer's JWKS endpoint down, then
// rotates the issuer's signing key at once (Server.Rotate, the emergency
// rotation that does not wait for validators to see the new key published).
// While the endpoint is down, the validator keeps accepting tokens signed by
// the keys it fetched earlier, including tokens it has never seen, and
// answers tokens under the new key Unavailable (try again), not
// Unauthenticated. Once the endpoint is back it fetches the new key and
// accepts them, with no restart.
func TestJWKSOutageAcrossRotation(t *testing.T) {
	const (
		refreshEvery = 200 * time.Millisecond
		minRefresh   = 100 * time.Millisecond
	)
	iss, _ := newIssuer(t, nil)
	issuerURL, err := url.Parse(iss.URL())
	if err != nil {
		t.Fatal(err)
	}
	jwksProxy := newFaultProxy(t, issuerURL.Host)
	validator, err := interceptors.NewValidator(
		interceptors.WithJWKSURL("http://"+jwksProxy.Addr()+iss.JWKSURL()[len(iss.URL()):]),
		interceptors.WithJWKSRefreshInterval(refreshEvery),
		interceptors.WithJWKSMinRefreshInterval(minRefresh),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer validator.Close()
	srv := startServer(t, nil, interceptors.WithValidator(validator))
	client := dial(t, srv.addr)

	call := func(token string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		_, err := client.ListInstances(ctx, &demov1.ListInstancesRequest{})
		return err
	}
	oldKid := iss.Server.CurrentKeyID()
	mint := func() string { return iss.Token("ajejwkssa", "service_account") }

	// Healthy: the validator has the current key.
	if err := call(mint()); err != nil {
		t.Fatalf("before the outage: %v", err)
	}
	// Tokens under the old key, minted now but first shown to the validator
	// during the outage, so that its token cache cannot answer for them.
	var unseenOld []string
	for range 5 {
		unseenOld = append(unseenOld, mint())
	}

	jwksProxy.setMode(modeRefuse)
	// Let several background refreshes fail.
	if !waitFor(10*time.Second, func() bool { return jwksProxy.refused.Load() >= 3 }) {
		t.Fatalf("the validator did not try to refresh the key set during the outage")
	}
	if err := iss.Server.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	newKid := iss.Server.CurrentKeyID()
	if newKid == oldKid {
		t.Fatal("Rotate did not change the signing key")
	}
	underNewKey := mint()

	tests := []struct {
		name     string
		token    string
		wantCode codes.Code
	}{
		{"old key, unseen token", unseenOld[0], codes.OK},
		{"old key, another unseen token", unseenOld[1], codes.OK},
		{"new key, JWKS down", underNewKey, codes.Unavailable},
		{"old key, after the new key was refused", unseenOld[2], codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := status.Code(call(tt.token)); got != tt.wantCode {
				t.Errorf("during the outage: code %v, want %v", got, tt.wantCode)
			}
		})
	}
	refusedDuring := jwksProxy.refused.Load()

	// The endpoint comes back: the next fetch (background, or on the
	// unknown kid after minRefresh) brings the new key.
	jwksProxy.setMode(modePass)
	attempts := 0
	ok := waitFor(10*time.Second, func() bool {
		attempts++
		err := call(underNewKey)
		if c := status.Code(err); c != codes.OK && c != codes.Unavailable {
			t.Errorf("after the outage, the new key's token: code %v (%v), want OK or, until the fetch, Unavailable", c, err)
		}
		return err == nil
	})
	if !ok {
		t.Fatalf("the new key's token was still refused 10s after the JWKS came back")
	}
	for i, tok := range []string{unseenOld[3], unseenOld[4], mint()} {
		if err := call(tok); err != nil {
			t.Errorf("after recovery, token %d: %v", i, err)
		}
	}
	t.Logf("JWKS down: %d fetches refused; after Rotate, tokens under the old key (kid %s) accepted: 3 of 3, under the new key (kid %s): Unavailable",
		refusedDuring, oldKid, newKid)
	t.Logf("JWKS back: the new key's token accepted on call %d; JWKS connections passed in all: %d; calls refused by the interceptors: %d",
		attempts, jwksProxy.passed.Load(), srv.refused())
}

// TestImmediateRotationWithDefaultRateLimit shows what an emergency
// rotation (Server.Rotate) costs a validator with the default options, its
// JWKS endpoint up: a token under the new key that arrives within
// DefaultJWKSMinRefreshInterval of the validator's last fetch meets the
// rate limit on unknown-kid fetches and is refused Unauthenticated, which a
// client does not retry. Scheduled rotations publish the next key ten
// minutes ahead, so validators already hold it; this is the documented price
// of the immediate one.
func TestImmediateRotationWithDefaultRateLimit(t *testing.T) {
	iss, _ := newIssuer(t, nil)
	validator, err := interceptors.NewValidator(interceptors.WithJWKSURL(iss.JWKSURL()))
	if err != nil {
		t.Fatal(err)
	}
	defer validator.Close()
	ctx := context.Background()
	if _, err := validator.Validate(ctx, iss.Token("ajerotatesa", "service_account")); err != nil {
		t.Fatalf("before the rotation: %v", err)
	}
	if err := iss.Server.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = validator.Validate(ctx, iss.Token("ajerotatesa", "service_account"))
	t.Logf("a token under the new key, right after Rotate: %v", err)
	if !errors.Is(err, interceptors.ErrInvalidToken) {
		t.Errorf("got %v, want a refusal (ErrInvalidToken, Unauthenticated) until %v after the last fetch",
			err, interceptors.DefaultJWKSMinRefreshInterval)
	}
}
