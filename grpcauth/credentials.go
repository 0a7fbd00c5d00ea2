package grpcauth

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/authmode"
)

// PerRPCCredentials puts "authorization: Bearer <IAM token>" on the calls
// that take an IAM token. It implements credentials.PerRPCCredentials and is
// safe for concurrent use.
//
// # Per call, by auth mode
//
// Each call's method is looked up in an authmode.Resolver (the default one
// unless WithAuthModeResolver):
//   - IAMToken methods get the bearer token;
//   - None methods (gRPC health, reflection, the token exchange) get
//     nothing, and no token is fetched for them;
//   - AccessKey methods get nothing from these credentials: an IAM token
//     must never reach an AWS-compatible service.
//
// An access-key signer is another PerRPCCredentials that acts only on
// AccessKey methods, so one connection carries both, each as its own dial
// option:
//
//	conn, err := grpc.NewClient(target,
//		grpc.WithTransportCredentials(credentials.NewTLS(nil)),
//		grpcauth.WithTokenSource(src),     // IAM-token methods
//		grpcauth.WithAccessKey(keyCreds),  // access-key methods
//	)
//
// gRPC merges the metadata of all per-RPC credentials of a call; since each
// returns nothing for the other's methods, every call carries exactly one
// kind of credential, or none.
//
// # Transport security
//
// RequireTransportSecurity is true, so gRPC refuses to dial without
// transport credentials, and every call checks that its connection has
// privacy and integrity (credentials.CheckSecurityLevel) before the token is
// even fetched. WithInsecureTransportForLocalTesting turns both off.
//
// # Errors
//
// A call that cannot get a token fails with Unavailable when the source
// could not be reached, Unauthenticated when it refused the credentials or
// the connection is not secure, and DeadlineExceeded or Canceled when the
// call's own context ended first. These are codes gRPC passes on unchanged
// (gRFC A54 rewrites some others from call credentials to Internal).
type PerRPCCredentials struct {
	cache *CachedSource
	// ownsCache is true when NewPerRPCCredentials made the cache, so that
	// Close closes it.
	ownsCache bool
	resolver  *authmode.Resolver
	insecure  bool
}

var _ credentials.PerRPCCredentials = (*PerRPCCredentials)(nil)

// CredentialsOption configures PerRPCCredentials.
type CredentialsOption func(*credentialsOptions)

type credentialsOptions struct {
	resolver  *authmode.Resolver
	insecure  bool
	cacheOpts []CacheOption
}

// WithInsecureTransportForLocalTesting lets the credentials send the token
// over a connection without transport security: anyone on the path can read
// it and act as you for up to 12 hours. It exists for tests against a server
// on loopback or in-process (bufconn); never use it with a remote server.
func WithInsecureTransportForLocalTesting() CredentialsOption {
	return func(o *credentialsOptions) { o.insecure = true }
}

// WithAuthModeResolver decides each method's auth mode with r instead of
// authmode.Default(), e.g. to mark a third-party service None or AccessKey.
// A nil r keeps the default.
func WithAuthModeResolver(r *authmode.Resolver) CredentialsOption {
	return func(o *credentialsOptions) {
		if r != nil {
			o.resolver = r
		}
	}
}

// WithCacheOptions configures the CachedSource that NewPerRPCCredentials
// puts in front of a source that is not one already. They are ignored when
// the source is a *CachedSource: it was configured when it was made.
func WithCacheOptions(opts ...CacheOption) CredentialsOption {
	return func(o *credentialsOptions) { o.cacheOpts = append(o.cacheOpts, opts...) }
}

// NewPerRPCCredentials returns credentials that put src's token on calls.
//
// If src is a *CachedSource, it is used as it is and stays the caller's to
// close. Any other source is put behind a new CachedSource (configured by
// WithCacheOptions), since a TokenSource fetches a new token on every call;
// Close closes that cache. It panics if src is nil.
func NewPerRPCCredentials(src TokenSource, opts ...CredentialsOption) *PerRPCCredentials {
	if src == nil {
		panic("grpcauth: NewPerRPCCredentials: nil TokenSource")
	}
	o := credentialsOptions{resolver: authmode.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	c := &PerRPCCredentials{resolver: o.resolver, insecure: o.insecure}
	if cs, ok := src.(*CachedSource); ok {
		c.cache = cs
	} else {
		c.cache = NewCachedSource(src, o.cacheOpts...)
		c.ownsCache = true
	}
	return c
}

// WithTokenSource is the one-line way to dial with an IAM token:
// grpc.WithPerRPCCredentials(NewPerRPCCredentials(src, opts...)).
//
// The cache it makes is not closed when the connection is; it needs no
// closing either, since it runs a goroutine only while a fetch does. To
// close it deterministically (e.g. in tests checked for leaked goroutines),
// pass a *CachedSource and close that.
func WithTokenSource(src TokenSource, opts ...CredentialsOption) grpc.DialOption {
	return grpc.WithPerRPCCredentials(NewPerRPCCredentials(src, opts...))
}

// GetRequestMetadata returns the bearer token for IAM-token methods and
// nothing for others. The map it returns is shared by every call with the
// same token and must not be modified (gRPC copies it).
func (c *PerRPCCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	ri, _ := credentials.RequestInfoFromContext(ctx)
	if c.resolver.Mode(ri.Method) != authmode.IAMToken {
		return nil, nil
	}
	if !c.insecure {
		// Checked before the fetch, so that no token is even obtained for
		// a connection it must not travel on.
		if err := credentials.CheckSecurityLevel(ri.AuthInfo, credentials.PrivacyAndIntegrity); err != nil {
			return nil, status.Errorf(codes.Unauthenticated, "grpcauth: refusing to send an IAM token over this connection: %v", err)
		}
	}
	e, err := c.cache.entry(ctx)
	if err != nil {
		return nil, statusError(err)
	}
	return e.md, nil
}

// RequireTransportSecurity reports whether the credentials need transport
// security: true unless WithInsecureTransportForLocalTesting.
func (c *PerRPCCredentials) RequireTransportSecurity() bool { return !c.insecure }

// Close closes the cache NewPerRPCCredentials made; a *CachedSource passed
// to it is left open.
func (c *PerRPCCredentials) Close() error {
	if c.ownsCache {
		return c.cache.Close()
	}
	return nil
}

// statusError maps a cache error to the gRPC status a call fails with. It
// uses only codes that gRPC passes on from call credentials.
func statusError(err error) error {
	var fe *FetchError
	switch {
	case errors.As(err, &fe):
		// The source's outcome: a fetch that timed out is an outage, not the
		// caller's deadline.
		if fe.Temporary {
			return status.Errorf(codes.Unavailable, "grpcauth: no valid IAM token: %v", err)
		}
		return status.Errorf(codes.Unauthenticated, "grpcauth: no valid IAM token: %v", err)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded, "grpcauth: no valid IAM token before the call's deadline: %v", err)
	case errors.Is(err, context.Canceled):
		return status.Errorf(codes.Canceled, "grpcauth: call canceled while waiting for an IAM token: %v", err)
	default:
		return status.Errorf(codes.Unavailable, "grpcauth: no valid IAM token: %v", err)
	}
}
