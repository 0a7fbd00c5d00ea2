package interceptors

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/iamtoken/iamtoken-go/authmode"
	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
)

// Defaults of the options.
const (
	// DefaultLeeway is how far exp, nbf and iat may be off, for clock skew.
	DefaultLeeway = 30 * time.Second
	// DefaultCacheSize is how many valid tokens the cache holds at most.
	DefaultCacheSize = 16384
	// DefaultJWKSRefreshInterval is how often the key set is fetched in the
	// background.
	DefaultJWKSRefreshInterval = 10 * time.Minute
	// DefaultJWKSMinRefreshInterval is the shortest time between two fetches
	// of the key set caused by unknown key IDs (and between retries after a
	// failed fetch).
	DefaultJWKSMinRefreshInterval = 30 * time.Second
)

// Limits on untrusted input.
const (
	// maxTokenBytes bounds a token before any parsing: an IAM token is well
	// under 2 KiB.
	maxTokenBytes = 8 << 10
	// maxKIDLen bounds a kid; with the charset check it keeps a hostile kid
	// out of logs and maps.
	maxKIDLen = 64
	// maxJWKSBytes bounds a fetched key set.
	maxJWKSBytes = 1 << 20
	// jwksFetchTimeout bounds one fetch of the key set.
	jwksFetchTimeout = 10 * time.Second
)

// Algorithms the validator can verify. DefaultAlgorithms is the allow-list
// unless WithAlgorithms changes it; the issuer signs with ES256 by default.
var (
	supportedAlgorithms = []string{"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"}
	defaultAlgorithms   = []string{"ES256", "RS256", "PS256", "EdDSA"}
)

// SupportedAlgorithms returns the JWS algorithms WithAlgorithms accepts.
func SupportedAlgorithms() []string { return append([]string(nil), supportedAlgorithms...) }

// DefaultAlgorithms returns the default allow-list: ES256, RS256, PS256 and
// EdDSA.
func DefaultAlgorithms() []string { return append([]string(nil), defaultAlgorithms...) }

// Option configures a Validator (NewValidator) or the interceptors
// (UnaryServerInterceptor, StreamServerInterceptor). The key, claim, cache
// and revocation options configure token validation; the others configure
// the interceptors only, and NewValidator ignores them.
type Option func(*options)

type options struct {
	// Token validation.
	validator          *Validator
	staticKeys         map[string]crypto.PublicKey
	jwksURL            string
	httpClient         *http.Client
	jwksRefresh        time.Duration
	jwksMinRefresh     time.Duration
	issuer             string
	audience           string
	algorithms         []string
	leeway             time.Duration
	cacheSize          int
	revocation         RevocationList
	revocationInterval time.Duration
	now                func() time.Time
	// validation names the validation options given, which a Validator
	// given with WithValidator would silently not see.
	validation []string

	// The interceptors.
	resolver          *authmode.Resolver
	accessKeys        AccessKeyVerifier
	hook              func(context.Context, Outcome)
	authorizer        func(ctx context.Context, fullMethod string, p *Principal) error
	insecureTransport bool

	// errs collects invalid option values, reported by the constructor.
	errs []error
}

func defaultOptions() *options {
	return &options{
		httpClient:     http.DefaultClient,
		jwksRefresh:    DefaultJWKSRefreshInterval,
		jwksMinRefresh: DefaultJWKSMinRefreshInterval,
		issuer:         iamjwt.Issuer,
		audience:       iamjwt.Audience,
		algorithms:     defaultAlgorithms,
		leeway:         DefaultLeeway,
		cacheSize:      DefaultCacheSize,
		now:            time.Now,
		resolver:       authmode.Default(),
	}
}

func newOptions(opts []Option) *options {
	o := defaultOptions()
	for _, opt := range opts {
		opt(o)
	}
	return o
}

func (o *options) fail(format string, args ...any) {
	o.errs = append(o.errs, fmt.Errorf("interceptors: "+format, args...))
}

// validateKeys checks the token-validation options: exactly one key source.
func (o *options) validateKeys() error {
	if err := errors.Join(o.errs...); err != nil {
		return err
	}
	switch {
	case o.staticKeys != nil && o.jwksURL != "":
		return errors.New("interceptors: WithStaticKeys and WithJWKSURL are exclusive")
	case o.staticKeys == nil && o.jwksURL == "":
		return errors.New("interceptors: no keys: use WithStaticKeys or WithJWKSURL")
	}
	return nil
}

