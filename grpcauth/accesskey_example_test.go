package grpcauth_test

import (
	"log"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/iamtoken/iamtoken-go/grpcauth"
)

// One connection for IAM-token services and AWS-compatible (access-key)
// services: each call gets the credential its method's mode asks for.
func ExampleNewAccessKeyCredentials() {
	signer, err := grpcauth.NewAccessKeyCredentials(os.Getenv("ACCESS_KEY_ID"), os.Getenv("SECRET_ACCESS_KEY"))
	if err != nil {
		log.Fatal(err)
	}
	tokens, err := grpcauth.NewStaticSource(os.Getenv("IAM_TOKEN"), time.Time{})
	if err != nil {
		log.Fatal(err)
	}
	conn, err := grpc.NewClient("api.example:443",
		grpc.WithTransportCredentials(credentials.NewTLS(nil)),
		grpcauth.WithTokenSource(tokens), // IAM-token methods
		grpcauth.WithAccessKey(signer),   // access-key methods
	)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
}
