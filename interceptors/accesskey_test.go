package interceptors_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/smithy-go/aws-http-auth/credentials"
	"github.com/aws/smithy-go/aws-http-auth/sigv4"
	v4 "github.com/aws/smithy-go/aws-http-auth/v4"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/grpcauth"
	"github.com/iamtoken/iamtoken-go/interceptors"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
)

// Test keys: static, made up, used nowhere else.
const (
	akKeyID     = "YCAJEtestkey0001"
	akSecret    = "YCtestsecret-not-a-real-one-0123456789ab"
	akSAID      = "ajetestserviceacct01"
	akAuthority = "storage.example:8443"
	akPut       = demov1.StorageService_PutObject_FullMethodName
	akGet       = demov1.StorageService_GetObject_FullMethodName
)

// akNow is the server's clock in these tests.
var akNow = time.Date(2026, 12, 4, 20, 30, 0, 0, time.UTC)

// akStore is an AccessKeyStore over a map; err, when set, is what every
// lookup fails with.
type akStore struct {
	keys map[string]*interceptors.AccessKey
	err  error

	mu      sync.Mutex
	lookups int // guarded by mu
}

func newAKStore(keys ...*interceptors.AccessKey) *akStore {
	s := &akStore{keys: map[string]*interceptors.AccessKey{}}
	for _, k := range keys {
		s.keys[k.KeyID] = k
	}
	return s
}

func (s *akStore) LookupAccessKey(_ context.Context, keyID string) (*interceptors.AccessKey, error) {
	s.mu.Lock()
	s.lookups++
	s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	k, ok := s.keys[keyID]
	if !ok {
		return nil, interceptors.ErrAccessKeyNotFound
	}
	return k, nil
}

func activeKey() *interceptors.AccessKey {
	return &interceptors.AccessKey{KeyID: akKeyID, Secret: []byte(akSecret), ServiceAccountID: akSAID, Active: true}
}

func newVerifier(t testing.TB, store interceptors.AccessKeyStore, opts ...interceptors.AccessKeyVerifierOption) *interceptors.SigV4Verifier {
	t.Helper()
	opts = append([]interceptors.AccessKeyVerifierOption{interceptors.WithAccessKeyClock(func() time.Time { return akNow })}, opts...)
	v, err := interceptors.NewAccessKeyVerifier(store, opts...)
	if err != nil {
		t.Fatalf("NewAccessKeyVerifier: %v", err)
	}
	return v
}

// tlsRequestInfo is what gRPC puts in the context of a call on a TLS
// connection.
func tlsRequestInfo(ctx context.Context, method string) context.Context {
	return grpccreds.NewContextWithRequestInfo(ctx, grpccreds.RequestInfo{
		Method:   method,
		AuthInfo: grpccreds.TLSInfo{CommonAuthInfo: grpccreds.CommonAuthInfo{SecurityLevel: grpccreds.PrivacyAndIntegrity}},
	})
}

// audience is the URI gRPC passes to call credentials for a method on
// authority.
func audience(authority, method string) string {
	return "https://" + strings.TrimSuffix(authority, ":443") + method[:strings.LastIndex(method, "/")]
}

// clientSign signs a call to method on authority at `at` with grpcauth's
// credentials and returns the metadata the server receives.
func clientSign(t testing.TB, keyID, secret, method, authority string, at time.Time, opts ...grpcauth.AccessKeyOption) metadata.MD {
	t.Helper()
	opts = append([]grpcauth.AccessKeyOption{grpcauth.WithAccessKeyClock(func() time.Time { return at })}, opts...)
	c, err := grpcauth.NewAccessKeyCredentials(keyID, secret, opts...)
	if err != nil {
		t.Fatalf("NewAccessKeyCredentials: %v", err)
	}
	m, err := c.GetRequestMetadata(tlsRequestInfo(context.Background(), method), audience(authority, method))
	if err != nil {
		t.Fatalf("GetRequestMetadata: %v", err)
	}
	return metadata.New(m)
}