// WithStaticKeys makes the validator verify tokens with a fixed key set, kid →
// public key (*ecdsa.PublicKey, *rsa.PublicKey of at least 2048 bits, or
// ed25519.PublicKey). Exclusive with WithJWKSURL.
func WithStaticKeys(keys map[string]crypto.PublicKey) Option {
	return func(o *options) {
		o.validation = append(o.validation, "WithStaticKeys")
		if len(keys) == 0 {
			o.fail("WithStaticKeys: empty key set")
			return
		}
		o.staticKeys = maps.Clone(keys)
	}
}

// WithJWKSURL makes the validator fetch the issuer's key set (a JWKS) from
// rawURL: in the background every refresh interval, and when a token names
// an unknown kid (at most once per minimum refresh interval). While the
// endpoint is down the keys fetched last keep working. Use https: plain
// http is for tests on loopback. A Validator with a JWKS URL must be closed.
// Exclusive with WithStaticKeys.
func WithJWKSURL(rawURL string) Option {
	return func(o *options) {
		o.validation = append(o.validation, "WithJWKSURL")
		u, err := url.Parse(rawURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			o.fail("WithJWKSURL: %q is not an http(s) URL", rawURL)
			return
		}
		o.jwksURL = rawURL
	}
}

// WithHTTPClient sets the client that fetches the JWKS. Optional; the
// default is http.DefaultClient. Each fetch is bounded to 10 s and 1 MiB
// whatever the client.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) {
		o.validation = append(o.validation, "WithHTTPClient")
		if c == nil {
			o.fail("WithHTTPClient: nil client")
			return
		}
		o.httpClient = c
	}
}

// WithJWKSRefreshInterval sets how often the key set is fetched in the
// background. Optional; the default is DefaultJWKSRefreshInterval.
func WithJWKSRefreshInterval(d time.Duration) Option {
	return func(o *options) {
		o.validation = append(o.validation, "WithJWKSRefreshInterval")
		if d <= 0 {
			o.fail("WithJWKSRefreshInterval: %v is not positive", d)
			return
		}
		o.jwksRefresh = d
	}
}

// WithJWKSMinRefreshInterval sets the shortest time between two fetches of
// the key set caused by tokens with an unknown kid, so that a flood of them
// cannot hammer the issuer. Optional; the default is
// DefaultJWKSMinRefreshInterval.
func WithJWKSMinRefreshInterval(d time.Duration) Option {
	return func(o *options) {
		o.validation = append(o.validation, "WithJWKSMinRefreshInterval")
		if d <= 0 {
			o.fail("WithJWKSMinRefreshInterval: %v is not positive", d)
			return
		}
		o.jwksMinRefresh = d
	}
}

// WithIssuer sets the required iss. Optional; the default is iamjwt's
// Issuer.
func WithIssuer(iss string) Option {
	return func(o *options) {
		o.validation = append(o.validation, "WithIssuer")
		if iss == "" {
			o.fail("WithIssuer: empty issuer")
			return
		}
		o.issuer = iss
	}
}

// WithAudience sets the audience a token's aud must contain. Optional; the
// default is iamjwt's Audience.
func WithAudience(aud string) Option {
	return func(o *options) {
		o.validation = append(o.validation, "WithAudience")
		if aud == "" {
			o.fail("WithAudience: empty audience")
			return
		}
		o.audience = aud
	}
}

// WithAlgorithms sets the allow-list of JWS algorithms, a subset of
// SupportedAlgorithms. "none" and the HMAC algorithms are never accepted.
// Optional; the default is DefaultAlgorithms.
func WithAlgorithms(algs ...string) Option {
	return func(o *options) {
		o.validation = append(o.validation, "WithAlgorithms")
		if len(algs) == 0 {
			o.fail("WithAlgorithms: empty allow-list")
			return
		}
		for _, a := range algs {
			if !slices.Contains(supportedAlgorithms, a) {
				o.fail("WithAlgorithms: %q is not a supported algorithm", a)
				return
			}
		}
		o.algorithms = append([]string(nil), algs...)
	}
}

