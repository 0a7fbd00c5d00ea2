package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/grpcauth"
	"github.com/iamtoken/iamtoken-go/iamtest"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
)

// recordingProxy forwards loopback TCP connections to a backend and keeps
// every byte the client sent, as an eavesdropper on the path would see it.
type recordingProxy struct {
	lis     net.Listener
	backend string
	wg      sync.WaitGroup // the accept loop and the copying goroutines

	mu    sync.Mutex // guards sent and conns
	sent  bytes.Buffer
	conns []net.Conn
}

func newRecordingProxy(t *testing.T, backend string) *recordingProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &recordingProxy{lis: lis, backend: backend}
	p.wg.Add(1)
	go p.accept()
	return p
}

func (p *recordingProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", p.backend)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, b)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(b, io.TeeReader(c, (*recorder)(p)))
			b.Close()
		}()
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(c, b)
			c.Close()
		}()
	}
}

type recorder recordingProxy

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent.Write(b)
}

func (p *recordingProxy) Addr() string { return p.lis.Addr().String() }

// Close stops the proxy and returns every byte clients sent through it.
func (p *recordingProxy) Close() []byte {
	p.lis.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return bytes.Clone(p.sent.Bytes())
}

// headerFields decodes the HTTP/2 HEADERS that a client sent: the literal
// bytes are not enough, since HPACK may Huffman-code a header value or send
// it as an index into a table built earlier, and a token so sent never
// appears verbatim on the wire.
func headerFields(t *testing.T, sent []byte) []hpack.HeaderField {
	t.Helper()
	if len(sent) == 0 {
		return nil
	}
	if !bytes.HasPrefix(sent, []byte(http2.ClientPreface)) {
		t.Fatalf("the client did not speak HTTP/2: %q", sent[:min(len(sent), 24)])
	}
	fr := http2.NewFramer(io.Discard, bytes.NewReader(sent[len(http2.ClientPreface):]))
	fr.SetMaxReadFrameSize(1 << 24)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var fields []hpack.HeaderField
	for {
		f, err := fr.ReadFrame()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fields // the proxy may have cut the last frame short
		}
		if err != nil {
			t.Fatalf("decoding what the client sent: %v", err)
		}
		if h, ok := f.(*http2.MetaHeadersFrame); ok {
			fields = append(fields, h.Fields...)
		}
	}
}

// mdRecorder keeps the metadata keys of every call the server received.
type mdRecorder struct {
	mu    sync.Mutex // guards calls
	calls []receivedCall
}

type receivedCall struct {
	method string
	md     metadata.MD
}

func (r *mdRecorder) record(ctx context.Context, method string) {
	md, _ := metadata.FromIncomingContext(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, receivedCall{method, md.Copy()})
}

func (r *mdRecorder) take() []receivedCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

type computeStub struct {
	demov1.UnimplementedComputeServiceServer
}
type storageStub struct {
	demov1.UnimplementedStorageServiceServer
}

// insecureOK is credentials that claim to need no transport security while
// wrapping ones that do: it stands for a bug in gRPC's own check, or a
// wrapper that loses the flag. The library's credentials must still refuse,
// since they check the connection themselves.
type insecureOK struct{ credentials.PerRPCCredentials }

func (insecureOK) RequireTransportSecurity() bool { return false }

// authHeaders are the metadata keys a credential travels in.
var authHeaders = []string{"authorization", "x-amz-date", "x-amz-content-sha256", grpcauth.AccessKeyNonceKey}

