package interceptors

import (
	"bytes"
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/smithy-go/aws-http-auth/credentials"
	"github.com/aws/smithy-go/aws-http-auth/sigv4"
	v4 "github.com/aws/smithy-go/aws-http-auth/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/iamtoken/iamtoken-go/internal/sigv4rules"
)

const validAuthorization = "AWS4-HMAC-SHA256 Credential=YCAJEexample/20261204/ru-central1/grpc/aws4_request, " +
	"SignedHeaders=host;x-amz-content-sha256;x-amz-date, " +
	"Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// scope returns "DATE/REGION/SERVICE/aws4_request".
func (a *sigV4Authorization) scope() string {
	return a.Date + "/" + a.Region + "/" + a.Service + "/" + sigV4Terminator
}

// format is the inverse of parseSigV4Authorization.
func (a *sigV4Authorization) format() string {
	return sigV4Algorithm + " Credential=" + a.KeyID + "/" + a.scope() +
		", SignedHeaders=" + a.SignedHeaders + ", Signature=" + hex.EncodeToString(a.Signature[:])
}

func TestParseSigV4Authorization(t *testing.T) {
	sig, _ := hex.DecodeString("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	want := &sigV4Authorization{
		KeyID: "YCAJEexample", Date: "20261204", Region: "ru-central1", Service: "grpc",
		SignedHeaders: "host;x-amz-content-sha256;x-amz-date",
		Headers:       []string{"host", "x-amz-content-sha256", "x-amz-date"},
	}
	copy(want.Signature[:], sig)
	got, err := parseSigV4Authorization(validAuthorization)
	if err != nil {
		t.Fatalf("parseSigV4Authorization: %v", err)
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(sigV4Authorization{})); diff != "" {
		t.Errorf("parseSigV4Authorization (-want +got):\n%s", diff)
	}
}