// WithLeeway sets how far exp, nbf and iat may be off, for clock skew, up to
// 5 minutes. Optional; the default is DefaultLeeway.
func WithLeeway(d time.Duration) Option {
	return func(o *options) {
		o.validation = append(o.validation, "WithLeeway")
		if d < 0 || d > 5*time.Minute {
			o.fail("WithLeeway: %v is not between 0 and 5m", d)
			return
		}
		o.leeway = d
	}
}

// WithCacheSize sets how many valid tokens the cache holds at most (rounded
// up to a multiple of 64, its shard count); 0 disables the cache. Optional;
// the default is DefaultCacheSize.
func WithCacheSize(n int) Option {
	return func(o *options) {
		o.validation = append(o.validation, "WithCacheSize")
		if n < 0 {
			o.fail("WithCacheSize: %d is negative", n)
			return
		}
		o.cacheSize = n
	}
}

// WithRevocationList makes the validator refuse tokens whose jti r reports
// revoked. A token is checked when it is first validated and, once cached,
// again on a use at least the revocation check interval after its last
// check (by default on every use: see WithRevocationCheckInterval). A revoked
// token leaves the cache. An error from r refuses the call with
// codes.Unavailable: revocation fails closed.
func WithRevocationList(r RevocationList) Option {
	return func(o *options) {
		o.validation = append(o.validation, "WithRevocationList")
		if r == nil {
			o.fail("WithRevocationList: nil list")
			return
		}
		o.revocation = r
	}
}

// WithRevocationCheckInterval lets a cached token skip the revocation list
// for d after its last check, trading up to d of revocation delay for fewer
// lookups when the list is remote. Optional; the default 0 checks on every
// use.
func WithRevocationCheckInterval(d time.Duration) Option {
	return func(o *options) {
		o.validation = append(o.validation, "WithRevocationCheckInterval")
		if d < 0 {
			o.fail("WithRevocationCheckInterval: %v is negative", d)
			return
		}
		o.revocationInterval = d
	}
}

// WithValidator makes the interceptors validate IAM tokens with v, shared
// between the unary and the stream interceptor (one cache, one key set).
// The caller owns v and closes it. Exclusive with the token-validation
// options.
func WithValidator(v *Validator) Option {
	return func(o *options) {
		if v == nil {
			o.fail("WithValidator: nil validator")
			return
		}
		o.validator = v
	}
}

// WithResolver sets the resolver that gives each method its auth mode.
// Optional; the default is authmode.Default(), where gRPC health (Check and
// Watch) and reflection need no credentials.
func WithResolver(r *authmode.Resolver) Option {
	return func(o *options) {
		if r == nil {
			o.fail("WithResolver: nil resolver")
			return
		}
		o.resolver = r
	}
}

// WithAccessKeyVerifier sets the check of access-key methods. Without it,
// calls to access-key methods are refused with codes.Unauthenticated.
func WithAccessKeyVerifier(v AccessKeyVerifier) Option {
	return func(o *options) {
		if v == nil {
			o.fail("WithAccessKeyVerifier: nil verifier")
			return
		}
		o.accessKeys = v
	}
}

// WithOutcomeHook calls hook once per call that needs credentials, after the
// decision and before the handler, so that metrics and logs can count
// outcomes. The Outcome never holds the credential. hook must be safe for
// concurrent use and fast: it runs on the call's path.
func WithOutcomeHook(hook func(ctx context.Context, o Outcome)) Option {
	return func(o *options) {
		if hook == nil {
			o.fail("WithOutcomeHook: nil hook")
			return
		}
		o.hook = hook
	}
}

// WithAuthorizer runs authorize after a caller authenticated, with the
// method and its Principal. An error refuses the call: a gRPC status error
// keeps its code, any other error becomes codes.PermissionDenied with its
// message.
func WithAuthorizer(authorize func(ctx context.Context, fullMethod string, p *Principal) error) Option {
	return func(o *options) {
		if authorize == nil {
			o.fail("WithAuthorizer: nil function")
			return
		}
		o.authorizer = authorize
	}
}

// WithInsecureTransport accepts IAM tokens and access-key calls on
// connections without transport security. By default they are refused: a
// token sent in clear is a token given away, and an access-key signature does
// not cover the message, which only TLS protects. Use it only behind a TLS-terminating proxy that forwards
// to the server over a trusted link, or in tests on loopback.
func WithInsecureTransport() Option {
	return func(o *options) { o.insecureTransport = true }
}
