package grpcauth

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Token is an IAM token with its lifetime. The zero Expiry means the source
// did not say; callers treat such a token as living MaxLifetime from
// Obtained. Token values never appear in String, errors or logs.
type Token struct {
	// Value is the IAM token itself, sent as "authorization: Bearer <Value>".
	Value string
	// Expiry is when the token stops being valid, by the wall clock.
	Expiry time.Time
	// Obtained is when the source obtained it, by the wall clock.
	Obtained time.Time
}

// MaxLifetime is the longest an IAM token lives. No source's claim of a
// longer lifetime is believed.
const MaxLifetime = 12 * time.Hour

// String describes the token without its value.
func (t *Token) String() string {
	if t == nil {
		return "grpcauth.Token(nil)"
	}
	return fmt.Sprintf("grpcauth.Token{Value: [redacted %d bytes], Expiry: %s, Obtained: %s}",
		len(t.Value), t.Expiry.Format(time.RFC3339), t.Obtained.Format(time.RFC3339))
}

// GoString is String, so that %#v redacts the value too.
func (t *Token) GoString() string { return t.String() }

// TokenSource obtains IAM tokens. Implementations must be safe for concurrent
// use. Token honours ctx's deadline and cancellation.
//
// A source returns a fresh token on every call; put it behind a cache
// (NewCachedSource) so that calls share one.
type TokenSource interface {
	Token(ctx context.Context) (*Token, error)
}

// TokenSourceFunc adapts a function to TokenSource.
type TokenSourceFunc func(ctx context.Context) (*Token, error)

// Token calls f.
func (f TokenSourceFunc) Token(ctx context.Context) (*Token, error) { return f(ctx) }

// FetchError is a failure to obtain a token. Sources return it (wrapped or
// not) so that callers can tell an outage from a refusal.
type FetchError struct {
	// Source names the source, e.g. "metadata service".
	Source string
	// Temporary is true when the source could not be reached or failed in a
	// way that trying again later may cure (connection refused, timeouts, 5xx,
	// 429). It is false when the source answered and refused the credentials,
	// or the configuration is wrong.
	Temporary bool
	// Err is the cause. It never holds a token, a secret or a private key.
	Err error
}

func (e *FetchError) Error() string {
	kind := "refused"
	if e.Temporary {
		kind = "unavailable"
	}
	return fmt.Sprintf("grpcauth: %s %s: %v", e.Source, kind, e.Err)
}

func (e *FetchError) Unwrap() error { return e.Err }

// IsTemporary reports whether err is a FetchError that trying again may cure.
// An error that is not a FetchError counts as temporary, except for context
// cancellation.
func IsTemporary(err error) bool {
	var fe *FetchError
	if errors.As(err, &fe) {
		return fe.Temporary
	}
	return err != nil && !errors.Is(err, context.Canceled)
}
