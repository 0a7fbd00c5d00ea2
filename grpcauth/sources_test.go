package grpcauth_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/iamtoken/iamtoken-go/grpcauth"
)

func TestStaticSource(t *testing.T) {
	future := time.Now().Add(time.Hour).Round(0)
	tests := []struct {
		name       string
		value      string
		expiry     time.Time
		wantNewErr string
		wantErr    string
	}{
		{name: "unknown expiry", value: "t1.static"},
		{name: "with expiry", value: "t1.static", expiry: future},
		{name: "expired", value: "t1.static", expiry: time.Unix(1, 0), wantErr: "token expired at 1970-01-01T00:00:01Z"},
		{name: "empty", value: "", wantNewErr: "token is empty"},
		{name: "with a space", value: "Bearer t1.static", wantNewErr: "token has a byte that is not printable ASCII"},
		{name: "with a newline", value: "t1.static\n", wantNewErr: "token has a byte that is not printable ASCII"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := grpcauth.NewStaticSource(tt.value, tt.expiry)
			if tt.wantNewErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantNewErr) || grpcauth.IsTemporary(err) {
					t.Fatalf("NewStaticSource: %v, want a final error mentioning %q", err, tt.wantNewErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewStaticSource: %v", err)
			}
			if s := fmt.Sprintf("%v %#v", src, src); strings.Contains(s, tt.value) {
				t.Errorf("formatted source %q shows the token", s)
			}
			tok, err := src.Token(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || grpcauth.IsTemporary(err) {
					t.Fatalf("Token: %v, want a final error mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if tok.Value != tt.value || !tok.Expiry.Equal(tt.expiry) || tok.Obtained.IsZero() {
				t.Errorf("Token = %v, want value %q expiring %v", tok, tt.value, tt.expiry)
			}
		})
	}
}

func TestStaticSourceFromEnv(t *testing.T) {
	t.Setenv(grpcauth.EnvIAMToken, "t1.from-env")
	src, err := grpcauth.StaticSourceFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := src.Token(context.Background()); err != nil || tok.Value != "t1.from-env" {
		t.Fatalf("Token = %v, %v", tok, err)
	}

	t.Setenv(grpcauth.EnvIAMToken, "")
	if _, err := grpcauth.StaticSourceFromEnv(); err == nil || !strings.Contains(err.Error(), "IAM_TOKEN is not set") {
		t.Fatalf("error %v, want one saying IAM_TOKEN is not set", err)
	}
	t.Setenv(grpcauth.EnvIAMToken, "two words")
	_, err = grpcauth.StaticSourceFromEnv()
	if err == nil || !strings.Contains(err.Error(), "(from IAM_TOKEN)") || strings.Contains(err.Error(), "two words") {
		t.Fatalf("error %v, want one naming IAM_TOKEN without its value", err)
	}
}

func TestFunctionContextSource(t *testing.T) {
	src := grpcauth.NewFunctionContextSource()
	if _, err := src.Token(context.Background()); err == nil || !strings.Contains(err.Error(), "no token supplied") {
		t.Fatalf("Token before Set: %v, want 'no token supplied'", err)
	}

	// Each invocation re-supplies its token.
	for i, tt := range []struct {
		token     string
		expiresIn time.Duration
	}{
		{"t1.invocation-1", 40 * time.Minute},
		{"t1.invocation-2", 3 * time.Minute},
	} {
		if err := src.Set(tt.token, tt.expiresIn); err != nil {
			t.Fatalf("Set %d: %v", i, err)
		}
		tok, err := src.Token(context.Background())
		if err != nil {
			t.Fatalf("Token %d: %v", i, err)
		}
		if tok.Value != tt.token || tok.Expiry.Sub(tok.Obtained) != tt.expiresIn {
			t.Errorf("Token %d = %v, want %s living %s", i, tok, tt.token, tt.expiresIn)
		}
	}

	if err := src.SetJSON([]byte(`{"access_token":"t1.from-json","expires_in":300,"token_type":"Bearer"}`)); err != nil {
		t.Fatalf("SetJSON: %v", err)
	}
	tok, err := src.Token(context.Background())
	if err != nil || tok.Value != "t1.from-json" || tok.Expiry.Sub(tok.Obtained) != 5*time.Minute {
		t.Fatalf("Token after SetJSON = %v, %v", tok, err)
	}

	for _, tt := range []struct {
		name string
		set  func() error
		want string
	}{
		{"expired", func() error { return src.Set("t1.x", 0) }, "expires_in is not positive"},
		{"empty", func() error { return src.Set("", time.Minute) }, "access_token is empty"},
		{"bad JSON", func() error { return src.SetJSON([]byte(`{"access_token":"t1.secret"`)) }, "not valid JSON"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.set()
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "t1.") {
				t.Fatalf("error %v, want one mentioning %q without the token", err, tt.want)
			}
			// A rejected token leaves the previous one in place.
			if tok, err := src.Token(context.Background()); err != nil || tok.Value != "t1.from-json" {
				t.Fatalf("Token = %v, %v; want the previous token", tok, err)
			}
		})
	}
}