// TestNoCredentialOnPlaintext points the library's credentials, with a real
// token and a real access key, at a plaintext gRPC server behind a proxy that
// records every byte the client sends, and checks that no credential reaches
// the wire or the server, however the credentials are attached.
func TestNoCredentialOnPlaintext(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	// A real token, from a service account key exchanged with the issuer.
	issuer := iamtest.NewIssuer(t, nil)
	sa := issuer.CreateServiceAccount("", "plaintext")
	keySrc, err := grpcauth.ServiceAccountKeySourceFromBytes(sa.AuthorizedKeyJSON, &grpcauth.ExchangeOptions{
		Endpoint: issuer.GRPCAddr(), GRPCMethod: grpcauth.CreateMethod, Insecure: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer keySrc.Close()
	cache := grpcauth.NewCachedSource(keySrc)
	defer cache.Close()
	// The cache now holds the token the credentials would send.
	tok, err := cache.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keyID, secret := issuer.CreateAccessKey(sa.ServiceAccountID)
	iamCreds := grpcauth.NewPerRPCCredentials(cache)
	akCreds, err := grpcauth.NewAccessKeyCredentials(keyID, secret)
	if err != nil {
		t.Fatal(err)
	}
	// The same, opted into plaintext: the control case, which shows that
	// the recording and the decoding would have caught a credential.
	iamCredsLoopback := grpcauth.NewPerRPCCredentials(cache, grpcauth.WithInsecureTransportForLocalTesting())
	akCredsLoopback, err := grpcauth.NewAccessKeyCredentials(keyID, secret, grpcauth.WithAccessKeyInsecureTransportForLocalTesting())
	if err != nil {
		t.Fatal(err)
	}

	// A plaintext gRPC server with no auth of its own: it would accept
	// anything, and records what arrives.
	var received mdRecorder
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			received.record(ctx, info.FullMethod)
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(s any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			received.record(ss.Context(), info.FullMethod)
			return h(s, ss)
		}),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	demov1.RegisterComputeServiceServer(srv, computeStub{})
	demov1.RegisterStorageServiceServer(srv, storageStub{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	defer func() { srv.Stop(); <-served }()

	compute := func(ctx context.Context, conn *grpc.ClientConn, opts ...grpc.CallOption) error {
		_, err := demov1.NewComputeServiceClient(conn).ListInstances(ctx, &demov1.ListInstancesRequest{}, opts...)
		return err
	}
	storage := func(ctx context.Context, conn *grpc.ClientConn, opts ...grpc.CallOption) error {
		_, err := demov1.NewStorageServiceClient(conn).ListObjects(ctx, &demov1.ListObjectsRequest{Bucket: "b"}, opts...)
		return err
	}
	tests := []struct {
		name     string
		dialOpts []grpc.DialOption
		callOpts []grpc.CallOption
		call     func(context.Context, *grpc.ClientConn, ...grpc.CallOption) error
		method   string
		// wantDialErr: gRPC refuses the connection outright.
		wantDialErr bool
		wantCode    codes.Code
		// wantMsg starts the error's message when the library, not gRPC,
		// must be the one refusing.
		wantMsg string
		// wantAuth, in the control cases, starts the authorization header
		// the call must carry.
		wantAuth string
	}{
		{name: "IAM token, dial option", dialOpts: []grpc.DialOption{grpc.WithPerRPCCredentials(iamCreds)},
			call: compute, wantDialErr: true},
		{name: "access key, dial option", dialOpts: []grpc.DialOption{grpcauth.WithAccessKey(akCreds)},
			call: storage, wantDialErr: true},
		{name: "IAM token, call option", callOpts: []grpc.CallOption{grpc.PerRPCCredentials(iamCreds)},
			call: compute, method: demov1.ComputeService_ListInstances_FullMethodName, wantCode: codes.Unauthenticated},
		{name: "access key, call option", callOpts: []grpc.CallOption{grpc.PerRPCCredentials(akCreds)},
			call: storage, method: demov1.StorageService_ListObjects_FullMethodName, wantCode: codes.Unauthenticated},
		{name: "IAM token, gRPC's check bypassed", dialOpts: []grpc.DialOption{grpc.WithPerRPCCredentials(insecureOK{iamCreds})},
			call: compute, method: demov1.ComputeService_ListInstances_FullMethodName, wantCode: codes.Unauthenticated, wantMsg: "grpcauth:"},
		{name: "access key, gRPC's check bypassed", dialOpts: []grpc.DialOption{grpc.WithPerRPCCredentials(insecureOK{akCreds})},
			call: storage, method: demov1.StorageService_ListObjects_FullMethodName, wantCode: codes.Unauthenticated, wantMsg: "grpcauth:"},
		{name: "control: IAM token opted into plaintext", dialOpts: []grpc.DialOption{grpc.WithPerRPCCredentials(iamCredsLoopback)},
			call: compute, method: demov1.ComputeService_ListInstances_FullMethodName, wantCode: codes.Unimplemented, wantAuth: "Bearer " + tok.Value},
		{name: "control: access key opted into plaintext", dialOpts: []grpc.DialOption{grpcauth.WithAccessKey(akCredsLoopback)},
			call: storage, method: demov1.StorageService_ListObjects_FullMethodName, wantCode: codes.Unimplemented, wantAuth: "AWS4-HMAC-SHA256 Credential=" + keyID + "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy := newRecordingProxy(t, lis.Addr().String())
			received.take()
			opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, tt.dialOpts...)
			conn, err := grpc.NewClient(proxy.Addr(), opts...)
			if tt.wantDialErr {
				if err == nil {
					conn.Close()
					t.Fatal("grpc.NewClient accepted credentials that need transport security on a plaintext connection")
				}
				if sent := proxy.Close(); len(sent) != 0 {
					t.Errorf("%d bytes were sent", len(sent))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// A call that needs no credential goes through, so the path
			// is open and recorded.
			if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatalf("health check through the proxy: %v", err)
			}
			err = tt.call(ctx, conn, tt.callOpts...)
			if got := status.Code(err); got != tt.wantCode {
				t.Errorf("call: code %v, want %v (%v)", got, tt.wantCode, err)
			}
			if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, tt.wantMsg) {
				t.Errorf("call: message %q, want it to start with %q", msg, tt.wantMsg)
			}
			for _, s := range []string{tok.Value, secret} {
				if strings.Contains(status.Convert(err).Message(), s) {
					t.Error("the error holds a credential")
				}
			}
			conn.Close()
			sent := proxy.Close()
			fields := headerFields(t, sent)

			var paths []string
			var credHeaders []string
			for _, f := range fields {
				if f.Name == ":path" {
					paths = append(paths, f.Value)
				}
				if slices.Contains(authHeaders, f.Name) {
					credHeaders = append(credHeaders, f.Name)
				}
				if strings.Contains(f.Value, secret) {
					t.Errorf("header %s carries the access key secret", f.Name)
				}
			}
			if !slices.Contains(paths, "/grpc.health.v1.Health/Check") {
				t.Fatalf("the decoded headers lack the health check (paths %v): the decoding is broken", paths)
			}
			calls := received.take()
			var serverCreds []string
			for _, c := range calls {
				for _, k := range authHeaders {
					if len(c.md.Get(k)) > 0 {
						serverCreds = append(serverCreds, c.method+" "+k)
					}
				}
			}
			// The literal bytes, too: none of these is ever on the wire
			// verbatim (though, HPACK being what it is, absence here alone
			// would prove nothing; the decoded headers above are the proof).
			literal := map[string]string{"the IAM token": tok.Value, "the access key secret": secret, "a SigV4 scheme": "AWS4-HMAC-SHA256", "a bearer scheme": "Bearer "}

			if tt.wantAuth != "" {
				if !slices.Contains(paths, tt.method) {
					t.Errorf("the call was not sent (paths %v)", paths)
				}
				if len(serverCreds) == 0 {
					t.Error("the control call's credential did not reach the server")
				}
				i := slices.IndexFunc(fields, func(f hpack.HeaderField) bool {
					return f.Name == "authorization" && strings.HasPrefix(f.Value, tt.wantAuth)
				})
				if i < 0 {
					t.Fatalf("the control call carried no authorization header of the expected form (headers %v)", credHeaders)
				}
				// Why the decoding matters: what was sent need not be
				// on the wire verbatim.
				verbatim := bytes.Contains(sent, []byte(fields[i].Value))
				t.Logf("the authorization header was sent; verbatim in the bytes: %v", verbatim)
				return
			}
			if slices.Contains(paths, tt.method) {
				t.Errorf("the call was sent: its headers are on the wire")
			}
			if len(credHeaders) > 0 {
				t.Errorf("credential headers on the wire: %v", credHeaders)
			}
			if len(serverCreds) > 0 {
				t.Errorf("credential metadata at the server: %v", serverCreds)
			}
			for name, v := range literal {
				if at := bytes.Index(sent, []byte(v)); at >= 0 {
					t.Errorf("%s is on the wire at byte %d", name, at)
				}
			}
		})
	}
}
