package iamserver

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
)

// TokenPath is the path of the REST token exchange, under the issuer's base
// URL, as in the reference deployment.
const TokenPath = "/iam/v1/tokens"

// JWKSPath is where the issuer publishes its key set.
const JWKSPath = "/.well-known/jwks.json"

// DefaultKeyRotationInterval is how long a signing key stays current by
// default. With 12-hour tokens at most three keys are published at a time.
const DefaultKeyRotationInterval = 24 * time.Hour

// Options configure a Server.
type Options struct {
	// Store keeps service accounts, keys and revocations. Required. The
	// Server does not close it.
	Store Store
	// Issuer is the `iss` of issued tokens. Optional; iamjwt.Issuer by
	// default.
	Issuer string
	// Audience is the `aud` of issued tokens. Optional; iamjwt.Audience by
	// default.
	Audience string
	// TokenLifetime is how long issued tokens live. Optional; 12 hours by
	// default, which is also the most allowed.
	TokenLifetime time.Duration
	// TokenURLs are the audiences accepted in the JWTs service accounts sign
	// for the exchange. Optional; by default Issuer+TokenPath and the
	// reference deployment's token URL (iamjwt.ReferenceTokenURL), so that
	// its SDKs work unchanged.
	TokenURLs []string
	// KeyRotationInterval is how long a signing key stays current.
	// Optional; DefaultKeyRotationInterval by default, at least one minute.
	KeyRotationInterval time.Duration
	// OAuthTokens maps users' OAuth tokens to their user account IDs.
	// Optional. The tokens are kept only as SHA-256 hashes and never logged.
	OAuthTokens map[string]string
	// Logger receives operational events (rotations, store failures); never
	// a credential. Optional; slog.Default() by default.
	Logger *slog.Logger
	// Now is the wall clock. Optional; time.Now by default. Tests set it.
	Now func() time.Time
	// DisableBackgroundRotation stops New from starting the goroutine that
	// rotates keys on schedule; the owner then calls Rotate itself. Optional.
	DisableBackgroundRotation bool
	// SigningKeyFiles are PEM files with P-256 private keys that the
	// operator provides instead of keys generated and kept in the Store.
	// Optional. The first signs; all are published. Nothing rotates them:
	// the operator adds the next key second, restarts, moves it first once
	// validators have refetched the JWKS, and drops the old one 12 hours
	// later.
	SigningKeyFiles []string
}

