package grpcauth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/smithy-go/aws-http-auth/credentials"
	"github.com/aws/smithy-go/aws-http-auth/sigv4"
	v4 "github.com/aws/smithy-go/aws-http-auth/v4"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/authmode"
	"github.com/iamtoken/iamtoken-go/internal/sigv4rules"
)

const (
	// DefaultAccessKeyRegion is the credential scope region calls are signed
	// for unless WithAccessKeyRegion says otherwise: the reference
	// deployment's region. The server's verifier accepts the same default.
	DefaultAccessKeyRegion = "ru-central1"
	// DefaultAccessKeyService is the credential scope service calls are
	// signed for unless WithAccessKeyService says otherwise.
	DefaultAccessKeyService = "grpc"

	// AccessKeyNonceKey is the metadata key of the random nonce signed into
	// every call, so that two identical calls in the same second carry
	// different signatures and a server refusing replays accepts both.
	AccessKeyNonceKey = "x-iamtoken-nonce"
)

// AccessKeyCredentials signs each call to an access-key method with a static
// access key, in the AWS Signature Version 4 scheme (AWS4-HMAC-SHA256). It
// implements credentials.PerRPCCredentials and is safe for concurrent use.
//
// It acts only on methods whose auth mode (package authmode) is AccessKey and
// adds nothing to the others, so it shares a connection with the IAM-token
// credentials: each call gets what its mode asks for. The secret never leaves
// the process: calls carry only the key ID and an HMAC.
//
// # What a call carries
//
// The signature covers a canonical request made from the call: POST, the
// full method as the path, the call's authority (without ":443") as host,
// and the metadata x-amz-date, x-amz-content-sha256 (UNSIGNED-PAYLOAD: call
// credentials never see the message body, which TLS protects) and
// x-iamtoken-nonce, with the scope DATE/REGION/SERVICE/aws4_request. The
// metadata sent is authorization, x-amz-date, x-amz-content-sha256 and
// x-iamtoken-nonce. The signing is smithy-go's SigV4 signer (aws-http-auth)
// on a synthetic HTTP request that holds only those headers.
type AccessKeyCredentials struct {
	keyID, secret   string
	region, service string
	insecure        bool
	resolver        *authmode.Resolver
	signer          *sigv4.Signer
	// now dates the calls.
	now func() time.Time
}

var _ grpccreds.PerRPCCredentials = (*AccessKeyCredentials)(nil)

type accessKeyCredOptions struct {
	region, service string
	insecure        bool
	resolver        *authmode.Resolver
	now             func() time.Time
}

// AccessKeyOption configures NewAccessKeyCredentials.
type AccessKeyOption func(*accessKeyCredOptions) error

// WithAccessKeyRegion sets the credential scope region. Optional;
// DefaultAccessKeyRegion. It must be the server's.
func WithAccessKeyRegion(region string) AccessKeyOption {
	return func(o *accessKeyCredOptions) error {
		if !sigv4rules.ValidScopePart(region) {
			return fmt.Errorf("grpcauth: WithAccessKeyRegion: %q is not 1-64 of [a-z0-9_-]", region)
		}
		o.region = region
		return nil
	}
}

// WithAccessKeyService sets the credential scope service. Optional;
// DefaultAccessKeyService. It must be the server's.
func WithAccessKeyService(service string) AccessKeyOption {
	return func(o *accessKeyCredOptions) error {
		if !sigv4rules.ValidScopePart(service) {
			return fmt.Errorf("grpcauth: WithAccessKeyService: %q is not 1-64 of [a-z0-9_-]", service)
		}
		o.service = service
		return nil
	}
}

// WithAccessKeyResolver sets the resolver that answers each method's auth
// mode. Optional; authmode.Default(). Use the same overrides as the server.
func WithAccessKeyResolver(r *authmode.Resolver) AccessKeyOption {
	return func(o *accessKeyCredOptions) error {
		if r == nil {
			return errors.New("grpcauth: WithAccessKeyResolver: nil resolver")
		}
		o.resolver = r
		return nil
	}
}

// WithAccessKeyClock sets the clock calls are dated by. Optional; time.Now.
// The server refuses a call dated more than 15 minutes from its own clock.
func WithAccessKeyClock(now func() time.Time) AccessKeyOption {
	return func(o *accessKeyCredOptions) error {
		if now == nil {
			return errors.New("grpcauth: WithAccessKeyClock: nil clock")
		}
		o.now = now
		return nil
	}
}

// WithAccessKeyInsecureTransportForLocalTesting lets the credentials sign calls on a
// connection without transport security. Optional; off. It is for tests on
// loopback only: without TLS the call's body is not protected, since the
// signature does not cover it.
func WithAccessKeyInsecureTransportForLocalTesting() AccessKeyOption {
	return func(o *accessKeyCredOptions) error {
		o.insecure = true
		return nil
	}
}

