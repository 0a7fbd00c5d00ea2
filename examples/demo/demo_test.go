package demo

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/grpcauth"
	"github.com/iamtoken/iamtoken-go/iamserver"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

func startServer(t *testing.T, dir string, logs io.Writer) *Server {
	t.Helper()
	if logs == nil {
		logs = io.Discard
	}
	s, err := Start(t.Context(), Config{DataDir: dir, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestWalkthroughInProcess(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	s := startServer(t, dir, &logs)
	defer s.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := RunClient(ctx, ClientConfig{Addr: s.GRPCAddr(), CAFile: s.CAFile(), KeyFile: s.KeyFile(), Out: &out}); err != nil {
		t.Fatalf("RunClient: %v\noutput:\n%s", err, out.String())
	}
	for _, want := range []string{
		"WatchInstances (server stream): WATCH_EVENT_TYPE_",
		"UploadObject numbers.txt (client stream, 3 chunks): 24 bytes",
		"IAM token → StorageService refused: Unauthenticated: ",
		"access key → ComputeService refused: Unauthenticated: ",
		"Token cache: 1 fetch(es)",
		"All steps behaved as expected.",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(logs.String(), "code=OK") {
		t.Errorf("server logged no accepted call:\n%s", logs.String())
	}
	// The calls signed with the access key were recorded as its last use.
	keys, err := s.store.ListAccessKeys(ctx, s.ServiceAccountID, iamserver.Page{Limit: 10})
	if err != nil || len(keys) != 1 || keys[0].LastUsedAt.IsZero() {
		t.Errorf("access keys after the walk-through = %v, %v; want one, used", keys, err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, nil)
	saID := s.ServiceAccountID
	keyFile, err := os.ReadFile(s.KeyFile())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = startServer(t, dir, nil)
	defer s.Close()
	if s.ServiceAccountID != saID {
		t.Errorf("after restart service account = %s, want %s", s.ServiceAccountID, saID)
	}
	again, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil || !bytes.Equal(again, keyFile) {
		t.Errorf("key file changed across restart (err %v)", err)
	}
	// The key made on the first start still gets a token.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := RunClient(ctx, ClientConfig{Addr: s.GRPCAddr(), CAFile: s.CAFile(), KeyFile: s.KeyFile(), Out: &out}); err != nil {
		t.Fatalf("RunClient after restart: %v\n%s", err, out.String())
	}
}

// TestRevokedTokenIsRefused proves the server's chain consults the issuer's
// revocation list: a token works, is revoked, and is refused from then on.
func TestRevokedTokenIsRefused(t *testing.T) {
	s := startServer(t, t.TempDir(), nil)
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	pool, err := CertPool(s.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	tlsConfig := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	keySource, err := grpcauth.ServiceAccountKeySourceFromFile(s.KeyFile(), &grpcauth.ExchangeOptions{Endpoint: s.GRPCAddr(), TLSConfig: tlsConfig})
	if err != nil {
		t.Fatal(err)
	}
	defer keySource.Close()
	tok, err := keySource.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	static, err := grpcauth.NewStaticSource(tok.Value, tok.Expiry)
	if err != nil {
		t.Fatal(err)
	}
	cache := grpcauth.NewCachedSource(static)
	defer cache.Close()
	conn, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)), grpcauth.WithTokenSource(cache))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	compute := demov1.NewComputeServiceClient(conn)
	if _, err := compute.ListInstances(ctx, &demov1.ListInstancesRequest{}); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	if _, err := iamv1.NewIamTokenServiceClient(conn).Revoke(ctx, &iamv1.IamTokenServiceRevokeRequest{IamToken: tok.Value}); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	_, err = compute.ListInstances(ctx, &demov1.ListInstancesRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("after revocation: %v, want Unauthenticated", err)
	}
	if strings.Contains(err.Error(), tok.Value) {
		t.Error("the refusal echoes the token")
	}
}
