package iamtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"

	"github.com/iamtoken/iamtoken-go/iamserver"
	"github.com/iamtoken/iamtoken-go/interceptors"
	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

// DefaultOwner is the user that Issuer.CreateServiceAccount records as the
// creator of the accounts it makes.
const DefaultOwner = "iamtest-user"

// IssuerOptions configure NewIssuer. The zero value is a working issuer.
type IssuerOptions struct {
	// TokenLifetime is the lifetime of issued tokens. Optional; 12 h.
	TokenLifetime time.Duration
	// OAuthTokens maps users' OAuth tokens to user IDs for the exchange.
	// Optional.
	OAuthTokens map[string]string
	// GRPCServerOptions are added to the gRPC server, e.g. the interceptors
	// that authenticate management calls (without them the management
	// services answer Unauthenticated: nothing puts a Principal in the
	// context). Optional.
	GRPCServerOptions []grpc.ServerOption
	// Now is the issuer's wall clock. Optional; time.Now.
	Now func() time.Time
	// Logger receives the issuer's operational events. Optional; they are
	// discarded, to keep test output quiet.
	Logger *slog.Logger
}

// Issuer is the real issuer (iamserver.Server) over a memory store, served
// in-process: gRPC on a loopback port (IamTokenService under this module's
// name and the reference deployment's, and the management services) and
// HTTP on an httptest server (the REST exchange and the JWKS). Its helpers
// make service accounts, keys and tokens, including tokens no exchange would
// issue, for negative tests. It is safe for concurrent use; Close stops
// everything it started.
type Issuer struct {
	// Server is the issuer itself, for anything the helpers do not cover.
	Server *iamserver.Server
	// Store is its memory store.
	Store *iamserver.MemoryStore

	tb      testing.TB
	web     *httptest.Server
	grpcSrv *grpc.Server
	lis     net.Listener
	served  chan struct{} // closed when the gRPC Serve goroutine returns
	once    sync.Once
	now     func() time.Time
}

// NewIssuer starts an Issuer. With a non-nil tb, failures end the test and
// the issuer is closed by tb.Cleanup; with nil, they panic (as
// httptest.NewServer does) and the caller must Close it. opts may be nil.
func NewIssuer(tb testing.TB, opts *IssuerOptions) *Issuer {
	if tb != nil {
		tb.Helper()
	}
	if opts == nil {
		opts = &IssuerOptions{}
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	i := &Issuer{Store: iamserver.NewMemoryStore(), tb: tb, served: make(chan struct{}), now: now}
	srv, err := iamserver.New(context.Background(), iamserver.Options{
		Store:         i.Store,
		TokenLifetime: opts.TokenLifetime,
		OAuthTokens:   opts.OAuthTokens,
		Now:           opts.Now,
		Logger:        logger,
		// A test controls rotation itself (Server.Rotate).
		DisableBackgroundRotation: true,
	})
	if err != nil {
		i.fail("start issuer: %v", err)
		return nil
	}
	i.Server = srv
	i.lis, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		i.fail("listen: %v", err)
		return nil
	}
	i.grpcSrv = grpc.NewServer(opts.GRPCServerOptions...)
	srv.Register(i.grpcSrv)
	go func() {
		defer close(i.served)
		_ = i.grpcSrv.Serve(i.lis)
	}()
	i.web = httptest.NewServer(srv.HTTPHandler())
	if tb != nil {
		tb.Cleanup(i.Close)
	}
	return i
}

func (i *Issuer) fail(format string, args ...any) {
	if i.tb != nil {
		i.tb.Helper()
		i.tb.Fatalf("iamtest: "+format, args...)
	}
	panic(fmt.Sprintf("iamtest: "+format, args...))
}

// Close stops the gRPC and HTTP servers and the issuer. It may be called
// more than once.
func (i *Issuer) Close() {
	i.once.Do(func() {
		i.grpcSrv.Stop()
		<-i.served
		i.web.Close()
		i.Server.Close()
	})
}

// GRPCAddr is the gRPC listener's host:port (plaintext, loopback).
func (i *Issuer) GRPCAddr() string { return i.lis.Addr().String() }

// URL is the HTTP server's base URL.
func (i *Issuer) URL() string { return i.web.URL }

// TokenURL is the REST exchange's URL.
func (i *Issuer) TokenURL() string { return i.web.URL + iamserver.TokenPath }

// JWKSURL is where the issuer publishes its key set: point validators here.
func (i *Issuer) JWKSURL() string { return i.web.URL + iamserver.JWKSPath }

// ServiceAccountKey is a service account the Issuer created with one
// authorized key.
type ServiceAccountKey struct {
	// ServiceAccountID is the account's ID.
	ServiceAccountID string
	// Key is its authorized key, with the private half: Key.JSON() is the
	// key file the client's key-file source reads.
	Key *KeyFile
	// AuthorizedKeyJSON is the key file exactly as KeyService.Create
	// answers it.
	AuthorizedKeyJSON []byte
}

