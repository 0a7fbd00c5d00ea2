package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/iamtoken/iamtoken-go/examples/demo"
	"github.com/iamtoken/iamtoken-go/grpcauth"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// build compiles the two demo binaries once per test run.
func build(t *testing.T) (server, client string) {
	t.Helper()
	dir := t.TempDir()
	server, client = filepath.Join(dir, "server"), filepath.Join(dir, "client")
	for bin, pkg := range map[string]string{server: "../server", client: "../client"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return server, client
}

type serverProc struct {
	cmd      *exec.Cmd
	grpcAddr string
	mu       sync.Mutex // guards logs
	logs     bytes.Buffer
	done     chan struct{}
}

func (p *serverProc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

var startedLine = regexp.MustCompile(`msg="demo server started" grpc=(\S+)`)

// startServer runs the server binary on free loopback ports and waits for
// the line that says where it listens.
func startServer(t *testing.T, bin, dataDir string) *serverProc {
	t.Helper()
	p := &serverProc{done: make(chan struct{})}
	p.cmd = exec.Command(bin, "-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-data-dir", dataDir)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if m := startedLine.FindStringSubmatch(line); m != nil {
				addr <- m[1]
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	t.Cleanup(func() { p.stop(t) })
	select {
	case p.grpcAddr = <-addr:
	case <-p.done:
		t.Fatalf("server exited before listening:\n%s", p.Logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("server did not start in 60s:\n%s", p.Logs())
	}
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *serverProc) stop(t *testing.T) {
	t.Helper()
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("server exit after SIGTERM: %v\n%s", err, p.Logs())
	}
}

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

func dial(t *testing.T, addr, dataDir string, src grpcauth.TokenSource) *grpc.ClientConn {
	t.Helper()
	pool, err := demo.CertPool(filepath.Join(dataDir, demo.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))}
	if src != nil {
		opts = append(opts, grpcauth.WithTokenSource(src))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
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
