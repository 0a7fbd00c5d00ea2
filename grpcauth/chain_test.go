package grpcauth_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iamtoken/iamtoken-go/grpcauth"
	"github.com/iamtoken/iamtoken-go/iamtest"
)

// chainEnv sets the chain's environment variables ("" clears one).
func chainEnv(t *testing.T, iamToken, keyFile, ycToken, metadataAddr string) {
	t.Setenv(grpcauth.EnvIAMToken, iamToken)
	t.Setenv(grpcauth.EnvServiceAccountKeyFile, keyFile)
	t.Setenv(grpcauth.EnvOAuthToken, ycToken)
	t.Setenv(grpcauth.EnvMetadataAddr, metadataAddr)
}

func TestFindDefaultSourceOrder(t *testing.T) {
	md := iamtest.NewMetadataServer()
	defer md.Close()
	md.SetToken("t1.metadata", time.Hour)
	ep := iamtest.NewTokenEndpoint()
	defer ep.Close()
	ep.AddKeyFile(testKey())
	ep.AddOAuthToken("y0_env", "ajeenvuser")
	ep.AddOAuthToken("y0_explicit", "ajeexplicituser")
	keyFile := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(keyFile, testKey().JSON(), 0o600); err != nil {
		t.Fatal(err)
	}
	exchange := &grpcauth.ExchangeOptions{Endpoint: ep.GRPCAddr(), Insecure: true}
	explicit := grpcauth.TokenSourceFunc(func(context.Context) (*grpcauth.Token, error) {
		return &grpcauth.Token{Value: "t1.explicit-source"}, nil
	})

	type env struct{ iamToken, keyFile, ycToken string }
	all := env{"t1.env-iam-token", keyFile, "y0_env"}
	tests := []struct {
		name        string
		opts        grpcauth.DefaultOptions
		env         env
		wantName    string
		wantValue   string // the token's value, or
		wantAccount string // the account the endpoint issued it to
	}{
		{"explicit source first", grpcauth.DefaultOptions{Source: explicit, Token: "t1.explicit"}, all,
			"DefaultOptions.Source", "t1.explicit-source", ""},
		{"explicit token", grpcauth.DefaultOptions{Token: "t1.explicit", KeyFile: keyFile}, all,
			"DefaultOptions.Token", "t1.explicit", ""},
		{"explicit key file before explicit OAuth", grpcauth.DefaultOptions{KeyFile: keyFile, OAuthToken: "y0_explicit"}, all,
			"DefaultOptions.KeyFile", "", "ajesa1"},
		{"explicit OAuth token", grpcauth.DefaultOptions{OAuthToken: "y0_explicit"}, all,
			"DefaultOptions.OAuthToken", "", "ajeexplicituser"},
		{"IAM_TOKEN first in the environment", grpcauth.DefaultOptions{}, all,
			"IAM_TOKEN", "t1.env-iam-token", ""},
		{"then YC_SERVICE_ACCOUNT_KEY_FILE", grpcauth.DefaultOptions{}, env{"", keyFile, "y0_env"},
			"YC_SERVICE_ACCOUNT_KEY_FILE", "", "ajesa1"},
		{"then YC_TOKEN", grpcauth.DefaultOptions{}, env{"", "", "y0_env"},
			"YC_TOKEN", "", "ajeenvuser"},
		{"then the metadata service", grpcauth.DefaultOptions{}, env{},
			"metadata service at " + md.Addr(), "t1.metadata", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chainEnv(t, tt.env.iamToken, tt.env.keyFile, tt.env.ycToken, md.Addr())
			opts := tt.opts
			opts.Exchange = exchange
			src, err := grpcauth.FindDefaultSource(context.Background(), &opts)
			if err != nil {
				t.Fatalf("FindDefaultSource: %v", err)
			}
			defer src.Close()
			if src.Name() != tt.wantName {
				t.Errorf("Name = %q, want %q", src.Name(), tt.wantName)
			}
			tok, err := src.Token(context.Background())
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if tt.wantValue != "" && tok.Value != tt.wantValue {
				t.Errorf("Value = %q, want %q", tok.Value, tt.wantValue)
			}
			if tt.wantAccount != "" {
				if account, _ := ep.Subject(tok.Value); account != tt.wantAccount {
					t.Errorf("token issued to %q, want %q", account, tt.wantAccount)
				}
			}
		})
	}
}

