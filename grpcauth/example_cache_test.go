package grpcauth_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/iamtoken/iamtoken-go/grpcauth"
)

// A source that obtains a token on every call; in real code one of the
// package's sources (metadata service, service-account key, …).
var mySource = grpcauth.TokenSourceFunc(func(context.Context) (*grpcauth.Token, error) {
	now := time.Now()
	return &grpcauth.Token{Value: "t1.example", Obtained: now, Expiry: now.Add(12 * time.Hour)}, nil
})

// Dialling in one line: the source is put behind a cache, and IAM-token
// methods get "authorization: Bearer …".
func ExampleWithTokenSource() {
	conn, err := grpc.NewClient("compute.example.test:443",
		grpc.WithTransportCredentials(credentials.NewTLS(nil)),
		grpcauth.WithTokenSource(mySource))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
}

// A cache of one's own, to configure it, watch its fetches and close it.
func ExampleNewCachedSource() {
	cache := grpcauth.NewCachedSource(mySource,
		grpcauth.WithRefreshInterval(30*time.Minute),
		grpcauth.WithObserver(func(ev grpcauth.CacheEvent) {
			if ev.Err != nil {
				log.Printf("IAM token refresh failed (next attempt %v): %v", ev.NextAttempt, ev.Err)
			}
		}))
	defer cache.Close()

	conn, err := grpc.NewClient("compute.example.test:443",
		grpc.WithTransportCredentials(credentials.NewTLS(nil)),
		grpc.WithPerRPCCredentials(grpcauth.NewPerRPCCredentials(cache)))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	if _, err := cache.Token(context.Background()); err != nil {
		log.Fatal(err)
	}
	st := cache.Stats()
	fmt.Println("fetches:", st.Fetches, "failures:", st.Failures)
	// Output: fetches: 1 failures: 0
}