// librarySign signs a synthetic request for a call directly with smithy-go's
// SigV4 signer and its default header rules (host and x-amz-*), as any
// SigV4 client would, and returns the metadata the server receives.
func librarySign(t testing.TB, method, authority string, at time.Time, headers http.Header, edit func(*sigv4.SignRequestInput), signerOpts ...v4.SignerOption) metadata.MD {
	t.Helper()
	host := strings.TrimSuffix(authority, ":443")
	in := &sigv4.SignRequestInput{
		Request: &http.Request{
			Method: http.MethodPost,
			URL:    &url.URL{Scheme: "https", Host: host, Path: method},
			Host:   host,
			Header: headers.Clone(),
		},
		PayloadHash: v4.UnsignedPayload(),
		Credentials: credentials.Credentials{AccessKeyID: akKeyID, SecretAccessKey: akSecret},
		Service:     interceptors.DefaultAccessKeyService,
		Region:      interceptors.DefaultAccessKeyRegion,
		Time:        at,
	}
	if in.Request.Header == nil {
		in.Request.Header = http.Header{}
	}
	signer := sigv4.New(append([]v4.SignerOption{func(o *v4.SignerOptions) { o.AddPayloadHashHeader = true }}, signerOpts...)...)
	if edit != nil {
		edit(in)
	}
	if err := signer.SignRequest(in); err != nil {
		t.Fatalf("SignRequest: %v", err)
	}
	md := metadata.MD{}
	for k, vs := range in.Request.Header {
		if k == "Host" { // travels as :authority, not metadata
			continue
		}
		md[strings.ToLower(k)] = vs
	}
	return md
}

func wantPrincipal(at time.Time) *interceptors.Principal {
	return &interceptors.Principal{
		SubjectID:   akSAID,
		SubjectType: interceptors.SubjectServiceAccount,
		Method:      interceptors.AuthAccessKey,
		AccessKeyID: akKeyID,
		ExpiresAt:   at.Truncate(time.Second).Add(15 * time.Minute),
	}
}

