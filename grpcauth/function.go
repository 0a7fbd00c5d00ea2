package grpcauth

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// FunctionContextSource holds the token that a serverless function's runtime
// hands each invocation in its call context (access_token, expires_in).
// Re-supply it at the start of every invocation with Set or SetJSON; Token
// returns the latest one and never past its remaining lifetime. Safe for
// concurrent use.
type FunctionContextSource struct {
	// tok is the latest token; nil until the first Set.
	tok atomic.Pointer[Token]
}

const functionSourceName = "function context"

// NewFunctionContextSource returns an empty source; Token fails until Set or
// SetJSON supplies a token.
func NewFunctionContextSource() *FunctionContextSource { return &FunctionContextSource{} }

// FunctionContextSourceFromJSON returns a source holding the token of a
// call context's token object, see SetJSON.
func FunctionContextSourceFromJSON(data []byte) (*FunctionContextSource, error) {
	s := NewFunctionContextSource()
	if err := s.SetJSON(data); err != nil {
		return nil, err
	}
	return s, nil
}

// Set supplies the invocation's token and its remaining lifetime. The token
// expires expiresIn from now (capped at MaxLifetime).
func (s *FunctionContextSource) Set(token string, expiresIn time.Duration) error {
	if expiresIn <= 0 {
		return configError(functionSourceName, errors.New("expires_in is not positive: the token has expired"))
	}
	if expiresIn > MaxLifetime {
		expiresIn = MaxLifetime
	}
	tok, err := newFreshToken(token, expiresIn, sourceNow())
	if err != nil {
		return configError(functionSourceName, err)
	}
	s.tok.Store(tok)
	return nil
}

// SetJSON supplies the invocation's token as the runtime gives it: a JSON
// object {"access_token": …, "expires_in": <seconds>, "token_type": "Bearer"}.
func (s *FunctionContextSource) SetJSON(data []byte) error {
	tok, err := parseMetadataAnswer(data, sourceNow())
	if err != nil {
		return configError(functionSourceName, err)
	}
	s.tok.Store(tok)
	return nil
}

// Token returns the latest supplied token while it is valid.
func (s *FunctionContextSource) Token(context.Context) (*Token, error) {
	tok := s.tok.Load()
	if tok == nil {
		return nil, &FetchError{Source: functionSourceName,
			Err: errors.New("no token supplied: call Set with the invocation's token")}
	}
	if !tok.Expiry.After(sourceNow()) {
		return nil, &FetchError{Source: functionSourceName,
			Err: fmt.Errorf("token expired at %s: supply the current invocation's token", tok.Expiry.UTC().Format(time.RFC3339))}
	}
	cp := *tok
	return &cp, nil
}
