package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/iamtoken/iamtoken-go/examples/demo"
	"github.com/iamtoken/iamtoken-go/grpcauth"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		if bins.dir != "" {
			os.RemoveAll(bins.dir)
		}
		os.Exit(code)
	}))
}

// bins are the demo binaries, built once per run of the test binary and
// shared by every test; TestMain removes them.
var bins struct {
	once           sync.Once
	dir            string
	server, client string
	err            error
}

// build compiles the two demo binaries, once per test run.
func build(t *testing.T) (server, client string) {
	t.Helper()
	bins.once.Do(func() {
		if bins.dir, bins.err = os.MkdirTemp("", "iamtoken-e2e-"); bins.err != nil {
			return
		}
		bins.server, bins.client = filepath.Join(bins.dir, "server"), filepath.Join(bins.dir, "client")
		for bin, pkg := range map[string]string{bins.server: "../server", bins.client: "../client"} {
			cmd := exec.Command("go", "build", "-o", bin, pkg)
			if out, err := cmd.CombinedOutput(); err != nil {
				bins.err = fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
				return
			}
		}
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return bins.server, bins.client
}

// serverProc is a running server binary. Everything it prints, on stdout
// and stderr, is kept whole in logs: the secrets test searches all of it.
type serverProc struct {
	cmd       *exec.Cmd
	grpcAddr  string
	httpsAddr string
	done      chan struct{} // closed when the process has exited and its output is read
	waitErr   error         // set before done is closed

	mu      sync.Mutex // guards logs and partial
	logs    bytes.Buffer
	partial []byte // stderr since its last newline
	started chan [2]string
}

func (p *serverProc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

var startedLine = regexp.MustCompile(`msg="demo server started" grpc=(\S+) https=(\S+)`)

// procOutput appends what the process writes to its logs; the stderr one
// also looks for the line that says where the server listens.
type procOutput struct {
	p      *serverProc
	stderr bool
}

func (w procOutput) Write(b []byte) (int, error) {
	p := w.p
	p.mu.Lock()
	defer p.mu.Unlock()
	p.logs.Write(b)
	if !w.stderr {
		return len(b), nil
	}
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			return len(b), nil
		}
		if m := startedLine.FindSubmatch(p.partial[:i]); m != nil {
			select {
			case p.started <- [2]string{string(m[1]), string(m[2])}:
			default:
			}
		}
		p.partial = p.partial[i+1:]
	}
}

// startServer runs the server binary on free loopback ports and waits for
// the line that says where it listens.
func startServer(t *testing.T, bin, dataDir string) *serverProc {
	t.Helper()
	return startServerWith(t, bin, dataDir, nil, nil)
}

// startServerWith is startServer with extra flags and environment variables.
func startServerWith(t *testing.T, bin, dataDir string, args, env []string) *serverProc {
	t.Helper()
	p := &serverProc{done: make(chan struct{}), started: make(chan [2]string, 1)}
	args = append([]string{"-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-data-dir", dataDir}, args...)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = procOutput{p: p}
	p.cmd.Stderr = procOutput{p: p, stderr: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	select {
	case addrs := <-p.started:
		p.grpcAddr, p.httpsAddr = addrs[0], addrs[1]
	case <-p.done:
		t.Fatalf("server exited before listening:\n%s", p.Logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("server did not start in 60s:\n%s", p.Logs())
	}
	return p
}

// exited reports whether the process has ended.
func (p *serverProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *serverProc) stop(t *testing.T) {
	t.Helper()
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	if p.waitErr != nil {
		t.Errorf("server exit after SIGTERM: %v\n%s", p.waitErr, p.Logs())
	}
}

// kill sends SIGKILL, which the process cannot catch, and waits for it to
// die.
func (p *serverProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	<-p.done
	var exitErr *exec.ExitError
	if !errors.As(p.waitErr, &exitErr) {
		t.Fatalf("server after SIGKILL: %v, want death by signal", p.waitErr)
	}
	if ws, ok := exitErr.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("server after SIGKILL: %v, want death by SIGKILL", p.waitErr)
	}
}

// serverTLS is the TLS configuration that trusts the demo server's CA.
func serverTLS(t *testing.T, dataDir string) *tls.Config {
	t.Helper()
	pool, err := demo.CertPool(filepath.Join(dataDir, demo.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// dial connects to the demo server over TLS, with src's token on IAM-token
// methods when src is not nil. The connection is closed by t.Cleanup.
func dial(t *testing.T, addr, dataDir string, src grpcauth.TokenSource, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(serverTLS(t, dataDir)))}, opts...)
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

// readOAuthToken reads the demo user's OAuth token from the data directory.
func readOAuthToken(t *testing.T, dataDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, demo.OAuthTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return string(bytes.TrimSpace(b))
}

// userToken exchanges the demo user's OAuth token with the server at addr.
func userToken(ctx context.Context, t *testing.T, addr, dataDir string) *grpcauth.Token {
	t.Helper()
	src, err := grpcauth.NewOAuthSource(readOAuthToken(t, dataDir), &grpcauth.ExchangeOptions{
		Endpoint: addr, TLSConfig: serverTLS(t, dataDir),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	tok, err := src.Token(ctx)
	if err != nil {
		t.Fatalf("exchanging the demo user's OAuth token: %v", err)
	}
	return tok
}

// staticCache puts a token obtained elsewhere behind a cache the test
// closes, so that no goroutine outlives it.
func staticCache(t *testing.T, tok *grpcauth.Token) *grpcauth.CachedSource {
	t.Helper()
	src, err := grpcauth.NewStaticSource(tok.Value, tok.Expiry)
	if err != nil {
		t.Fatal(err)
	}
	c := grpcauth.NewCachedSource(src)
	t.Cleanup(func() { c.Close() })
	return c
}