func TestAccessKeyRoundTrip(t *testing.T) {
	v := newVerifier(t, newAKStore(activeKey()))
	tests := []struct {
		name, method, authority string
	}{
		{"unary", akPut, akAuthority},
		{"client stream", demov1.StorageService_UploadObject_FullMethodName, akAuthority},
		{"default port", akGet, "storage.example:443"},
		{"no port", akGet, "storage.example"},
		{"IPv6 loopback", akGet, "[::1]:50051"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md := clientSign(t, akKeyID, akSecret, tt.method, tt.authority, akNow)
			got, err := v.VerifyAccessKey(context.Background(), tt.method, tt.authority, md)
			if err != nil {
				t.Fatalf("VerifyAccessKey: %v", err)
			}
			if diff := cmp.Diff(wantPrincipal(akNow), got); diff != "" {
				t.Errorf("Principal (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAccessKeyCredentialsMetadata(t *testing.T) {
	md := clientSign(t, akKeyID, akSecret, akPut, akAuthority, akNow)
	const wantAuthPrefix = "AWS4-HMAC-SHA256 Credential=" + akKeyID + "/20261204/ru-central1/grpc/aws4_request, " +
		"SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-iamtoken-nonce, Signature="
	if got := md.Get("authorization"); len(got) != 1 || !strings.HasPrefix(got[0], wantAuthPrefix) {
		t.Errorf("authorization = %q, want one value starting %q", got, wantAuthPrefix)
	}
	if diff := cmp.Diff([]string{"20261204T203000Z"}, md.Get("x-amz-date")); diff != "" {
		t.Errorf("x-amz-date (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"UNSIGNED-PAYLOAD"}, md.Get("x-amz-content-sha256")); diff != "" {
		t.Errorf("x-amz-content-sha256 (-want +got):\n%s", diff)
	}
	if n := md.Get(grpcauth.AccessKeyNonceKey); len(n) != 1 || len(n[0]) < 16 {
		t.Errorf("%s = %q, want one random value", grpcauth.AccessKeyNonceKey, n)
	}
	for k, vs := range md {
		for _, v := range vs {
			if strings.Contains(v, akSecret) {
				t.Errorf("metadata %s carries the secret", k)
			}
		}
	}
	if len(md) != 4 {
		t.Errorf("metadata has %d keys, want 4: %v", len(md), md)
	}
}

// TestAccessKeyVerifierAcceptsLibrarySignature: calls signed by smithy-go's
// signer directly, with its default rules and extra signed headers, pass
// our verifier. (bench/ does the same with aws-sdk-go-v2's signer.)
func TestAccessKeyVerifierAcceptsLibrarySignature(t *testing.T) {
	v := newVerifier(t, newAKStore(activeKey()))
	tests := []struct {
		name    string
		headers http.Header
	}{
		{"minimal", nil},
		{"extra x-amz header", http.Header{"X-Amz-Meta-Purpose": {"backup nightly"}}},
		{"extra non-amz header", http.Header{"X-Amz-Meta-A": {"1"}, "X-Trace": {"abc"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md := librarySign(t, akPut, akAuthority, akNow, tt.headers, nil)
			got, err := v.VerifyAccessKey(context.Background(), akPut, akAuthority, md)
			if err != nil {
				t.Fatalf("VerifyAccessKey: %v", err)
			}
			if diff := cmp.Diff(wantPrincipal(akNow), got); diff != "" {
				t.Errorf("Principal (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAccessKeyCredentialsMatchLibrary: re-signing, with smithy-go's signer,
// a request rebuilt from what our credentials sent gives the same
// Authorization value, so the metadata is exactly the library's output.
func TestAccessKeyCredentialsMatchLibrary(t *testing.T) {
	md := clientSign(t, akKeyID, akSecret, akPut, akAuthority, akNow)
	headers := http.Header{}
	for k, vs := range md {
		if k != "authorization" && k != "x-amz-date" {
			headers[http.CanonicalHeaderKey(k)] = vs
		}
	}
	lib := librarySign(t, akPut, akAuthority, akNow, headers, func(in *sigv4.SignRequestInput) {})
	// The default rules leave out x-iamtoken-nonce; sign with it included.
	libWithNonce := librarySignRules(t, akPut, akAuthority, akNow, headers)
	if diff := cmp.Diff(md.Get("authorization"), libWithNonce.Get("authorization")); diff != "" {
		t.Errorf("authorization (-ours +library):\n%s", diff)
	}
	if lib.Get("authorization")[0] == md.Get("authorization")[0] {
		t.Errorf("signature without the nonce signed equals ours: the nonce is not signed")
	}
}

// ruleFunc adapts a function to v4.SignedHeaderRules.
type ruleFunc func(string) bool

func (f ruleFunc) IsSigned(h string) bool { return f(h) }

func librarySignRules(t testing.TB, method, authority string, at time.Time, headers http.Header) metadata.MD {
	t.Helper()
	req := &http.Request{
		Method: http.MethodPost,
		URL:    &url.URL{Scheme: "https", Host: authority, Path: method},
		Host:   authority,
		Header: headers.Clone(),
	}
	err := sigv4.New(func(o *v4.SignerOptions) {
		o.AddPayloadHashHeader = true
		o.HeaderRules = ruleFunc(func(h string) bool {
			return h == "host" || strings.HasPrefix(h, "x-amz-") || h == grpcauth.AccessKeyNonceKey
		})
	}).SignRequest(&sigv4.SignRequestInput{
		Request:     req,
		PayloadHash: v4.UnsignedPayload(),
		Credentials: credentials.Credentials{AccessKeyID: akKeyID, SecretAccessKey: akSecret},
		Service:     interceptors.DefaultAccessKeyService,
		Region:      interceptors.DefaultAccessKeyRegion,
		Time:        at,
	})
	if err != nil {
		t.Fatalf("SignRequest: %v", err)
	}
	return metadata.MD{"authorization": {req.Header.Get("Authorization")}}
}

func TestAccessKeyClockSkew(t *testing.T) {
	v := newVerifier(t, newAKStore(activeKey()))
	tests := []struct {
		name     string
		offset   time.Duration // request time minus server time
		wantCode codes.Code
	}{
		{"on time", 0, codes.OK},
		{"14 min behind", -14 * time.Minute, codes.OK},
		{"14 min ahead", 14 * time.Minute, codes.OK},
		{"15 min behind", -15 * time.Minute, codes.OK},
		{"15 min ahead", 15 * time.Minute, codes.OK},
		{"15 min 1 s behind", -15*time.Minute - time.Second, codes.Unauthenticated},
		{"15 min 1 s ahead", 15*time.Minute + time.Second, codes.Unauthenticated},
		{"16 min behind", -16 * time.Minute, codes.Unauthenticated},
		{"16 min ahead", 16 * time.Minute, codes.Unauthenticated},
		{"a day behind", -24 * time.Hour, codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at := akNow.Add(tt.offset)
			md := clientSign(t, akKeyID, akSecret, akPut, akAuthority, at)
			p, err := v.VerifyAccessKey(context.Background(), akPut, akAuthority, md)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("VerifyAccessKey: code %v (%v), want %v", got, err, tt.wantCode)
			}
			if err == nil {
				if diff := cmp.Diff(wantPrincipal(at), p); diff != "" {
					t.Errorf("Principal (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestAccessKeyRefusals has one row per refusal. Each starts from a call
// that verifies and breaks one thing.
func TestAccessKeyRefusals(t *testing.T) {
	inactive := activeKey()
	inactive.Active = false
	otherSecret := activeKey()
	otherSecret.Secret = []byte("a-different-secret-of-the-same-key-00")

	good := func(t *testing.T) metadata.MD { return clientSign(t, akKeyID, akSecret, akPut, akAuthority, akNow) }
	lib := func(headers http.Header, edit func(*sigv4.SignRequestInput), signerOpts ...v4.SignerOption) func(t *testing.T) metadata.MD {
		return func(t *testing.T) metadata.MD {
			return librarySign(t, akPut, akAuthority, akNow, headers, edit, signerOpts...)
		}
	}
	rules := func(f ruleFunc) v4.SignerOption { return func(o *v4.SignerOptions) { o.HeaderRules = f } }
	editAuth := func(old, new string) func(t *testing.T) metadata.MD {
		return func(t *testing.T) metadata.MD {
			md := good(t)
			a := md.Get("authorization")[0]
			if !strings.Contains(a, old) {
				t.Fatalf("authorization has no %q", old)
			}
			md.Set("authorization", strings.Replace(a, old, new, 1))
			return md
		}
	}
	editMD := func(f func(md metadata.MD)) func(t *testing.T) metadata.MD {
		return func(t *testing.T) metadata.MD {
			md := good(t)
			f(md)
			return md
		}
	}

	tests := []struct {
		name      string
		md        func(t *testing.T) metadata.MD
		method    string // default akPut
		authority string // default akAuthority
		store     *akStore
		opts      []interceptors.AccessKeyVerifierOption
		wantCode  codes.Code
		wantMsg   string
	}{
		{name: "no authorization", md: editMD(func(md metadata.MD) { md.Delete("authorization") }),
			wantCode: codes.Unauthenticated, wantMsg: "no authorization"},
		{name: "two authorization values", md: editMD(func(md metadata.MD) { md.Append("authorization", md.Get("authorization")[0]) }),
			wantCode: codes.Unauthenticated, wantMsg: "more than one authorization"},
		{name: "IAM token", md: editMD(func(md metadata.MD) { md.Set("authorization", "Bearer t1.CANARY-iam-token") }),
			wantCode: codes.Unauthenticated, wantMsg: "not an IAM token"},
		{name: "IAM token lowercase scheme", md: editMD(func(md metadata.MD) { md.Set("authorization", "bearer t1.CANARY-iam-token") }),
			wantCode: codes.Unauthenticated, wantMsg: "not an IAM token"},
		{name: "basic auth", md: editMD(func(md metadata.MD) { md.Set("authorization", "Basic Q0FOQVJZOmNhbmFyeQ==") }),
			wantCode: codes.Unauthenticated, wantMsg: "not an AWS4-HMAC-SHA256 signature"},
		{name: "malformed", md: editAuth(", SignedHeaders=", ",SignedHeaders="),
			wantCode: codes.Unauthenticated, wantMsg: "malformed"},
		{name: "truncated signature", md: func(t *testing.T) metadata.MD {
			md := good(t)
			a := md.Get("authorization")[0]
			md.Set("authorization", a[:len(a)-1])
			return md
		}, wantCode: codes.Unauthenticated, wantMsg: "malformed"},
		{name: "wrong region", md: good, opts: []interceptors.AccessKeyVerifierOption{interceptors.WithAccessKeyRegion("eu-west-1")},
			wantCode: codes.Unauthenticated, wantMsg: "region or service"},
		{name: "wrong service", md: good, opts: []interceptors.AccessKeyVerifierOption{interceptors.WithAccessKeyService("s3")},
			wantCode: codes.Unauthenticated, wantMsg: "region or service"},
		{name: "host not signed", md: lib(nil, nil, rules(func(h string) bool { return strings.HasPrefix(h, "x-amz-") })),
			wantCode: codes.Unauthenticated, wantMsg: "host and x-amz-date must be signed"},
		{name: "x-amz-date not signed", md: lib(nil, nil, rules(func(h string) bool { return h == "host" || h == "x-amz-content-sha256" })),
			wantCode: codes.Unauthenticated, wantMsg: "host and x-amz-date must be signed"},
		{name: "authorization signed", md: editAuth("SignedHeaders=host;", "SignedHeaders=authorization;host;"),
			wantCode: codes.Unauthenticated, wantMsg: "authorization cannot be a signed header"},
		{name: "unsigned x-amz metadata", md: editMD(func(md metadata.MD) { md.Set("x-amz-meta-injected", "1") }),
			wantCode: codes.Unauthenticated, wantMsg: "x-amz-* metadata sent but not signed"},
		{name: "unsigned x-amz metadata, uppercase key", md: editMD(func(md metadata.MD) { md["X-Amz-Acl"] = []string{"public-read"} }),
			wantCode: codes.Unauthenticated, wantMsg: "x-amz-* metadata sent but not signed"},
		{name: "signed header missing", md: editMD(func(md metadata.MD) { md.Delete(grpcauth.AccessKeyNonceKey) }),
			wantCode: codes.Unauthenticated, wantMsg: "must be sent exactly once"},
		{name: "signed header twice", md: editMD(func(md metadata.MD) { md.Append(grpcauth.AccessKeyNonceKey, "second") }),
			wantCode: codes.Unauthenticated, wantMsg: "must be sent exactly once"},
		{name: "x-amz-date twice", md: editMD(func(md metadata.MD) { md.Append("x-amz-date", md.Get("x-amz-date")[0]) }),
			wantCode: codes.Unauthenticated, wantMsg: "must be sent exactly once"},
		{name: "x-amz-date malformed", md: editMD(func(md metadata.MD) { md.Set("x-amz-date", "2026-12-04T20:30:00Z") }),
			wantCode: codes.Unauthenticated, wantMsg: "x-amz-date is not"},
		{name: "scope date is not x-amz-date's", md: editAuth("/20261204/", "/20261205/"),
			wantCode: codes.Unauthenticated, wantMsg: "scope date"},
		{name: "signed value with repeated spaces", md: lib(http.Header{"X-Amz-Meta-A": {"a  b"}}, nil),
			wantCode: codes.Unauthenticated, wantMsg: "repeated spaces"},
		{name: "payload hash not UNSIGNED-PAYLOAD", md: lib(nil, func(in *sigv4.SignRequestInput) {
			in.PayloadHash = make([]byte, 32)
		}), wantCode: codes.Unauthenticated, wantMsg: "UNSIGNED-PAYLOAD"},
		{name: "session token", md: lib(nil, func(in *sigv4.SignRequestInput) { in.Credentials.SessionToken = "CANARY-session" }),
			wantCode: codes.Unauthenticated, wantMsg: "session tokens"},
		{name: "unsignable method name", md: good, method: "/pkg.S/M%20", wantCode: codes.Unauthenticated, wantMsg: "cannot be signed"},
		{name: "no authority", md: good, authority: "-", wantCode: codes.Unauthenticated, wantMsg: "no usable authority"},
		{name: "unknown key", md: good, store: newAKStore(), wantCode: codes.Unauthenticated, wantMsg: "does not match"},
		{name: "inactive key", md: good, store: newAKStore(inactive), wantCode: codes.Unauthenticated, wantMsg: "does not match"},
		{name: "wrong secret", md: good, store: newAKStore(otherSecret), wantCode: codes.Unauthenticated, wantMsg: "does not match"},
		{name: "tampered signature", md: func(t *testing.T) metadata.MD {
			md := good(t)
			a := md.Get("authorization")[0]
			last := a[len(a)-1]
			flip := byte('0')
			if last == '0' {
				flip = '1'
			}
			md.Set("authorization", a[:len(a)-1]+string(flip))
			return md
		}, wantCode: codes.Unauthenticated, wantMsg: "does not match"},
		{name: "other method", md: good, method: akGet, wantCode: codes.Unauthenticated, wantMsg: "does not match"},
		{name: "other authority", md: good, authority: "other.example:8443", wantCode: codes.Unauthenticated, wantMsg: "does not match"},
		{name: "tampered nonce", md: editMD(func(md metadata.MD) { md.Set(grpcauth.AccessKeyNonceKey, "AAAAAAAAAAAAAAAAAAAAAAAAAA") }),
			wantCode: codes.Unauthenticated, wantMsg: "does not match"},
		{name: "key ID of another key", md: editAuth("Credential="+akKeyID, "Credential=YCAJEotherkey0002"),
			store:    newAKStore(activeKey(), &interceptors.AccessKey{KeyID: "YCAJEotherkey0002", Secret: []byte("other"), ServiceAccountID: "x", Active: true}),
			wantCode: codes.Unauthenticated, wantMsg: "does not match"},
		{name: "store unavailable", md: good, store: &akStore{err: errors.New("db: connection refused to 10.0.0.7")},
			wantCode: codes.Unavailable, wantMsg: "store unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := tt.store
			if store == nil {
				store = newAKStore(activeKey())
			}
			method, authority := tt.method, tt.authority
			if method == "" {
				method = akPut
			}
			switch authority {
			case "":
				authority = akAuthority
			case "-":
				authority = ""
			}
			md := tt.md(t)
			p, err := newVerifier(t, store, tt.opts...).VerifyAccessKey(context.Background(), method, authority, md)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("VerifyAccessKey = %v, %v; want code %v", p, err, tt.wantCode)
			}
			if p != nil {
				t.Errorf("VerifyAccessKey returned a Principal with an error: %v", p)
			}
			msg := status.Convert(err).Message()
			if !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("message %q does not contain %q", msg, tt.wantMsg)
			}
			if !strings.HasPrefix(msg, "interceptors: ") {
				t.Errorf("message %q does not start with the package name", msg)
			}
			// Nothing secret, nor any part of the credential, is echoed.
			for _, secret := range []string{akSecret, string(otherSecret.Secret), "CANARY", "10.0.0.7"} {
				if strings.Contains(msg, secret) {
					t.Errorf("message %q repeats %q", msg, secret)
				}
			}
			if a := md.Get("authorization"); len(a) > 0 && len(a[0]) > 64 && strings.Contains(msg, a[0][len(a[0])-64:]) {
				t.Errorf("message %q repeats the signature", msg)
			}
		})
	}
}

// TestAccessKeyUniformRefusal: an unknown key, an inactive key and a wrong
// signature are indistinguishable to the caller.
func TestAccessKeyUniformRefusal(t *testing.T) {
	inactive := activeKey()
	inactive.Active = false
	wrong := activeKey()
	wrong.Secret = []byte("wrong")
	var msgs []string
	for _, store := range []*akStore{newAKStore(), newAKStore(inactive), newAKStore(wrong)} {
		md := clientSign(t, akKeyID, akSecret, akPut, akAuthority, akNow)
		_, err := newVerifier(t, store).VerifyAccessKey(context.Background(), akPut, akAuthority, md)
		msgs = append(msgs, status.Code(err).String()+": "+status.Convert(err).Message())
	}
	if msgs[0] != msgs[1] || msgs[1] != msgs[2] {
		t.Errorf("refusals differ: %q", msgs)
	}
}

// TestAccessKeyRotatedSecret: once the store answers a new secret for a key
// ID, calls signed with the old one are refused, whatever was cached.
func TestAccessKeyRotatedSecret(t *testing.T) {
	key := activeKey()
	store := newAKStore(key)
	v := newVerifier(t, store)
	old := clientSign(t, akKeyID, akSecret, akPut, akAuthority, akNow)
	if _, err := v.VerifyAccessKey(context.Background(), akPut, akAuthority, old); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	const newSecret = "YCrotatedsecret-not-a-real-one-987654321"
	store.keys[akKeyID] = &interceptors.AccessKey{KeyID: akKeyID, Secret: []byte(newSecret), ServiceAccountID: akSAID, Active: true}
	if _, err := v.VerifyAccessKey(context.Background(), akPut, akAuthority, old); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("old secret after rotation: %v, want Unauthenticated", err)
	}
	fresh := clientSign(t, akKeyID, newSecret, akPut, akAuthority, akNow)
	if _, err := v.VerifyAccessKey(context.Background(), akPut, akAuthority, fresh); err != nil {
		t.Fatalf("new secret: %v", err)
	}
	store.keys[akKeyID] = &interceptors.AccessKey{KeyID: akKeyID, Secret: []byte(newSecret), ServiceAccountID: akSAID, Active: false}
	if _, err := v.VerifyAccessKey(context.Background(), akPut, akAuthority, fresh); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("deactivated key: %v, want Unauthenticated", err)
	}
}

func TestAccessKeyReplayProtection(t *testing.T) {
	t.Run("off by default", func(t *testing.T) {
		v := newVerifier(t, newAKStore(activeKey()))
		md := clientSign(t, akKeyID, akSecret, akPut, akAuthority, akNow)
		for i := range 2 {
			if _, err := v.VerifyAccessKey(context.Background(), akPut, akAuthority, md); err != nil {
				t.Fatalf("use %d: %v", i+1, err)
			}
		}
	})
	t.Run("second use refused", func(t *testing.T) {
		v := newVerifier(t, newAKStore(activeKey()), interceptors.WithAccessKeyReplayProtection(100))
		md := clientSign(t, akKeyID, akSecret, akPut, akAuthority, akNow)
		if _, err := v.VerifyAccessKey(context.Background(), akPut, akAuthority, md); err != nil {
			t.Fatalf("first use: %v", err)
		}
		_, err := v.VerifyAccessKey(context.Background(), akPut, akAuthority, md)
		if got := status.Code(err); got != codes.Unauthenticated || !strings.Contains(err.Error(), "replay") {
			t.Errorf("second use: %v, want Unauthenticated replay", err)
		}
	})
	t.Run("identical calls in one second both pass", func(t *testing.T) {
		v := newVerifier(t, newAKStore(activeKey()), interceptors.WithAccessKeyReplayProtection(100))
		for i := range 3 {
			md := clientSign(t, akKeyID, akSecret, akPut, akAuthority, akNow)
			if _, err := v.VerifyAccessKey(context.Background(), akPut, akAuthority, md); err != nil {
				t.Fatalf("call %d: %v", i+1, err)
			}
		}
	})
	t.Run("refused signature not remembered", func(t *testing.T) {
		store := newAKStore(activeKey())
		v := newVerifier(t, store, interceptors.WithAccessKeyReplayProtection(1))
		md := clientSign(t, akKeyID, akSecret, akPut, akAuthority, akNow)
		// A wrong method fails the signature: the cache must stay empty,
		// so that the genuine call afterwards passes.
		if _, err := v.VerifyAccessKey(context.Background(), akGet, akAuthority, md); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("wrong method: %v", err)
		}
		if _, err := v.VerifyAccessKey(context.Background(), akPut, akAuthority, md); err != nil {
			t.Fatalf("genuine call: %v", err)
		}
	})
	t.Run("full cache fails closed, then frees expired", func(t *testing.T) {
		now := akNow
		v, err := interceptors.NewAccessKeyVerifier(newAKStore(activeKey()),
			interceptors.WithAccessKeyClock(func() time.Time { return now }),
			interceptors.WithAccessKeyReplayProtection(2))
		if err != nil {
			t.Fatal(err)
		}
		verify := func(at time.Time) error {
			md := clientSign(t, akKeyID, akSecret, akPut, akAuthority, at)
			_, err := v.VerifyAccessKey(context.Background(), akPut, akAuthority, md)
			return err
		}
		if err := verify(now.Add(-10 * time.Minute)); err != nil {
			t.Fatalf("first: %v", err)
		}
		if err := verify(now); err != nil {
			t.Fatalf("second: %v", err)
		}
		if err := verify(now); status.Code(err) != codes.Unavailable {
			t.Fatalf("third with a full cache: %v, want Unavailable", err)
		}
		// 5 min 1 s later the first signature is past its window and is
		// dropped to make room.
		now = now.Add(5*time.Minute + time.Second)
		if err := verify(now); err != nil {
			t.Fatalf("after the first expired: %v", err)
		}
	})
}

func TestNewAccessKeyVerifierRefusesBadOptions(t *testing.T) {
	store := newAKStore()
	tests := []struct {
		name  string
		store interceptors.AccessKeyStore
		opt   interceptors.AccessKeyVerifierOption
	}{
		{"nil store", nil, nil},
		{"empty region", store, interceptors.WithAccessKeyRegion("")},
		{"region with slash", store, interceptors.WithAccessKeyRegion("a/b")},
		{"uppercase service", store, interceptors.WithAccessKeyService("S3")},
		{"nil clock", store, interceptors.WithAccessKeyClock(nil)},
		{"zero replay capacity", store, interceptors.WithAccessKeyReplayProtection(0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []interceptors.AccessKeyVerifierOption
			if tt.opt != nil {
				opts = append(opts, tt.opt)
			}
			if _, err := interceptors.NewAccessKeyVerifier(tt.store, opts...); err == nil {
				t.Errorf("NewAccessKeyVerifier succeeded, want an error")
			} else if !strings.HasPrefix(err.Error(), "interceptors: ") {
				t.Errorf("error %q does not start with the package name", err)
			}
		})
	}
}

func TestAccessKeyStringRedactsSecret(t *testing.T) {
	k := activeKey()
	for _, s := range []string{k.String(), k.GoString()} {
		if strings.Contains(s, akSecret) || !strings.Contains(s, akKeyID) {
			t.Errorf("String() = %q", s)
		}
	}
}

// TestAccessKeyReplayConcurrent: under concurrent use each signature is
// accepted exactly once, however many copies race.
func TestAccessKeyReplayConcurrent(t *testing.T) {
	const signatures, copies = 40, 4
	v := newVerifier(t, newAKStore(activeKey()), interceptors.WithAccessKeyReplayProtection(signatures))
	mds := make([]metadata.MD, signatures)
	for i := range mds {
		mds[i] = clientSign(t, akKeyID, akSecret, akPut, akAuthority, akNow)
	}
	accepted := make([]int, signatures)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for c := range copies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range mds {
				i := (i + c*7) % signatures // each goroutine in its own order
				_, err := v.VerifyAccessKey(context.Background(), akPut, akAuthority, mds[i].Copy())
				switch status.Code(err) {
				case codes.OK:
					mu.Lock()
					accepted[i]++
					mu.Unlock()
				case codes.Unauthenticated:
				default:
					t.Errorf("signature %d: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	for i, n := range accepted {
		if n != 1 {
			t.Errorf("signature %d accepted %d times, want once", i, n)
		}
	}
}

// FuzzVerifyAccessKey feeds the verifier arbitrary metadata, method and
// authority: it must never panic, never answer a Principal with an error,
// and accept nothing but the genuine call.
func FuzzVerifyAccessKey(f *testing.F) {
	good := clientSign(f, akKeyID, akSecret, akPut, akAuthority, akNow)
	goodAuth := good.Get("authorization")[0]
	goodDate := good.Get("x-amz-date")[0]
	f.Add(goodAuth, good.Get("x-amz-date")[0], good.Get(grpcauth.AccessKeyNonceKey)[0], "x-amz-meta-a", "1", akPut, akAuthority)
	f.Add("Bearer t1.x", "20261204T203000Z", "n", "", "", akPut, akAuthority)
	f.Add(strings.Replace(goodAuth, "x-iamtoken-nonce", "x-amz-meta-a;x-iamtoken-nonce", 1), good.Get("x-amz-date")[0], "n", "x-amz-meta-a", "v", akPut, akAuthority)
	f.Add(goodAuth, "20261304T203000Z", "n", "x-amz-date", "20261204T203000Z", "/a/b", "")
	v := newVerifier(f, newAKStore(activeKey()), interceptors.WithAccessKeyReplayProtection(16))
	f.Fuzz(func(t *testing.T, auth, date, nonce, extraKey, extraVal, method, authority string) {
		md := metadata.MD{
			"authorization":            {auth},
			"x-amz-date":               {date},
			"x-amz-content-sha256":     {"UNSIGNED-PAYLOAD"},
			grpcauth.AccessKeyNonceKey: {nonce},
		}
		if extraKey != "" {
			md[extraKey] = append(md[extraKey], extraVal)
		}
		p, err := v.VerifyAccessKey(context.Background(), method, authority, md)
		if err != nil {
			if p != nil {
				t.Fatalf("Principal %v with error %v", p, err)
			}
			if _, ok := status.FromError(err); !ok {
				t.Fatalf("error %v is not a status", err)
			}
			if strings.Contains(err.Error(), akSecret) {
				t.Fatalf("error %q holds the secret", err)
			}
			return
		}
		// The client signs a random nonce, so a genuine signature from an
		// earlier run (kept in the fuzz corpus) differs from goodAuth and is
		// still genuine. What must hold: nothing but the genuine key, scope,
		// signed headers, date, method and authority is ever accepted.
		goodScope, _, _ := strings.Cut(goodAuth, "Signature=")
		scope, _, _ := strings.Cut(auth, "Signature=")
		if scope != goodScope || date != goodDate || method != akPut || strings.TrimSuffix(authority, ":443") != akAuthority {
			t.Fatalf("accepted a call that is not a genuine one: %q %q %q %q", auth, date, method, authority)
		}
	})
}

// usingStore is an AccessKeyStore that also records uses.
type usingStore struct {
	*akStore
	mu   sync.Mutex
	uses []string // "keyID@time", guarded by mu
	err  error
}

func (s *usingStore) RecordAccessKeyUse(_ context.Context, keyID string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.uses = append(s.uses, keyID+"@"+at.UTC().Format(time.RFC3339))
	return s.err
}

func TestAccessKeyUseRecordedOnlyWhenAccepted(t *testing.T) {
	store := &usingStore{akStore: newAKStore(activeKey())}
	v := newVerifier(t, store)
	ctx := context.Background()

	bad := clientSign(t, akKeyID, "not-the-secret-not-the-secret-not-the-s", akPut, akAuthority, akNow)
	if _, err := v.VerifyAccessKey(ctx, akPut, akAuthority, bad); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("wrong secret: %v, want Unauthenticated", err)
	}
	if len(store.uses) != 0 {
		t.Fatalf("a refused call was recorded as a use: %v", store.uses)
	}

	good := clientSign(t, akKeyID, akSecret, akPut, akAuthority, akNow)
	if _, err := v.VerifyAccessKey(ctx, akPut, akAuthority, good); err != nil {
		t.Fatalf("VerifyAccessKey: %v", err)
	}
	if diff := cmp.Diff([]string{akKeyID + "@" + akNow.UTC().Format(time.RFC3339)}, store.uses); diff != "" {
		t.Errorf("uses (-want +got):\n%s", diff)
	}

	// A failing recorder does not refuse an authenticated call.
	store.err = errors.New("disk full")
	again := clientSign(t, akKeyID, akSecret, akPut, akAuthority, akNow)
	if _, err := v.VerifyAccessKey(ctx, akPut, akAuthority, again); err != nil {
		t.Errorf("with a failing recorder: %v, want the call accepted", err)
	}
}
