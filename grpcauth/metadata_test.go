package grpcauth_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iamtoken/iamtoken-go/grpcauth"
	"github.com/iamtoken/iamtoken-go/iamtest"
)

func newMetadataSource(t *testing.T, addr string) *grpcauth.MetadataSource {
	t.Helper()
	src, err := grpcauth.NewMetadataSource(&grpcauth.MetadataOptions{Addr: addr})
	if err != nil {
		t.Fatalf("NewMetadataSource: %v", err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

func TestMetadataSource(t *testing.T) {
	tests := []struct {
		name         string
		expiresIn    time.Duration
		wantLifetime time.Duration
	}{
		{"fresh token", 12 * time.Hour, 12 * time.Hour},
		{"token near the end of its life", 7 * time.Minute, 7 * time.Minute},
		{"one second left", time.Second, time.Second},
		{"a longer lifetime is not believed", 48 * time.Hour, grpcauth.MaxLifetime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md := iamtest.NewMetadataServer()
			defer md.Close()
			md.SetToken("t1.vm-token", tt.expiresIn)
			src := newMetadataSource(t, md.Addr())

			tok, err := src.Token(context.Background())
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if tok.Value != "t1.vm-token" {
				t.Errorf("Value = %q, want t1.vm-token", tok.Value)
			}
			// expires_in is what remains: the expiry counts from now.
			if got := tok.Expiry.Sub(tok.Obtained); got != tt.wantLifetime {
				t.Errorf("Expiry - Obtained = %s, want %s", got, tt.wantLifetime)
			}
			if diff := cmp.Diff([]string(nil), md.BadRequests()); diff != "" {
				t.Errorf("requests that broke the wire format (-want +got):\n%s", diff)
			}
			if md.Calls() != 1 {
				t.Errorf("Calls = %d, want 1", md.Calls())
			}
		})
	}
}

func TestMetadataSourceAddrFromEnv(t *testing.T) {
	md := iamtest.NewMetadataServer()
	defer md.Close()
	t.Setenv(grpcauth.EnvMetadataAddr, md.Addr())
	src, err := grpcauth.NewMetadataSource(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.Addr() != md.Addr() {
		t.Errorf("Addr = %q, want %q", src.Addr(), md.Addr())
	}
	if _, err := src.Token(context.Background()); err != nil {
		t.Fatalf("Token: %v", err)
	}

	t.Setenv(grpcauth.EnvMetadataAddr, "")
	def, err := grpcauth.NewMetadataSource(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer def.Close()
	if def.Addr() != grpcauth.DefaultMetadataAddr {
		t.Errorf("Addr = %q, want %q", def.Addr(), grpcauth.DefaultMetadataAddr)
	}
}

func TestMetadataSourceFailures(t *testing.T) {
	tests := []struct {
		name          string
		setup         func(md *iamtest.MetadataServer)
		ctxTimeout    time.Duration
		wantErr       string
		wantTemporary bool
		wantIs        error
	}{
		{"no service account", func(md *iamtest.MetadataServer) { md.SetNotFound(true) }, 0,
			"no service account is attached to this VM", false, nil},
		{"server error", func(md *iamtest.MetadataServer) { md.SetStatus(http.StatusInternalServerError) }, 0,
			"HTTP 500", true, nil},
		{"unavailable", func(md *iamtest.MetadataServer) { md.SetStatus(http.StatusServiceUnavailable) }, 0,
			"HTTP 503", true, nil},
		{"rate limited", func(md *iamtest.MetadataServer) { md.SetStatus(http.StatusTooManyRequests) }, 0,
			"HTTP 429", true, nil},
		{"forbidden", func(md *iamtest.MetadataServer) { md.SetStatus(http.StatusForbidden) }, 0,
			"HTTP 403", false, nil},
		{"slow answer", func(md *iamtest.MetadataServer) { md.SetDelay(time.Hour) }, 50 * time.Millisecond,
			"deadline exceeded", true, context.DeadlineExceeded},
		{"connection refused", func(md *iamtest.MetadataServer) { md.Close() }, 0,
			"connection refused", true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md := iamtest.NewMetadataServer()
			defer md.Close()
			md.SetToken("t1.vm-token", time.Hour)
			addr := md.Addr()
			tt.setup(md)
			src := newMetadataSource(t, addr)
			fe, err := fetchError(t, src, tt.ctxTimeout)
			if fe.Source != "metadata service" {
				t.Fatalf("error %v is not the metadata service's", err)
			}
			if fe.Temporary != tt.wantTemporary {
				t.Errorf("Temporary = %v, want %v (%v)", fe.Temporary, tt.wantTemporary, err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
		})
	}
}

func TestMetadataSourceRecoversAfterFailures(t *testing.T) {
	md := iamtest.NewMetadataServer()
	defer md.Close()
	md.FailNext(2, http.StatusInternalServerError)
	src := newMetadataSource(t, md.Addr())
	for i := 0; i < 2; i++ {
		if _, err := src.Token(context.Background()); !grpcauth.IsTemporary(err) {
			t.Fatalf("call %d: error %v, want a temporary one", i, err)
		}
	}
	if _, err := src.Token(context.Background()); err != nil {
		t.Fatalf("call 3: %v", err)
	}
	if md.Calls() != 3 {
		t.Errorf("Calls = %d, want 3", md.Calls())
	}
}

func TestMetadataMalformedAnswers(t *testing.T) {
	const token = "t1.secret-vm-token"
	tests := []struct {
		name, body, wantErr string
	}{
		{"empty body", ``, "not a JSON object"},
		{"plain text", `t1.secret-vm-token`, "not a JSON object"},
		{"JSON array", `[{"access_token":"t1.secret-vm-token","expires_in":60}]`, "not a JSON object"},
		{"truncated", `{"access_token":"t1.secret-vm-token","expires_in":6`, "not valid JSON"},
		{"trailing data", `{"access_token":"t1.secret-vm-token","expires_in":60}x`, "unexpected data after the JSON object"},
		{"missing access_token", `{"expires_in":60,"token_type":"Bearer"}`, "access_token is missing"},
		{"empty access_token", `{"access_token":"","expires_in":60}`, "access_token is empty"},
		{"access_token with a control byte", `{"access_token":"t1.secret-vm-token\u0000","expires_in":60}`, "access_token has a byte that is not printable ASCII"},
		{"access_token is an object", `{"access_token":{"v":"t1.secret-vm-token"},"expires_in":60}`, `field "access_token" has the wrong type`},
		{"missing expires_in", `{"access_token":"t1.secret-vm-token","token_type":"Bearer"}`, "expires_in is missing"},
		{"expires_in is a string", `{"access_token":"t1.secret-vm-token","expires_in":"60"}`, "expires_in is not a number"},
		{"expires_in is fractional", `{"access_token":"t1.secret-vm-token","expires_in":59.5}`, "expires_in is not a whole number of seconds"},
		{"expires_in is zero", `{"access_token":"t1.secret-vm-token","expires_in":0}`, "expires_in is not positive"},
		{"expires_in is negative", `{"access_token":"t1.secret-vm-token","expires_in":-5}`, "expires_in is not positive"},
		{"expires_in overflows", `{"access_token":"t1.secret-vm-token","expires_in":99999999999999999999999}`, "expires_in is not a whole number"},
		{"token_type is not Bearer", `{"access_token":"t1.secret-vm-token","expires_in":60,"token_type":"MAC"}`, "token_type is not Bearer"},
		{"body too large", `{"access_token":"t1.secret-vm-token","expires_in":60,"pad":"` + strings.Repeat("x", 70<<10) + `"}`, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md := iamtest.NewMetadataServer()
			defer md.Close()
			md.SetAnswer([]byte(tt.body))
			src := newMetadataSource(t, md.Addr())
			tok, err := src.Token(context.Background())
			if err == nil {
				t.Fatalf("Token = %v, want an error", tok)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
			if grpcauth.IsTemporary(err) {
				t.Errorf("error %v is temporary, want final", err)
			}
			if strings.Contains(err.Error(), "secret-vm-token") {
				t.Errorf("error %q contains the token", err)
			}
		})
	}
}

func TestMetadataSourceConfig(t *testing.T) {
	for _, addr := range []string{"http://169.254.169.254", "169.254.169.254/path", "host name", "user@host"} {
		t.Run(addr, func(t *testing.T) {
			_, err := grpcauth.NewMetadataSource(&grpcauth.MetadataOptions{Addr: addr})
			if err == nil || !strings.Contains(err.Error(), "is not host[:port]") {
				t.Fatalf("error %v, want one saying the address is not host[:port]", err)
			}
		})
	}
}
