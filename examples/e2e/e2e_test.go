package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/iamtoken/iamtoken-go/examples/demo"
	"github.com/iamtoken/iamtoken-go/grpcauth"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

func TestDemoEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the demo binaries")
	}
	serverBin, clientBin := build(t)
	dataDir := t.TempDir()

	srv := startServer(t, serverBin, dataDir)
	for _, f := range []string{demo.CAFile, demo.KeyFile, demo.OAuthTokenFile} {
		if _, err := os.Stat(filepath.Join(dataDir, f)); err != nil {
			t.Errorf("first start did not create %s: %v", f, err)
		}
	}

	// The client binary against the running server.
	out, err := exec.Command(clientBin, "-addr", srv.grpcAddr, "-data-dir", dataDir).CombinedOutput()
	if err != nil {
		t.Fatalf("client: %v\n%s\nserver logs:\n%s", err, out, srv.Logs())
	}
	if !strings.Contains(string(out), "All steps behaved as expected.") {
		t.Fatalf("client output lacks its final line:\n%s", out)
	}
	keyID := regexp.MustCompile(`access key (YCAJ\w+)`).FindSubmatch(out)
	if keyID == nil {
		t.Fatalf("client output names no access key:\n%s", out)
	}

	conn := dial(t, srv.grpcAddr, dataDir, nil)
	checkHealthAndReflection(t, conn)
	before := managementState(t, srv.grpcAddr, dataDir)
	if !slices.Contains(before.accessKeys, string(keyID[1])) {
		t.Fatalf("access key %s not listed before restart: %v", keyID[1], before.accessKeys)
	}

	// Restart over the same data directory: everything is still there.
	srv.stop(t)
	srv = startServer(t, serverBin, dataDir)
	after := managementState(t, srv.grpcAddr, dataDir)
	if diff := before.diff(after); diff != "" {
		t.Errorf("state changed across restart: %s", diff)
	}
	// And the client runs again, with the same key file.
	if out, err := exec.Command(clientBin, "-addr", srv.grpcAddr, "-data-dir", dataDir).CombinedOutput(); err != nil {
		t.Fatalf("client after restart: %v\n%s", err, out)
	}

	// The server logs each auth decision and never a credential.
	logs := srv.Logs()
	if !strings.Contains(logs, "msg=auth") {
		t.Errorf("server logged no auth outcome:\n%s", logs)
	}
	oauth, err := os.ReadFile(filepath.Join(dataDir, demo.OAuthTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs, strings.TrimSpace(string(oauth))) || strings.Contains(logs, "PRIVATE KEY") || strings.Contains(logs, "Bearer ") {
		t.Errorf("server logs hold a credential")
	}
}

// checkHealthAndReflection calls health and reflection with no credentials.
func checkHealthAndReflection(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health check with no credentials = %v, %v; want SERVING", res, err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection with no credentials: %v", err)
	}
	_ = stream.CloseSend()
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{
		"iamtoken.demo.v1.ComputeService", "iamtoken.demo.v1.StorageService", "iamtoken.iam.v1.IamTokenService",
		"iamtoken.iam.v1.ServiceAccountService", "iamtoken.iam.v1.KeyService", "iamtoken.iam.v1.AccessKeyService",
		"grpc.health.v1.Health",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection does not list %s (it lists %v)", want, names)
		}
	}
}

type state struct {
	serviceAccounts, keys, accessKeys []string
}

func (s state) diff(o state) string {
	var d []string
	if !slices.Equal(s.serviceAccounts, o.serviceAccounts) {
		d = append(d, "service accounts "+strings.Join(s.serviceAccounts, ",")+" → "+strings.Join(o.serviceAccounts, ","))
	}
	if !slices.Equal(s.keys, o.keys) {
		d = append(d, "keys "+strings.Join(s.keys, ",")+" → "+strings.Join(o.keys, ","))
	}
	if !slices.Equal(s.accessKeys, o.accessKeys) {
		d = append(d, "access keys "+strings.Join(s.accessKeys, ",")+" → "+strings.Join(o.accessKeys, ","))
	}
	return strings.Join(d, "; ")
}

// managementState lists, as the demo service account, its own account, keys
// and access keys.
func managementState(t *testing.T, addr, dataDir string) state {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	pool, err := demo.CertPool(filepath.Join(dataDir, demo.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	src, err := grpcauth.ServiceAccountKeySourceFromFile(filepath.Join(dataDir, demo.KeyFile), &grpcauth.ExchangeOptions{
		Endpoint: addr, TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	cache := grpcauth.NewCachedSource(src)
	defer cache.Close()
	conn := dial(t, addr, dataDir, cache)
	saID := src.Key().ServiceAccountID

	var st state
	sa, err := iamv1.NewServiceAccountServiceClient(conn).Get(ctx, &iamv1.ServiceAccountServiceGetRequest{ServiceAccountId: saID})
	if err != nil {
		t.Fatalf("ServiceAccountService.Get: %v", err)
	}
	st.serviceAccounts = []string{sa.GetServiceAccount().GetId() + "/" + sa.GetServiceAccount().GetName()}
	keys, err := iamv1.NewKeyServiceClient(conn).List(ctx, &iamv1.KeyServiceListRequest{ServiceAccountId: saID})
	if err != nil {
		t.Fatalf("KeyService.List: %v", err)
	}
	for _, k := range keys.GetKeys() {
		st.keys = append(st.keys, k.GetId())
	}
	aks, err := iamv1.NewAccessKeyServiceClient(conn).List(ctx, &iamv1.AccessKeyServiceListRequest{ServiceAccountId: saID})
	if err != nil {
		t.Fatalf("AccessKeyService.List: %v", err)
	}
	for _, k := range aks.GetAccessKeys() {
		st.accessKeys = append(st.accessKeys, k.GetKeyId())
	}
	if len(st.keys) == 0 {
		t.Error("the demo service account has no keys")
	}
	if err := conn.Close(); err != nil && !errors.Is(err, context.Canceled) {
		t.Log(err)
	}
	return st
}