// NewAccessKeyCredentials returns credentials that sign access-key calls with
// the key keyID and its secret.
func NewAccessKeyCredentials(keyID, secret string, opts ...AccessKeyOption) (*AccessKeyCredentials, error) {
	if !sigv4rules.ValidKeyID(keyID) {
		return nil, errors.New("grpcauth: NewAccessKeyCredentials: key ID must be 1-128 of [A-Za-z0-9._-]")
	}
	if secret == "" {
		return nil, errors.New("grpcauth: NewAccessKeyCredentials: empty secret")
	}
	o := accessKeyCredOptions{
		region:   DefaultAccessKeyRegion,
		service:  DefaultAccessKeyService,
		resolver: authmode.Default(),
		now:      time.Now,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	return &AccessKeyCredentials{
		keyID:    keyID,
		secret:   secret,
		region:   o.region,
		service:  o.service,
		insecure: o.insecure,
		resolver: o.resolver,
		signer: sigv4.New(func(so *v4.SignerOptions) {
			so.HeaderRules = accessKeyHeaderRules{}
			so.AddPayloadHashHeader = true
			// The path is a method name of unreserved characters and '/'
			// (checked per call), which escaping leaves as it is; the
			// verifier uses the same path.
			so.DisableDoublePathEscape = false
		}),
		now: o.now,
	}, nil
}

// WithAccessKey is a DialOption that attaches c to every call of the
// connection. It combines with the IAM-token credentials' own DialOption.
func WithAccessKey(c *AccessKeyCredentials) grpc.DialOption {
	return grpc.WithPerRPCCredentials(c)
}

// KeyID returns the access key ID the credentials sign with.
func (c *AccessKeyCredentials) KeyID() string { return c.keyID }

// String describes the credentials without their secret.
func (c *AccessKeyCredentials) String() string {
	if c == nil {
		return "grpcauth.AccessKeyCredentials(nil)"
	}
	return "grpcauth.AccessKeyCredentials{KeyID: " + c.keyID + ", Region: " + c.region +
		", Service: " + c.service + ", Secret: [redacted]}"
}

// GoString is String, so that %#v redacts the secret too.
func (c *AccessKeyCredentials) GoString() string { return c.String() }

// RequireTransportSecurity reports whether the credentials need a secure
// connection: true unless WithAccessKeyInsecureTransportForLocalTesting was given.
func (c *AccessKeyCredentials) RequireTransportSecurity() bool { return !c.insecure }

// GetRequestMetadata signs the call in ctx (credentials.RequestInfo) to the
// authority in uri[0], gRPC's "https://<authority><service path>". It
// returns nothing for methods that are not in the access-key mode.
func (c *AccessKeyCredentials) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	ri, ok := grpccreds.RequestInfoFromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "grpcauth: access key: no request info in the context")
	}
	if c.resolver.Mode(ri.Method) != authmode.AccessKey {
		return nil, nil
	}
	if !c.insecure {
		if err := grpccreds.CheckSecurityLevel(ri.AuthInfo, grpccreds.PrivacyAndIntegrity); err != nil {
			return nil, status.Errorf(codes.Unauthenticated, "grpcauth: access key: refusing to sign a call on a connection without transport security: %v", err)
		}
	}
	if !sigv4rules.ValidPath(ri.Method) {
		return nil, status.Errorf(codes.Internal, "grpcauth: access key: method %q has characters that cannot be signed", ri.Method)
	}
	host, err := accessKeyHostFromAudience(uri)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return c.sign(ri.Method, host, c.now())
}

// sign signs a call to method on host at t.
func (c *AccessKeyCredentials) sign(method, host string, t time.Time) (map[string]string, error) {
	nonce := rand.Text()
	req := &http.Request{
		Method: http.MethodPost,
		URL:    &url.URL{Scheme: "https", Host: host, Path: method},
		Host:   host,
		Header: http.Header{"X-Iamtoken-Nonce": {nonce}},
	}
	err := c.signer.SignRequest(&sigv4.SignRequestInput{
		Request:     req,
		PayloadHash: v4.UnsignedPayload(),
		Credentials: credentials.Credentials{AccessKeyID: c.keyID, SecretAccessKey: c.secret},
		Service:     c.service,
		Region:      c.region,
		Time:        t,
	})
	if err != nil {
		// The signer fails only on reading a body, which this request has
		// not; its error never holds the secret.
		return nil, status.Errorf(codes.Internal, "grpcauth: access key: signing: %v", err)
	}
	return map[string]string{
		"authorization":        req.Header.Get("Authorization"),
		"x-amz-date":           req.Header.Get("X-Amz-Date"),
		"x-amz-content-sha256": req.Header.Get("X-Amz-Content-Sha256"),
		AccessKeyNonceKey:      nonce,
	}, nil
}

// accessKeyHeaderRules signs the headers SigV4 signs by default (host, x-amz-*)
// and the nonce.
type accessKeyHeaderRules struct{}

func (accessKeyHeaderRules) IsSigned(h string) bool {
	return h == "host" || strings.HasPrefix(h, "x-amz-") || h == AccessKeyNonceKey
}

// hostFromAudience takes the authority out of gRPC's audience URI
// ("https://host[:port]/pkg.Service"), from which gRPC already removed
// ":443"; the server removes it from :authority likewise.
func accessKeyHostFromAudience(uri []string) (string, error) {
	if len(uri) == 0 {
		return "", errors.New("grpcauth: access key: no audience URI to take the authority from")
	}
	rest, ok := strings.CutPrefix(uri[0], "https://")
	if !ok {
		return "", errors.New("grpcauth: access key: audience URI is not https://")
	}
	host, _, _ := strings.Cut(rest, "/")
	host = strings.TrimSuffix(host, ":443")
	if host == "" {
		return "", errors.New("grpcauth: access key: audience URI has no authority")
	}
	return host, nil
}