func (o *Options) validateAndFill() error {
	if o.Store == nil {
		return errors.New("iamserver: Options.Store is required")
	}
	if o.Issuer == "" {
		o.Issuer = iamjwt.Issuer
	}
	if o.Audience == "" {
		o.Audience = iamjwt.Audience
	}
	switch {
	case o.TokenLifetime == 0:
		o.TokenLifetime = iamjwt.MaxLifetime
	case o.TokenLifetime < time.Minute || o.TokenLifetime > iamjwt.MaxLifetime:
		return fmt.Errorf("iamserver: Options.TokenLifetime %s is outside [1m, %s]", o.TokenLifetime, iamjwt.MaxLifetime)
	}
	if len(o.TokenURLs) == 0 {
		o.TokenURLs = []string{o.Issuer + TokenPath, iamjwt.ReferenceTokenURL}
	}
	switch {
	case o.KeyRotationInterval == 0:
		o.KeyRotationInterval = DefaultKeyRotationInterval
	case o.KeyRotationInterval < time.Minute:
		return fmt.Errorf("iamserver: Options.KeyRotationInterval %s is below one minute", o.KeyRotationInterval)
	}
	for tok, user := range o.OAuthTokens {
		if tok == "" || user == "" {
			return errors.New("iamserver: Options.OAuthTokens has an empty token or user ID")
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Server is the issuer: it exchanges proofs of identity for IAM tokens,
// publishes its keys, and backs the management services. Create one with
// New and stop it with Close. It is safe for concurrent use.
type Server struct {
	opts   Options
	store  Store
	logger *slog.Logger
	// oauth maps SHA-256(OAuth token) to a user ID: looking a token up by its
	// hash neither keeps the token nor leaks its bytes through timing.
	oauth map[[sha256.Size]byte]string

	// keys is the current key snapshot; it is replaced, never mutated.
	keys atomic.Pointer[keySet]
	// rotateMu serializes rotations and reloads of keys.
	rotateMu sync.Mutex
	// staticKeys holds the keys from Options.SigningKeyFiles; nil when the
	// Store keeps generated keys. Written only by New.
	staticKeys []*SigningKey

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// New returns a Server with a current signing key (loaded from the store, or
// created) and, unless disabled, a background goroutine that rotates keys on
// schedule until Close.
func New(ctx context.Context, opts Options) (*Server, error) {
	if err := opts.validateAndFill(); err != nil {
		return nil, err
	}
	s := &Server{
		opts:   opts,
		store:  opts.Store,
		logger: opts.Logger,
		oauth:  make(map[[sha256.Size]byte]string, len(opts.OAuthTokens)),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	for tok, user := range opts.OAuthTokens {
		s.oauth[sha256.Sum256([]byte(tok))] = user
	}
	s.opts.OAuthTokens = nil
	if len(opts.SigningKeyFiles) > 0 {
		keys, err := loadSigningKeyFiles(opts.SigningKeyFiles)
		if err != nil {
			return nil, err
		}
		s.staticKeys = keys
	}
	if err := s.maintainKeys(ctx); err != nil {
		return nil, err
	}
	if s.opts.DisableBackgroundRotation {
		close(s.done)
		return s, nil
	}
	go s.rotateLoop()
	return s, nil
}

func (s *Server) now() time.Time { return s.opts.Now().UTC() }

// rotateLoop checks the keys often compared with the rotation interval, so
// that a rotation is at most a little late even after the host slept.
func (s *Server) rotateLoop() {
	defer close(s.done)
	every := min(s.opts.KeyRotationInterval/10, time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), every)
			if err := s.maintainKeys(ctx); err != nil {
				// The current key keeps signing; the next tick tries again.
				s.logger.Error("iamserver: key maintenance failed", "err", err)
			}
			cancel()
		}
	}
}

// Close stops the background rotation. It does not close the Store.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if !s.opts.DisableBackgroundRotation {
			close(s.stop)
		}
	})
	<-s.done
	return nil
}

// Store returns the server's store, which also implements
// interceptors.AccessKeyStore and interceptors.RevocationList for the
// server's own interceptors.
func (s *Server) Store() Store { return s.store }

// IsRevoked implements interceptors.RevocationList.
func (s *Server) IsRevoked(ctx context.Context, tokenID string) (bool, error) {
	return s.store.IsRevoked(ctx, tokenID)
}

// IssuedToken is an IAM token and its expiry.
type IssuedToken struct {
	// Value is the token. It never appears in String.
	Value     string
	ExpiresAt time.Time
}

// String describes the token without its value.
func (t IssuedToken) String() string {
	return fmt.Sprintf("iamserver.IssuedToken{Value: [redacted %d bytes], ExpiresAt: %s}", len(t.Value), t.ExpiresAt.Format(time.RFC3339))
}

// GoString is String, so that %#v redacts the value too.
func (t IssuedToken) GoString() string { return t.String() }

// IssueToken signs an IAM token for a subject, with the configured
// lifetime. The exchange calls it once the subject has proven its identity;
// callers of the Go API are trusted to have checked that themselves.
func (s *Server) IssueToken(subjectID, subjectType string) (IssuedToken, error) {
	jti, err := newID(prefixToken)
	if err != nil {
		return IssuedToken{}, err
	}
	// Whole seconds: NumericDate carries no more, and expires_at must be
	// exactly the token's exp.
	now := s.now().Truncate(time.Second)
	exp := now.Add(s.opts.TokenLifetime)
	claims := &iamjwt.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.opts.Issuer,
			Subject:   subjectID,
			Audience:  jwt.ClaimStrings{s.opts.Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        jti,
		},
		SubjectType: subjectType,
	}
	v, err := s.sign(claims, nil)
	if err != nil {
		return IssuedToken{}, err
	}
	return IssuedToken{Value: v, ExpiresAt: exp}, nil
}