// TestFindDefaultSourceMetadataProbeToken checks that the token the probe
// obtained is the first one handed out, not thrown away.
func TestFindDefaultSourceMetadataProbeToken(t *testing.T) {
	md := iamtest.NewMetadataServer()
	defer md.Close()
	chainEnv(t, "", "", "", md.Addr())
	src, err := grpcauth.FindDefaultSource(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for i, wantCalls := range []int{1, 2} {
		if _, err := src.Token(context.Background()); err != nil {
			t.Fatalf("Token %d: %v", i, err)
		}
		if md.Calls() != wantCalls {
			t.Errorf("after Token %d: %d metadata calls, want %d", i, md.Calls(), wantCalls)
		}
	}
}

func TestFindDefaultSourceNothingWorks(t *testing.T) {
	const triedEnv = "explicit options (none set); IAM_TOKEN (not set); YC_SERVICE_ACCOUNT_KEY_FILE (not set); YC_TOKEN (not set); "
	tests := []struct {
		name          string
		setup         func(md *iamtest.MetadataServer, opts *grpcauth.DefaultOptions)
		wantMetadata  string // the metadata part of the list, %s = the address
		wantTemporary bool
	}{
		{"VM without a service account", func(md *iamtest.MetadataServer, _ *grpcauth.DefaultOptions) { md.SetNotFound(true) },
			"metadata service (at %s: no service account is attached to this VM (HTTP 404))", false},
		{"not on a VM", func(md *iamtest.MetadataServer, _ *grpcauth.DefaultOptions) { md.Close() },
			"metadata service (at %s: dial tcp %s: connect: connection refused)", true},
		{"metadata too slow", func(md *iamtest.MetadataServer, o *grpcauth.DefaultOptions) {
			md.SetDelay(time.Hour)
			o.MetadataProbeTimeout = 50 * time.Millisecond
		}, "metadata service (at %s: Get \"http://%s/computeMetadata/v1/instance/service-accounts/default/token\": context deadline exceeded)", true},
		{"metadata disabled", func(_ *iamtest.MetadataServer, o *grpcauth.DefaultOptions) { o.NoMetadata = true },
			"metadata service (disabled)", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md := iamtest.NewMetadataServer()
			defer md.Close()
			addr := md.Addr()
			chainEnv(t, "", "", "", addr)
			var opts grpcauth.DefaultOptions
			tt.setup(md, &opts)
			src, err := grpcauth.FindDefaultSource(context.Background(), &opts)
			if err == nil {
				src.Close()
				t.Fatal("FindDefaultSource succeeded, want an error")
			}
			want := "grpcauth: default credentials " + map[bool]string{true: "unavailable", false: "refused"}[tt.wantTemporary] +
				": no way to obtain an IAM token; tried: " + triedEnv + strings.ReplaceAll(tt.wantMetadata, "%s", addr)
			got := err.Error()
			if tt.name == "metadata too slow" {
				// net/http words a client timeout its own way; only the
				// start of the reason is ours.
				want, got = want[:strings.Index(want, "Get ")], got[:min(len(got), strings.Index(want, "Get "))]
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if grpcauth.IsTemporary(err) != tt.wantTemporary {
				t.Errorf("IsTemporary = %v, want %v", grpcauth.IsTemporary(err), tt.wantTemporary)
			}
		})
	}
}

// TestFindDefaultSourceBrokenConfig checks that a configured but broken way
// is reported, not skipped for the next one.
func TestFindDefaultSourceBrokenConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, keyJSON(t, map[string]any{"private_key": "garbage"}), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		env      [3]string
		opts     grpcauth.DefaultOptions
		wantErr  string
		noSecret string
	}{
		{"malformed key file", [3]string{"", bad, "y0_env"}, grpcauth.DefaultOptions{},
			"private_key: not a PEM block (file " + bad + ") (from YC_SERVICE_ACCOUNT_KEY_FILE)", "y0_env"},
		{"missing key file", [3]string{"", filepath.Join(dir, "nope.json"), "y0_env"}, grpcauth.DefaultOptions{},
			"no such file", "y0_env"},
		{"invalid IAM_TOKEN", [3]string{"not a token", "", ""}, grpcauth.DefaultOptions{},
			"token has a byte that is not printable ASCII (from IAM_TOKEN)", "not a token"},
		{"invalid explicit token", [3]string{"t1.env", "", ""}, grpcauth.DefaultOptions{Token: "bad token"},
			"token has a byte that is not printable ASCII", "bad token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chainEnv(t, tt.env[0], tt.env[1], tt.env[2], "127.0.0.1:1")
			opts := tt.opts
			src, err := grpcauth.FindDefaultSource(context.Background(), &opts)
			if err == nil {
				src.Close()
				t.Fatal("FindDefaultSource succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) || grpcauth.IsTemporary(err) {
				t.Errorf("error %q, want a final one mentioning %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), tt.noSecret) {
				t.Errorf("error %q contains a secret", err)
			}
		})
	}
}
