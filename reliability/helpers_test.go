package reliability

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/iamtest"
	"github.com/iamtoken/iamtoken-go/interceptors"
	"github.com/iamtoken/iamtoken-go/internal/devpki"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
)

// proxyMode is what a faultProxy does with connections.
type proxyMode int32

const (
	// modePass forwards connections to the target.
	modePass proxyMode = iota
	// modeRefuse resets every new connection at once, as a host whose
	// service is down does; switching to it also cuts open connections.
	modeRefuse
	// modeHang accepts connections and never answers: a service that hangs.
	// Switching to it also cuts open connections.
	modeHang
)

// faultProxy is a TCP proxy on a loopback port in front of a real service,
// which a test switches between passing, refusing and black-holing
// connections. It counts what it did, so tests can report how often a client
// tried.
type faultProxy struct {
	lis    net.Listener
	target string
	mode   atomic.Int32

	// accepted counts connections by the mode they met.
	passed, refused, hung atomic.Int64

	// mu guards conns and closed.
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool

	// wg counts the accept loop and every connection's goroutines.
	wg sync.WaitGroup
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: listen: %v", err)
	}
	p := &faultProxy{lis: lis, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *faultProxy) Addr() string { return p.lis.Addr().String() }

// setMode switches the proxy; leaving modePass cuts every open connection,
// so that clients meet the fault on their next call, not after an idle
// timeout.
func (p *faultProxy) setMode(m proxyMode) {
	p.mode.Store(int32(m))
	if m == modePass {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

func (p *faultProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		switch proxyMode(p.mode.Load()) {
		case modeRefuse:
			p.refused.Add(1)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // RST, as from a closed port
			}
			c.Close()
		case modeHang:
			p.hung.Add(1)
			if !p.track(c) {
				continue
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				_, _ = io.Copy(io.Discard, c)
				p.untrack(c)
			}()
		default:
			p.passed.Add(1)
			if !p.track(c) {
				continue
			}
			p.wg.Add(1)
			go p.pipe(c)
		}
	}
}

func (p *faultProxy) pipe(c net.Conn) {
	defer p.wg.Done()
	defer p.untrack(c)
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(u) {
		return
	}
	defer p.untrack(u)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
	c.Close()
	u.Close()
	<-done
}

// track registers an open connection; it closes c and answers false once
// the proxy is closed.
func (p *faultProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *faultProxy) untrack(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *faultProxy) close() {
	p.lis.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// fastReconnect keeps gRPC's own reconnect backoff short, so that a client
// notices a service that came back within a fraction of a second; the cache's
// backoff is what the tests look at.
var fastReconnect = grpc.WithConnectParams(grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 100 * time.Millisecond},
	MinConnectTimeout: time.Second,
})

// newIssuer starts the real issuer (iamserver over a memory store) and
// counts the token exchanges it answers, whatever their outcome.
func newIssuer(t *testing.T, opts *iamtest.IssuerOptions) (*iamtest.Issuer, *atomic.Int64) {
	t.Helper()
	var exchanges atomic.Int64
	count := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if strings.HasSuffix(info.FullMethod, "IamTokenService/Create") {
			exchanges.Add(1)
		}
		return h(ctx, req)
	}
	if opts == nil {
		opts = &iamtest.IssuerOptions{}
	}
	opts.GRPCServerOptions = append(opts.GRPCServerOptions, grpc.ChainUnaryInterceptor(count))
	return iamtest.NewIssuer(t, opts), &exchanges
}

// computeServer is the service under test: an ordinary IAM-token service
// (its proto option says so) that records which tokens reached it.
type computeServer struct {
	demov1.UnimplementedComputeServiceServer

	// mu guards tokenIDs.
	mu       sync.Mutex
	tokenIDs map[string]int // jti → accepted calls
}