// TestCLIHelperProcess is the command the CLI tests run: the test binary
// itself, told what to do by GRPCAUTH_TEST_CLI.
func TestCLIHelperProcess(t *testing.T) {
	mode := os.Getenv("GRPCAUTH_TEST_CLI")
	if mode == "" {
		return
	}
	switch mode {
	case "token":
		fmt.Fprint(os.Stdout, "  t1.cli-token \n")
		fmt.Fprint(os.Stderr, "warning: something harmless\n")
	case "fail":
		fmt.Fprint(os.Stdout, "t1.cli-secret\n")
		fmt.Fprint(os.Stderr, "ERROR: federation session for t1.cli-secret expired,\nsign in again\n")
		os.Exit(3)
	case "empty":
	case "two-lines":
		fmt.Fprint(os.Stdout, "t1.cli-secret\nmore\n")
	case "binary":
		fmt.Fprint(os.Stdout, "t1.cli\x01secret\n")
	case "huge":
		fmt.Fprint(os.Stdout, strings.Repeat("a", 100<<10))
	case "hang":
		time.Sleep(time.Hour)
	}
	os.Exit(0)
}

func cliCommand(t *testing.T, mode string) []string {
	t.Setenv("GRPCAUTH_TEST_CLI", mode)
	return []string{os.Args[0], "-test.run=^TestCLIHelperProcess$"}
}

func TestCLISource(t *testing.T) {
	cookieExpiry := time.Now().Add(20 * time.Minute).Round(0).UTC()
	tests := []struct {
		name         string
		expiry       func() time.Time
		wantLifetime time.Duration
		wantExpiry   time.Time
	}{
		{name: "default lifetime", wantLifetime: grpcauth.DefaultCLILifetime},
		{name: "federation cookie's expiry", expiry: func() time.Time { return cookieExpiry }, wantExpiry: cookieExpiry},
		{name: "unknown expiry", expiry: func() time.Time { return time.Time{} }, wantLifetime: grpcauth.DefaultCLILifetime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := grpcauth.NewCLISource(&grpcauth.CLIOptions{Command: cliCommand(t, "token"), Expiry: tt.expiry})
			if err != nil {
				t.Fatal(err)
			}
			tok, err := src.Token(context.Background())
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if tok.Value != "t1.cli-token" {
				t.Errorf("Value = %q, want t1.cli-token", tok.Value)
			}
			if tt.wantLifetime != 0 && tok.Expiry.Sub(tok.Obtained) != tt.wantLifetime {
				t.Errorf("lifetime %s, want %s", tok.Expiry.Sub(tok.Obtained), tt.wantLifetime)
			}
			if !tt.wantExpiry.IsZero() && !tok.Expiry.Equal(tt.wantExpiry) {
				t.Errorf("Expiry %v, want %v", tok.Expiry, tt.wantExpiry)
			}
		})
	}
}

func TestCLISourceFailures(t *testing.T) {
	tests := []struct {
		name          string
		mode          string
		command       []string
		timeout       time.Duration
		expiry        func() time.Time
		wantErr       string
		wantTemporary bool
	}{
		{name: "exits non-zero", mode: "fail",
			wantErr: `exited with status 3: ERROR: federation session for [redacted] expired, sign in again`},
		{name: "prints nothing", mode: "empty", wantErr: "printed a token that is empty"},
		{name: "prints two lines", mode: "two-lines", wantErr: "printed more than one line"},
		{name: "prints a control byte", mode: "binary", wantErr: "printed a token that has a byte that is not printable ASCII"},
		{name: "prints too much", mode: "huge", wantErr: "printed more than"},
		{name: "hangs", mode: "hang", timeout: 100 * time.Millisecond, wantErr: "did not finish: context deadline exceeded", wantTemporary: true},
		{name: "federation session over", mode: "token", expiry: func() time.Time { return time.Unix(1, 0) },
			wantErr: "token has already expired: sign in again"},
		{name: "not on PATH", command: []string{"grpcauth-test-no-such-command"}, wantErr: `command "grpcauth-test-no-such-command" not found`},
		{name: "no such file", command: []string{"/nonexistent/yc"}, wantErr: `command "/nonexistent/yc" not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := tt.command
			if cmd == nil {
				cmd = cliCommand(t, tt.mode)
			}
			src, err := grpcauth.NewCLISource(&grpcauth.CLIOptions{Command: cmd, Timeout: tt.timeout, Expiry: tt.expiry})
			if err != nil {
				t.Fatal(err)
			}
			tok, err := src.Token(context.Background())
			if err == nil {
				t.Fatalf("Token = %v, want an error", tok)
			}
			var fe *grpcauth.FetchError
			if !errors.As(err, &fe) || fe.Temporary != tt.wantTemporary {
				t.Errorf("error %#v, want a FetchError with Temporary %v", err, tt.wantTemporary)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "cli-token") {
				t.Errorf("error %q contains what the command printed", err)
			}
		})
	}
}

func TestCLISourceConfig(t *testing.T) {
	if _, err := grpcauth.NewCLISource(&grpcauth.CLIOptions{Command: []string{""}}); err == nil {
		t.Error("NewCLISource with an empty command succeeded")
	}
	if _, err := grpcauth.NewCLISource(nil); err != nil {
		t.Errorf("NewCLISource(nil): %v", err)
	}
}
