package grpcauth

import (
	"context"
	"fmt"

	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

// OAuthSource exchanges a user account's OAuth token for IAM tokens, over
// gRPC or REST as its ExchangeOptions say. It holds one connection for all
// its exchanges; Close releases it. Safe for concurrent use.
type OAuthSource struct {
	ex         exchanger
	oauthToken string
}

const oauthSourceName = "OAuth token exchange"

// NewOAuthSource returns a source that exchanges oauthToken. It does not
// connect yet.
func NewOAuthSource(oauthToken string, opts *ExchangeOptions) (*OAuthSource, error) {
	if err := checkTokenValue(oauthToken); err != nil {
		return nil, configError(oauthSourceName, fmt.Errorf("OAuth token %w", err))
	}
	ex, err := newExchanger(oauthSourceName, opts)
	if err != nil {
		return nil, err
	}
	return &OAuthSource{ex: ex, oauthToken: oauthToken}, nil
}

// Token exchanges the OAuth token for a new IAM token.
func (s *OAuthSource) Token(ctx context.Context) (*Token, error) {
	req := &iamv1.IamTokenServiceCreateRequest{
		Identity: &iamv1.IamTokenServiceCreateRequest_OauthToken{OauthToken: s.oauthToken},
	}
	return s.ex.exchange(ctx, req, s.oauthToken)
}

// Close releases the exchange's connection. Token fails after Close.
func (s *OAuthSource) Close() error { return s.ex.close() }

// String describes the source without its OAuth token.
func (s *OAuthSource) String() string { return "grpcauth.OAuthSource{OAuthToken: [redacted]}" }

// GoString is String, so that %#v redacts the token too.
func (s *OAuthSource) GoString() string { return s.String() }