// CreateServiceAccount creates a service account owned by owner
// (DefaultOwner when empty) with an RSA 2048 authorized key.
func (i *Issuer) CreateServiceAccount(owner, name string) *ServiceAccountKey {
	if i.tb != nil {
		i.tb.Helper()
	}
	if owner == "" {
		owner = DefaultOwner
	}
	ctx := i.principalContext(owner, interceptors.SubjectUserAccount)
	sa, err := i.Server.ServiceAccountService().Create(ctx, &iamv1.ServiceAccountServiceCreateRequest{Name: name})
	if err != nil {
		i.fail("create service account %q: %v", name, err)
		return nil
	}
	id := sa.GetServiceAccount().GetId()
	key, err := i.Server.KeyService().Create(ctx, &iamv1.KeyServiceCreateRequest{ServiceAccountId: id})
	if err != nil {
		i.fail("create key: %v", err)
		return nil
	}
	block, _ := pem.Decode([]byte(key.GetPrivateKey()))
	if block == nil {
		i.fail("create key: private key is not PEM")
		return nil
	}
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		i.fail("create key: %v", err)
		return nil
	}
	return &ServiceAccountKey{
		ServiceAccountID:  id,
		Key:               &KeyFile{ID: key.GetKey().GetId(), ServiceAccountID: id, PrivateKey: priv.(*rsa.PrivateKey)},
		AuthorizedKeyJSON: []byte(key.GetAuthorizedKeyJson()),
	}
}

// CreateAccessKey creates a static access key for a service account and
// answers its key ID and secret.
func (i *Issuer) CreateAccessKey(serviceAccountID string) (keyID, secret string) {
	if i.tb != nil {
		i.tb.Helper()
	}
	rec, err := i.Server.CreateAccessKey(context.Background(), serviceAccountID, "")
	if err != nil {
		i.fail("create access key: %v", err)
		return "", ""
	}
	return rec.KeyID, string(rec.Secret)
}

// principalContext is a context as the server's interceptors would make it
// for a caller.
func (i *Issuer) principalContext(subjectID string, typ interceptors.SubjectType) context.Context {
	return interceptors.NewContextWithPrincipal(context.Background(), &interceptors.Principal{
		SubjectID: subjectID, SubjectType: typ, Method: interceptors.AuthIAMToken,
	})
}

// Token issues a valid IAM token for any subject, as the exchange would.
// subjectType is one of "service_account", "user_account",
// "federated_user".
func (i *Issuer) Token(subjectID, subjectType string) string {
	if i.tb != nil {
		i.tb.Helper()
	}
	tok, err := i.Server.IssueToken(subjectID, subjectType)
	if err != nil {
		i.fail("issue token: %v", err)
		return ""
	}
	return tok.Value
}

// TokenSpec describes a token for Mint. Zero fields take the values a real
// token would have; the others make it odd.
type TokenSpec struct {
	// Subject is `sub`. Empty leaves it out.
	Subject string
	// SubjectType is `sub_type`; "service_account" when empty.
	SubjectType string
	// IssuedAt is `iat`; now when zero.
	IssuedAt time.Time
	// ExpiresAt is `exp`; IssuedAt plus the issuer's lifetime (12 h) when
	// zero. Set it in the past for an expired token.
	ExpiresAt time.Time
	// Issuer is `iss`; the issuer's when empty.
	Issuer string
	// Audience is `aud`; the issuer's when nil.
	Audience []string
	// TokenID is `jti`; random when empty.
	TokenID string
	// Omit lists claims to leave out ("exp", "iat", "aud", …).
	Omit []string
	// Claims are added to (or replace) the claims.
	Claims map[string]any
	// Header entries are added to (or replace) alg, typ and kid: a `kid`
	// the JWKS does not have, an `alg` that lies.
	Header map[string]any
	// ForeignKey signs with a fresh ES256 key that the JWKS does not hold
	// (under the current key's kid unless Header says otherwise).
	ForeignKey bool
	// Unsigned makes an `alg: none` token with an empty signature.
	Unsigned bool
}

// Mint makes a token as spec says, signed with the issuer's current key
// unless spec says otherwise. It checks nothing: use it for the tokens a
// validator must refuse.
func (i *Issuer) Mint(spec TokenSpec) string {
	if i.tb != nil {
		i.tb.Helper()
	}
	iat := spec.IssuedAt
	if iat.IsZero() {
		iat = i.now()
	}
	exp := spec.ExpiresAt
	if exp.IsZero() {
		exp = iat.Add(iamjwt.MaxLifetime)
	}
	claims := jwt.MapClaims{
		"iss":      iamjwt.Issuer,
		"aud":      []string{iamjwt.Audience},
		"sub_type": iamjwt.SubjectServiceAccount,
		"iat":      iat.Unix(),
		"exp":      exp.Unix(),
		"jti":      "iamtest-" + rand.Text(),
	}
	if spec.Subject != "" {
		claims["sub"] = spec.Subject
	}
	if spec.SubjectType != "" {
		claims["sub_type"] = spec.SubjectType
	}
	if spec.Issuer != "" {
		claims["iss"] = spec.Issuer
	}
	if spec.Audience != nil {
		claims["aud"] = spec.Audience
	}
	if spec.TokenID != "" {
		claims["jti"] = spec.TokenID
	}
	for _, c := range spec.Omit {
		delete(claims, c)
	}
	for k, v := range spec.Claims {
		claims[k] = v
	}
	switch {
	case spec.Unsigned:
		t := jwt.NewWithClaims(jwt.SigningMethodNone, claims)
		for k, v := range spec.Header {
			t.Header[k] = v
		}
		s, err := t.SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			i.fail("mint: %v", err)
		}
		return s
	case spec.ForeignKey:
		other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			i.fail("mint: %v", err)
		}
		t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
		t.Header["kid"] = i.Server.CurrentKeyID()
		for k, v := range spec.Header {
			t.Header[k] = v
		}
		s, err := t.SignedString(other)
		if err != nil {
			i.fail("mint: %v", err)
		}
		return s
	default:
		s, err := i.Server.SignClaims(claims, spec.Header)
		if err != nil {
			i.fail("mint: %v", err)
		}
		return s
	}
}
