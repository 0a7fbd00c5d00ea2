package interceptors_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/interceptors"
	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
)

// A server that checks IAM tokens against the issuer's published key set.
// The Validator refreshes the keys in the background, so it is built once,
// shared by both interceptors, and closed when the server stops.
func ExampleUnaryServerInterceptor() {
	v, err := interceptors.NewValidator(interceptors.WithJWKSURL("https://iam.example.com/.well-known/jwks.json"))
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(interceptors.UnaryServerInterceptor(interceptors.WithValidator(v))),
		grpc.ChainStreamInterceptor(interceptors.StreamServerInterceptor(interceptors.WithValidator(v))),
	)
	_ = srv // register services, then srv.Serve(lis)
}

// The full chain: metrics first, so that refused calls are counted too,
// then authentication, then whatever needs the caller. The outcome hook
// feeds the auth metrics; it never sees the credential.
func Example_serverChain() {
	v, err := interceptors.NewValidator(interceptors.WithJWKSURL("https://iam.example.com/.well-known/jwks.json"))
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	metrics := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		log.Printf("%s %v %v", info.FullMethod, status.Code(err), time.Since(start))
		return resp, err
	}
	opts := []interceptors.Option{
		interceptors.WithValidator(v),
		interceptors.WithOutcomeHook(func(_ context.Context, o interceptors.Outcome) {
			log.Printf("auth %s mode=%v code=%v subject=%q", o.FullMethod, o.Mode, o.Code, o.Subject)
		}),
		interceptors.WithAuthorizer(func(_ context.Context, method string, p *interceptors.Principal) error {
			return nil // e.g. look up p.SubjectID's roles for method
		}),
	}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(metrics, interceptors.UnaryServerInterceptor(opts...)),
		grpc.ChainStreamInterceptor(interceptors.StreamServerInterceptor(opts...)),
	)
	_ = srv
}

// Handlers read the caller from their context.
func ExamplePrincipalFromContext() {
	handler := func(ctx context.Context) string {
		p, ok := interceptors.PrincipalFromContext(ctx)
		if !ok {
			return "anonymous (a method that needs no credentials)"
		}
		return fmt.Sprintf("%s %s via %s", p.SubjectType, p.SubjectID, p.Method)
	}
	ctx := interceptors.NewContextWithPrincipal(context.Background(), &interceptors.Principal{
		SubjectID: "ajeSA123", SubjectType: interceptors.SubjectServiceAccount, Method: interceptors.AuthIAMToken,
	})
	fmt.Println(handler(ctx))
	fmt.Println(handler(context.Background()))
	// Output:
	// service_account ajeSA123 via iam_token
	// anonymous (a method that needs no credentials)
}

// A Validator works on its own, e.g. for a token that arrives over HTTP.
func ExampleValidator_Validate() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	v, err := interceptors.NewValidator(interceptors.WithStaticKeys(map[string]crypto.PublicKey{"key-1": key.Public()}))
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	// What the issuer would sign.
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, iamjwt.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    iamjwt.Issuer,
			Subject:   "ajeSA123",
			Audience:  jwt.ClaimStrings{iamjwt.Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
			ID:        "token-1",
		},
		SubjectType: iamjwt.SubjectServiceAccount,
	})
	tok.Header["kid"] = "key-1"
	signed, err := tok.SignedString(key)
	if err != nil {
		log.Fatal(err)
	}

	p, err := v.Validate(context.Background(), signed)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.SubjectID, p.SubjectType, p.TokenID)

	_, err = v.Validate(context.Background(), signed[:len(signed)-4]+"AAAA")
	fmt.Println(err)
	// Output:
	// ajeSA123 service_account token-1
	// interceptors: invalid IAM token: signature does not verify
}