func TestParseSigV4AuthorizationRefuses(t *testing.T) {
	repl := func(old, new string) string { return strings.Replace(validAuthorization, old, new, 1) }
	tests := []struct {
		name, value string
	}{
		{"empty", ""},
		{"bearer", "Bearer t1.abc"},
		{"other algorithm", repl("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256")},
		{"lowercase algorithm", repl("AWS4-HMAC-SHA256", "aws4-hmac-sha256")},
		{"two spaces after algorithm", repl("SHA256 Cred", "SHA256  Cred")},
		{"comma without space", repl(", SignedHeaders", ",SignedHeaders")},
		{"parts reordered", sigV4Algorithm + " Credential=YCAJEexample/20261204/ru-central1/grpc/aws4_request, Signature=" + strings.Repeat("a", 64) + ", SignedHeaders=host;x-amz-date"},
		{"no signature", repl(", Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "")},
		{"short signature", validAuthorization[:len(validAuthorization)-1]},
		{"long signature", validAuthorization + "0"},
		{"uppercase signature", repl("abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef")},
		{"non-hex signature", repl("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", strings.Repeat("g", 64))},
		{"trailing text", validAuthorization + ", Extra=1"},
		{"four scope parts", repl("/grpc/aws4_request", "/aws4_request")},
		{"six scope parts", repl("/grpc/", "/grpc/x/")},
		{"wrong terminator", repl("aws4_request", "aws4_requesx")},
		{"empty key ID", repl("=YCAJEexample/", "=/")},
		{"key ID with space", repl("YCAJEexample", "YCAJE example")},
		{"key ID too long", repl("YCAJEexample", strings.Repeat("K", 129))},
		{"short date", repl("20261204", "2026124")},
		{"date with letters", repl("20261204", "2026120x")},
		{"empty region", repl("/ru-central1/", "//")},
		{"uppercase service", repl("/grpc/", "/GRPC/")},
		{"empty signed headers", repl("host;x-amz-content-sha256;x-amz-date", "")},
		{"empty signed header name", repl("host;x-amz", "host;;x-amz")},
		{"uppercase signed header", repl("host;", "Host;")},
		{"pseudo-header signed", repl("host;", ":authority;host;")},
		{"signed headers unsorted", repl("host;x-amz-content-sha256;x-amz-date", "host;x-amz-date;x-amz-content-sha256")},
		{"signed header repeated", repl("host;", "host;host;")},
		{"too many signed headers", repl("host;", "a0;a1;a2;a3;a4;a5;a6;a7;a8;a9;b0;b1;b2;b3;b4;b5;b6;b7;b8;b9;c0;c1;c2;c3;c4;c5;c6;c7;c8;c9;d0;host;")},
		{"too long", validAuthorization + strings.Repeat(" ", maxAuthorizationLen)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := parseSigV4Authorization(tt.value)
			if err == nil {
				t.Fatalf("parseSigV4Authorization(%q) = %+v, want an error", tt.value, a)
			}
			if !errors.Is(err, errMalformedAuthorization) {
				t.Errorf("error %v is not errMalformedAuthorization", err)
			}
		})
	}
}

// FuzzParseSigV4Authorization checks that the parser never panics, that
// what it accepts is exactly the canonical form (it formats back to the
// same string), and that its errors never repeat the input (the seeds carry
// a canary in each part).
func FuzzParseSigV4Authorization(f *testing.F) {
	f.Add(validAuthorization)
	f.Add("Bearer t1.abc")
	f.Add("AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request, SignedHeaders=, Signature=")
	f.Add("AWS4-HMAC-SHA256 Credential=////, SignedHeaders=;;, Signature=" + strings.Repeat("0", 64))
	f.Add(strings.Replace(validAuthorization, "host;", "host;host;", 1))
	f.Add("AWS4-HMAC-SHA256 Credential=K/20261204/r/s/aws4_request, SignedHeaders=host, Signature=, SignedHeaders=x")
	f.Add(strings.Replace(validAuthorization, "YCAJEexample", "YCAJE CANARY", 1))
	f.Add(strings.Replace(validAuthorization, "ru-central1", "CANARY", 1))
	f.Add(strings.Replace(validAuthorization, "host;", "CANARY;host;", 1))
	f.Add(strings.Replace(validAuthorization, "0123456789abcdef0123", "CANARY6789abcdef0123", 1))
	f.Add("Bearer CANARY")
	f.Fuzz(func(t *testing.T, v string) {
		a, err := parseSigV4Authorization(v)
		if err != nil {
			if !errors.Is(err, errMalformedAuthorization) {
				t.Fatalf("error %v is not errMalformedAuthorization", err)
			}
			// No message of ours holds "CANARY": if an error does, it
			// repeated part of the input.
			if strings.Contains(v, "CANARY") && strings.Contains(err.Error(), "CANARY") {
				t.Fatalf("error %q repeats the input", err)
			}
			return
		}
		if got := a.format(); got != v {
			t.Fatalf("accepted %q but it formats back as %q", v, got)
		}
		if strings.Join(a.Headers, ";") != a.SignedHeaders {
			t.Fatalf("Headers %q do not join to SignedHeaders %q", a.Headers, a.SignedHeaders)
		}
	})
}

func TestParseAmzDate(t *testing.T) {
	tests := []struct {
		name, value string
		want        time.Time
		wantOK      bool
	}{
		{"valid", "20261204T201530Z", time.Date(2026, 12, 4, 20, 15, 30, 0, time.UTC), true},
		{"no Z", "20261204T201530", time.Time{}, false},
		{"offset", "20261204T201530+0000", time.Time{}, false},
		{"month 13", "20261304T201530Z", time.Time{}, false},
		{"hour 24", "20261204T241530Z", time.Time{}, false},
		{"lowercase t", "20261204t201530Z", time.Time{}, false},
		{"RFC 3339", "2026-12-04T20:15:30Z", time.Time{}, false},
		{"empty", "", time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseAmzDate(tt.value)
			if ok != tt.wantOK || !got.Equal(tt.want) {
				t.Errorf("parseAmzDate(%q) = %v, %v; want %v, %v", tt.value, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// TestSigV4KnownAnswer pins the derivation to AWS's published example of a
// signing key (secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20120215,
// us-east-1, iam).
func TestSigV4KnownAnswer(t *testing.T) {
	got := hex.EncodeToString(sigV4SigningKey([]byte("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), "20120215", "us-east-1", "iam"))
	const want = "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
	if got != want {
		t.Errorf("signing key = %s, want %s", got, want)
	}
}

// librarySign signs a synthetic request for a call the way a client using
// smithy-go's signer directly would, with its default header rules.
func librarySign(t testing.TB, method, host, secret, region, service string, at time.Time, extra http.Header) *http.Request {
	t.Helper()
	req := &http.Request{
		Method: http.MethodPost,
		URL:    &url.URL{Scheme: "https", Host: host, Path: method},
		Host:   host,
		Header: extra.Clone(),
	}
	if req.Header == nil {
		req.Header = http.Header{}
	}
	err := sigv4.New(func(o *v4.SignerOptions) { o.AddPayloadHashHeader = true }).SignRequest(&sigv4.SignRequestInput{
		Request:     req,
		PayloadHash: v4.UnsignedPayload(),
		Credentials: credentials.Credentials{AccessKeyID: "YCAJEfuzz", SecretAccessKey: secret},
		Service:     service,
		Region:      region,
		Time:        at,
	})
	if err != nil {
		t.Fatalf("library SignRequest: %v", err)
	}
	return req
}

// FuzzSigV4MatchesLibrary proves our canonical request and derivation equal
// smithy-go's signer for every input the verifier accepts: method names,
// hosts, header values, times, scopes and secrets.
func FuzzSigV4MatchesLibrary(f *testing.F) {
	f.Add("/iamtoken.demo.v1.StorageService/PutObject", "storage.example:8443", "meta value", int64(1796414400), "ru-central1", "grpc", "secret")
	f.Add("/a/b", "127.0.0.1:1", "", int64(0), "us-east-1", "s3", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
	f.Add("/pkg.v1.S/M~x-y_z", "[::1]:50051", "a b,c", int64(4102444799), "r_1", "svc-2", "\x00\xff")
	f.Add("/a", "h", "\u00a0x", int64(1), "r", "s", "k")
	f.Fuzz(func(t *testing.T, method, host, meta string, unix int64, region, service, secret string) {
		if !sigv4rules.ValidPath(method) || host == "" || strings.HasSuffix(host, ":443") || !validCanonicalValue(host) ||
			!validCanonicalValue(meta) || !sigv4rules.ValidScopePart(region) || !sigv4rules.ValidScopePart(service) || secret == "" ||
			unix < 0 || unix > 253402300799 {
			t.Skip()
		}
		at := time.Unix(unix, 0).UTC()
		var extra http.Header
		if meta != "" {
			extra = http.Header{"X-Amz-Meta-Test": {meta}}
		}
		req := librarySign(t, method, host, secret, region, service, at, extra)
		a, err := parseSigV4Authorization(req.Header.Get("Authorization"))
		if err != nil {
			t.Fatalf("parse the library's authorization: %v", err)
		}
		toSign := sigV4StringToSign(nil, method, req.Header.Get("X-Amz-Date"), a, func(name string) string {
			if name == sigV4Host {
				return canonicalHost(host)
			}
			return req.Header.Get(name)
		})
		got := sigV4Signature(sigV4SigningKey([]byte(secret), a.Date, a.Region, a.Service), toSign)
		if !hmac.Equal(got[:], a.Signature[:]) {
			t.Fatalf("our signature %x differs from the library's %x", got, a.Signature)
		}
	})
}

func TestSigningKeyCache(t *testing.T) {
	c := newSigningKeyCache()
	secretA, secretB := []byte("secret-a"), []byte("secret-b")
	want := func(secret []byte, date string) []byte { return sigV4SigningKey(secret, date, "r", "s") }

	if got := c.get("K1", secretA, "20261204", "r", "s"); !bytes.Equal(got, want(secretA, "20261204")) {
		t.Fatalf("first get = %x, want the derived key", got)
	}
	if got := c.get("K1", secretA, "20261204", "r", "s"); !bytes.Equal(got, want(secretA, "20261204")) {
		t.Fatalf("cached get = %x, want the derived key", got)
	}
	// A rotated secret under the same key ID is never answered from the
	// cache.
	if got := c.get("K1", secretB, "20261204", "r", "s"); !bytes.Equal(got, want(secretB, "20261204")) {
		t.Fatalf("get after rotation = %x, want the new secret's key", got)
	}
	if got := c.get("K1", secretB[:len(secretB)-1], "20261204", "r", "s"); !bytes.Equal(got, want(secretB[:len(secretB)-1], "20261204")) {
		t.Fatalf("get with a shorter secret = %x, want its own key", got)
	}
	if got := c.get("K1", secretB, "20261205", "r", "s"); !bytes.Equal(got, want(secretB, "20261205")) {
		t.Fatalf("get for the next day = %x, want that day's key", got)
	}
	// The cache keeps a copy: changing the caller's slice changes nothing.
	secretB[0] = 'X'
	if got := c.get("K1", []byte("secret-b"), "20261205", "r", "s"); !bytes.Equal(got, want([]byte("secret-b"), "20261205")) {
		t.Fatalf("get after the caller's slice changed = %x", got)
	}

	for i := range signingKeyCacheSize + 10 {
		c.get(fmt.Sprintf("K%d", i), secretA, "20261204", "r", "s")
	}
	c.mu.RLock()
	n := len(c.m)
	c.mu.RUnlock()
	if n > signingKeyCacheSize {
		t.Errorf("cache holds %d keys, want at most %d", n, signingKeyCacheSize)
	}
}
