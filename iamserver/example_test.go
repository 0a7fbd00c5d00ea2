package iamserver_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"

	"google.golang.org/grpc"

	"github.com/iamtoken/iamtoken-go/iamserver"
)

// An issuer over a memory store: gRPC services (IamTokenService also under
// the reference deployment's name) and the REST exchange with the JWKS.
// A real deployment opens an SQLiteStore and puts the server interceptors
// on the grpc.Server.
func ExampleNew() {
	ctx := context.Background()
	srv, err := iamserver.New(ctx, iamserver.Options{
		Store:       iamserver.NewMemoryStore(),
		OAuthTokens: map[string]string{"y0_example": "user-alice"},
	})
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	g := grpc.NewServer()
	srv.Register(g)
	defer g.Stop()
	web := httptest.NewServer(srv.HTTPHandler())
	defer web.Close()

	tok, err := srv.ExchangeOAuthToken(ctx, "y0_example")
	if err != nil {
		panic(err)
	}
	fmt.Println(strings.Count(tok.Value, "."), strings.Contains(string(srv.JWKS()), `"alg":"ES256"`))
	// Output: 2 true
}
