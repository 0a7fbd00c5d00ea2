package bench

import (
	"context"
	"net"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/interceptors"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
)

type benchCompute struct {
	demov1.UnimplementedComputeServiceServer
}

var benchInstance = &demov1.GetInstanceResponse{Instance: &demov1.Instance{Id: "i-1", Name: "bench"}}

func (benchCompute) GetInstance(context.Context, *demov1.GetInstanceRequest) (*demov1.GetInstanceResponse, error) {
	return benchInstance, nil
}

type naiveClaimsKey struct{}

// BenchmarkUnaryRPC measures one unary call over loopback TCP: no auth, our
// interceptor (cache hits), and go-grpc-middleware's auth with a plain
// jwt.Parse per call. Every client sends the same token, so the bytes on
// the wire are the same.
func BenchmarkUnaryRPC(b *testing.B) {
	es := newIAMSigner(b, "ES256")
	tok := es.token(b, "t-1")
	v := newBenchValidator(b, es)

	parser := naiveParser()
	keyfunc := func(*jwt.Token) (any, error) { return es.priv.Public(), nil }
	naive := func(ctx context.Context) (context.Context, error) {
		raw, err := auth.AuthFromMD(ctx, "bearer")
		if err != nil {
			return nil, err
		}
		t, err := parser.Parse(raw, keyfunc)
		if err != nil {
			return nil, status.Error(codes.Unauthenticated, "invalid token")
		}
		return context.WithValue(ctx, naiveClaimsKey{}, t.Claims), nil
	}

	servers := []struct {
		name string
		opts []grpc.ServerOption
	}{
		{"none", nil},
		{"iamtoken", []grpc.ServerOption{grpc.ChainUnaryInterceptor(interceptors.UnaryServerInterceptor(
			interceptors.WithValidator(v), interceptors.WithInsecureTransport()))}},
		{"naive-jwt", []grpc.ServerOption{grpc.ChainUnaryInterceptor(auth.UnaryServerInterceptor(naive))}},
	}
	for _, s := range servers {
		b.Run(s.name, func(b *testing.B) {
			client := startLoopback(b, s.opts...)
			ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
			req := &demov1.GetInstanceRequest{InstanceId: "i-1"}
			if _, err := client.GetInstance(ctx, req); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.GetInstance(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func startLoopback(b *testing.B, opts ...grpc.ServerOption) demov1.ComputeServiceClient {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	demov1.RegisterComputeServiceServer(srv, benchCompute{})
	go srv.Serve(lis)
	b.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return demov1.NewComputeServiceClient(conn)
}
