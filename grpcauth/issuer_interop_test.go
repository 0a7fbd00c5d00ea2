package grpcauth_test

import (
	"context"
	"testing"
	"time"

	"github.com/iamtoken/iamtoken-go/grpcauth"
	"github.com/iamtoken/iamtoken-go/iamtest"
)

// TestSourcesAgainstTheIssuer runs the exchanging sources against the real
// issuer (iamserver, through iamtest.NewIssuer), reading the key file
// exactly as the issuer's KeyService hands it out.
func TestSourcesAgainstTheIssuer(t *testing.T) {
	iss := iamtest.NewIssuer(t, &iamtest.IssuerOptions{
		TokenLifetime: 3 * time.Hour,
		OAuthTokens:   map[string]string{"y0_interop": "ajeinteropuser"},
	})
	sa := iss.CreateServiceAccount("", "interop")

	endpoints := []struct {
		name string
		opts *grpcauth.ExchangeOptions
	}{
		{"gRPC, reference method name", &grpcauth.ExchangeOptions{Endpoint: iss.GRPCAddr(), Insecure: true}},
		{"gRPC, this module's method name", &grpcauth.ExchangeOptions{Endpoint: iss.GRPCAddr(), Insecure: true, GRPCMethod: grpcauth.CreateMethod}},
		{"REST", &grpcauth.ExchangeOptions{Endpoint: iss.TokenURL(), Insecure: true}},
	}
	for _, e := range endpoints {
		t.Run(e.name, func(t *testing.T) {
			keySrc, err := grpcauth.ServiceAccountKeySourceFromBytes(sa.AuthorizedKeyJSON, e.opts)
			if err != nil {
				t.Fatalf("the issuer's key file does not load: %v", err)
			}
			defer keySrc.Close()
			oauthSrc, err := grpcauth.NewOAuthSource("y0_interop", e.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer oauthSrc.Close()
			for _, src := range []grpcauth.TokenSource{keySrc, oauthSrc} {
				tok, err := src.Token(context.Background())
				if err != nil {
					t.Fatalf("%v: Token: %v", src, err)
				}
				if lt := tok.Expiry.Sub(tok.Obtained); lt > 3*time.Hour || lt < 3*time.Hour-time.Minute {
					t.Errorf("%v: token lives %s, want about 3h", src, lt)
				}
			}
		})
	}
}
