package interceptors_test

import (
	"context"
	"log"

	"google.golang.org/grpc"

	"github.com/iamtoken/iamtoken-go/interceptors"
)

// exampleStore stands for the issuer's store of access keys.
type exampleStore struct{}

func (exampleStore) LookupAccessKey(context.Context, string) (*interceptors.AccessKey, error) {
	return nil, interceptors.ErrAccessKeyNotFound
}

// A server whose AWS-compatible services take calls signed with access keys
// (SigV4), next to IAM-token services, on one interceptor chain.
func ExampleNewAccessKeyVerifier() {
	verifier, err := interceptors.NewAccessKeyVerifier(exampleStore{},
		// Optional: the defaults are ru-central1 and grpc; clients sign
		// for the same scope.
		interceptors.WithAccessKeyRegion("ru-central1"),
		interceptors.WithAccessKeyService("grpc"),
		// Optional, off by default: refuse a signature seen before.
		interceptors.WithAccessKeyReplayProtection(100_000),
	)
	if err != nil {
		log.Fatal(err)
	}
	opts := []interceptors.Option{
		interceptors.WithAccessKeyVerifier(verifier),
		// ... and the IAM-token options: WithValidator or WithStaticKeys.
	}
	_ = grpc.NewServer(
		grpc.ChainUnaryInterceptor(interceptors.UnaryServerInterceptor(opts...)),
		grpc.ChainStreamInterceptor(interceptors.StreamServerInterceptor(opts...)),
	)
}
