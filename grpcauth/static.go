package grpcauth

import (
	"context"
	"fmt"
	"time"
)

// sourceNow is the sources' wall clock, a variable so that tests can move it.
var sourceNow = time.Now

// StaticSource returns one fixed token, for a token obtained elsewhere (a
// script, the IAM_TOKEN environment variable). Safe for concurrent use.
type StaticSource struct {
	value  string
	expiry time.Time
}

const staticSourceName = "static token"

// NewStaticSource returns a source of the token value. expiry is when it
// stops being valid; zero means unknown (the cache then assumes
// MaxLifetime). The value must be printable ASCII without spaces, at most
// MaxTokenSize bytes.
func NewStaticSource(value string, expiry time.Time) (*StaticSource, error) {
	if err := checkTokenValue(value); err != nil {
		return nil, configError(staticSourceName, fmt.Errorf("token %w", err))
	}
	return &StaticSource{value: value, expiry: expiry}, nil
}

// Token returns the token, or a final error once its expiry has passed:
// nothing can renew a static token.
func (s *StaticSource) Token(context.Context) (*Token, error) {
	now := sourceNow()
	if !s.expiry.IsZero() && !s.expiry.After(now) {
		return nil, &FetchError{Source: staticSourceName,
			Err: fmt.Errorf("token expired at %s", s.expiry.UTC().Format(time.RFC3339))}
	}
	return &Token{Value: s.value, Expiry: s.expiry, Obtained: now}, nil
}

// String describes the source without its token.
func (s *StaticSource) String() string {
	return fmt.Sprintf("grpcauth.StaticSource{Value: [redacted %d bytes], Expiry: %s}",
		len(s.value), s.expiry.UTC().Format(time.RFC3339))
}

// GoString is String, so that %#v redacts the token too.
func (s *StaticSource) GoString() string { return s.String() }
