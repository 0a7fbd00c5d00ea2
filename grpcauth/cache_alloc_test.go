//go:build !race

package grpcauth

import (
	"context"
	"testing"
	"time"
)

// The race detector allocates on its own, so this runs without it.
func TestHotPathDoesNotAllocate(t *testing.T) {
	clock := newFakeClock()
	c := newTestCache(t, newFakeSource(clock, 12*time.Hour), clock)
	creds := NewPerRPCCredentials(c)
	ctx := requestContext(iamMethod, secureInfo)
	healthCtx := requestContext(healthMethod, secureInfo)
	if _, err := creds.GetRequestMetadata(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func()
	}{
		{name: "CachedSource.Token", call: func() { c.Token(context.Background()) }},
		{name: "GetRequestMetadata", call: func() { creds.GetRequestMetadata(ctx) }},
		{name: "GetRequestMetadata, health check", call: func() { creds.GetRequestMetadata(healthCtx) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tt.call); n != 0 {
				t.Errorf("%v allocations per call, want 0", n)
			}
		})
	}
}