func (s *computeServer) ListInstances(ctx context.Context, _ *demov1.ListInstancesRequest) (*demov1.ListInstancesResponse, error) {
	p, ok := interceptors.PrincipalFromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "no principal in the context")
	}
	s.mu.Lock()
	s.tokenIDs[p.TokenID]++
	s.mu.Unlock()
	return &demov1.ListInstancesResponse{}, nil
}

// testServer is a gRPC server on a loopback port with the library's
// interceptor chain in front of computeServer.
type testServer struct {
	addr    string
	compute *computeServer

	// mu guards refusals.
	mu       sync.Mutex
	refusals map[codes.Code]int
}

// startServer serves computeServer behind interceptors.UnaryServerInterceptor
// with opts. A nil tc serves plaintext (and accepts tokens on it).
func startServer(t *testing.T, tc credentials.TransportCredentials, opts ...interceptors.Option) *testServer {
	t.Helper()
	ts := &testServer{compute: &computeServer{tokenIDs: map[string]int{}}, refusals: map[codes.Code]int{}}
	opts = append(opts, interceptors.WithOutcomeHook(ts.outcome))
	var sopts []grpc.ServerOption
	if tc != nil {
		sopts = append(sopts, grpc.Creds(tc))
	} else {
		opts = append(opts, interceptors.WithInsecureTransport())
	}
	sopts = append(sopts, grpc.ChainUnaryInterceptor(interceptors.UnaryServerInterceptor(opts...)))
	srv := grpc.NewServer(sopts...)
	demov1.RegisterComputeServiceServer(srv, ts.compute)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("server: listen: %v", err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	ts.addr = lis.Addr().String()
	return ts
}

func (ts *testServer) outcome(_ context.Context, o interceptors.Outcome) {
	if o.Code == codes.OK {
		return
	}
	ts.mu.Lock()
	ts.refusals[o.Code]++
	ts.mu.Unlock()
}

// refused counts the calls the interceptors refused.
func (ts *testServer) refused() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	n := 0
	for _, c := range ts.refusals {
		n += c
	}
	return n
}

// tokens returns how many calls each token ID made.
func (ts *testServer) tokens() map[string]int {
	ts.compute.mu.Lock()
	defer ts.compute.mu.Unlock()
	m := make(map[string]int, len(ts.compute.tokenIDs))
	for k, v := range ts.compute.tokenIDs {
		m[k] = v
	}
	return m
}

// dial connects to addr with opts, closed at the end of the test.
func dial(t *testing.T, addr string, opts ...grpc.DialOption) demov1.ComputeServiceClient {
	t.Helper()
	return demov1.NewComputeServiceClient(dialConn(t, addr, opts...))
}

// dialConn is dial for tests that need the connection itself.
func dialConn(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	if len(opts) == 0 {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// connect opens conn and waits until it is ready, without making a call:
// a call to an IAM-token method would fetch a token.
func connect(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn.Connect()
	for s := conn.GetState(); s != connectivity.Ready; s = conn.GetState() {
		if !conn.WaitForStateChange(ctx, s) {
			t.Fatalf("connection to %s not ready: %v", conn.Target(), s)
		}
	}
}

// testTLS makes a CA and a certificate for 127.0.0.1 signed by it, and
// answers the server's and the client's transport credentials.
func testTLS(t *testing.T) (server, client credentials.TransportCredentials) {
	t.Helper()
	b := devpki.ForTest(t)
	return credentials.NewTLS(b.ServerConfig()), credentials.NewTLS(b.ClientConfig())
}

// maxAttempts is the most fetches a cache with backoff (minB, maxB) can
// start in window after a first failure: each wait after the n-th
// consecutive failure is at least half of min(minB·2ⁿ⁻¹, maxB). A tight
// retry loop would exceed it by orders of magnitude.
func maxAttempts(window, minB, maxB time.Duration) int {
	n, spent, d := 1, time.Duration(0), minB
	for {
		spent += d / 2
		if spent > window {
			return n
		}
		n++
		d = min(d*2, maxB)
	}
}

// waitFor polls cond until it holds or limit passes.
func waitFor(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}
