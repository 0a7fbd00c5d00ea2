package grpcauth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/iamtoken/iamtoken-go/grpcauth"
	"github.com/iamtoken/iamtoken-go/iamtest"
)

// TestMetadataExpiresInThroughCache checks that the metadata service's
// expires_in reaches the cache as the token's expiry: the cache must not
// assume a 12-hour token when the VM hands out one with minutes left.
func TestMetadataExpiresInThroughCache(t *testing.T) {
	tests := []struct {
		name         string
		expiresIn    time.Duration
		opts         []grpcauth.CacheOption
		wantLifetime time.Duration
		wantErr      string
	}{
		{name: "ten minutes left", expiresIn: 10 * time.Minute, wantLifetime: 10 * time.Minute},
		{name: "a full token", expiresIn: 12 * time.Hour, wantLifetime: 12 * time.Hour},
		{
			// With the default one-minute safety margin, a token with 30 s
			// left is unusable; a 12-hour guess would have taken it.
			name: "less than the safety margin left", expiresIn: 30 * time.Second,
			wantErr: "expires within the safety margin",
		},
		{
			name: "a smaller margin takes it", expiresIn: 30 * time.Second,
			opts: []grpcauth.CacheOption{grpcauth.WithSafetyMargin(5 * time.Second)}, wantLifetime: 30 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md := iamtest.NewMetadataServer()
			defer md.Close()
			md.SetToken("t1.vm-token", tt.expiresIn)
			src := newMetadataSource(t, md.Addr())
			cache := grpcauth.NewCachedSource(src, tt.opts...)
			defer cache.Close()

			tok, err := cache.Token(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Token = %v, %v; want an error mentioning %q", tok, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if got := tok.Expiry.Sub(tok.Obtained); got != tt.wantLifetime {
				t.Errorf("cached token lives %s, want %s", got, tt.wantLifetime)
			}
			// The cached token is shared: no second request.
			again, err := cache.Token(context.Background())
			if err != nil || again.Value != tok.Value {
				t.Fatalf("second Token = %v, %v", again, err)
			}
			if md.Calls() != 1 {
				t.Errorf("metadata calls %d, want 1", md.Calls())
			}
		})
	}
}

// TestKeySourceThroughCache runs the whole client path of a service
// account: key file, JWT, exchange, cache.
func TestKeySourceThroughCache(t *testing.T) {
	ep := iamtest.NewTokenEndpoint()
	defer ep.Close()
	ep.AddKeyFile(testKey())
	ep.SetLifetime(3 * time.Hour)
	src := newKeySource(t, &grpcauth.ExchangeOptions{Endpoint: ep.GRPCAddr(), Insecure: true})
	cache := grpcauth.NewCachedSource(src)
	defer cache.Close()
	for i := 0; i < 5; i++ {
		tok, err := cache.Token(context.Background())
		if err != nil {
			t.Fatalf("Token: %v", err)
		}
		if account, _ := ep.Subject(tok.Value); account != "ajesa1" {
			t.Fatalf("token issued to %q, want ajesa1", account)
		}
	}
	if c := ep.Calls(); c.ReferenceGRPC != 1 {
		t.Errorf("endpoint calls %+v, want one exchange for five calls", c)
	}
}
