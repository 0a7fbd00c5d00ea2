package iamtest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/iamtoken/iamtoken-go/grpcauth"
	"github.com/iamtoken/iamtoken-go/iamtest"
)

// A fake metadata service stands in for the one on a VM.
func ExampleNewMetadataServer() {
	md := iamtest.NewMetadataServer()
	defer md.Close()
	md.SetToken("token-from-the-vm", 10*time.Minute) // what remains of its lifetime

	src, err := grpcauth.NewMetadataSource(&grpcauth.MetadataOptions{Addr: md.Addr()})
	if err != nil {
		panic(err)
	}
	defer src.Close()

	tok, err := src.Token(context.Background())
	if err != nil {
		panic(err)
	}
	fmt.Println(tok.Expiry.Sub(tok.Obtained), md.Calls())
	// Output: 10m0s 1
}

// A fake token endpoint exchanges a generated service account key's JWTs,
// here over gRPC; use RESTURL as the endpoint for REST.
func ExampleNewTokenEndpoint() {
	ep := iamtest.NewTokenEndpoint()
	defer ep.Close()
	key := iamtest.NewKeyFile("key-1", "sa-1")
	ep.AddKeyFile(key)

	src, err := grpcauth.ServiceAccountKeySourceFromBytes(key.JSON(), &grpcauth.ExchangeOptions{
		Endpoint: ep.GRPCAddr(),
		Insecure: true, // a loopback fake; real endpoints use TLS
	})
	if err != nil {
		panic(err)
	}
	defer src.Close()

	tok, err := src.Token(context.Background())
	if err != nil {
		panic(err)
	}
	account, _ := ep.Subject(tok.Value)
	fmt.Println(account, ep.Calls().ReferenceGRPC)
	// Output: sa-1 1
}
