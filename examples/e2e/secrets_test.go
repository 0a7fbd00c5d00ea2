package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/authmode"
	"github.com/iamtoken/iamtoken-go/examples/demo"
	"github.com/iamtoken/iamtoken-go/grpcauth"
	"github.com/iamtoken/iamtoken-go/iamserver"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

// debugEnv turns on gRPC's own logging as far as it goes, in the server and
// the client binaries, on top of the server's -debug: the test searches the
// most a user could be told to turn on when debugging.
//
// GODEBUG=http2debug=2 is deliberately not among them: it makes the HTTP/2
// framer print every decoded header field, authorization included. That is
// a wire dump the Go runtime offers, outside any library's control, and the
// README says so.
var debugEnv = []string{"GRPC_GO_LOG_SEVERITY_LEVEL=info", "GRPC_GO_LOG_VERBOSITY_LEVEL=99"}

// secretSet is what must never be printed: each value under a name that
// says what it is. Reports name the secret and where it was found, never
// the value.
type secretSet struct {
	names  []string
	values []string
}

// add records a secret. Short values would match by chance, so anything
// under 16 bytes is a mistake in the test.
func (s *secretSet) add(t *testing.T, name, value string) {
	t.Helper()
	if len(value) < 16 {
		t.Fatalf("secret %q is %d bytes: too short to search for", name, len(value))
	}
	s.names = append(s.names, name)
	s.values = append(s.values, value)
}

// addToken records a token and, for a JWT, its payload and signature on
// their own, so that a token cut at a dot is caught too.
func (s *secretSet) addToken(t *testing.T, name, value string) {
	t.Helper()
	s.add(t, name, value)
	if parts := strings.Split(value, "."); len(parts) == 3 {
		s.add(t, name+" (payload)", parts[1])
		s.add(t, name+" (signature)", parts[2])
	}
}

// addPrivateKey records a PEM private key whole, each half line of its
// base64 body, and the RSA private numbers in decimal and hex (what %v of an
// *rsa.PrivateKey prints).
func (s *secretSet) addPrivateKey(t *testing.T, name, pemText string) {
	t.Helper()
	s.add(t, name+" (PEM)", strings.TrimSpace(pemText))
	// pem.Decode skips anything before the block, such as the reference
	// deployment's "PLEASE DO NOT REMOVE THIS LINE!" line.
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		t.Fatalf("%s: no PEM block", name)
	}
	body := strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: block.Bytes})))
	lines := strings.Split(body, "\n")
	// Each half of each 64-character line: a fragment of the key printed
	// anywhere is caught once it spans 63 characters of one line.
	for i, line := range lines[1 : len(lines)-1] {
		for half := 0; half*32 < len(line); half++ {
			if part := line[half*32 : min(len(line), half*32+32)]; len(part) >= 16 {
				s.add(t, name+" (PEM line "+strconv.Itoa(i+1)+"."+strconv.Itoa(half+1)+")", part)
			}
		}
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		t.Fatalf("%s: not an RSA key", name)
	}
	s.add(t, name+" (D, decimal)", rk.D.String())
	s.add(t, name+" (D, hex)", rk.D.Text(16))
	for i, p := range rk.Primes {
		s.add(t, name+" (prime "+strconv.Itoa(i+1)+", decimal)", p.String())
	}
}

// check reports every secret found in text, by name and byte offset.
func (s *secretSet) check(t *testing.T, where, text string) {
	t.Helper()
	for i, v := range s.values {
		if at := strings.Index(text, v); at >= 0 {
			t.Errorf("%s: %s appears at byte %d", where, s.names[i], at)
		}
	}
}

// credentialShapes catch credentials the test never saw (the client
// binary's own token, the JWTs its source signed, its signatures): anything
// shaped like a JWT, a bearer header with a value, a SigV4 signature or a
// PEM private key.
var credentialShapes = []struct {
	name string
	re   *regexp.Regexp
}{
	{"a JWT", regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.`)},
	{"a bearer header value", regexp.MustCompile(`Bearer\s+[A-Za-z0-9._~+/-]{16,}`)},
	{"a SigV4 signature", regexp.MustCompile(`Signature=[0-9a-fA-F]{16,}`)},
	{"a PEM private key", regexp.MustCompile(`PRIVATE KEY`)},
}

func checkShapes(t *testing.T, where, text string) {
	t.Helper()
	for _, c := range credentialShapes {
		if loc := c.re.FindStringIndex(text); loc != nil {
			t.Errorf("%s: %s appears at byte %d", where, c.name, loc[0])
		}
	}
}

// runClient runs the client binary and returns everything it printed.
func runClient(ctx context.Context, t *testing.T, bin string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), debugEnv...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		// The output may hold a secret if the test is about to fail for
		// that; it is the test's own throwaway data directory.
		t.Fatalf("client %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, stdout.Bytes(), stderr.Bytes())
	}
	if !strings.Contains(stdout.String(), "All steps behaved as expected.") {
		t.Fatalf("client %v did not finish its walk-through:\n%s", args, stdout.Bytes())
	}
	return stdout.String() + stderr.String()
}

type closingSource interface {
	grpcauth.TokenSource
	Close() error
}

// fetch obtains one token from src and closes it.
func fetch(ctx context.Context, t *testing.T, what string, src closingSource, err error) *grpcauth.Token {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	defer src.Close()
	tok, err := src.Token(ctx)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return tok
}

// TestSecretsNeverPrinted runs the whole demo flow with debug logging on
// and searches everything the server and client binaries printed, and every
// error the failing calls returned, for each credential the flow used.
func TestSecretsNeverPrinted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the demo binaries")
	}
	serverBin, clientBin := build(t)
	dataDir := t.TempDir()
	srv := startServerWith(t, serverBin, dataDir, []string{"-debug"}, debugEnv)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	var secrets secretSet
	outputs := map[string]string{}

	// The client binary's walk-through, against the server and with its own
	// in-process server and that server's logs.
	outputs["client binary (-addr)"] = runClient(ctx, t, clientBin, "-addr", srv.grpcAddr, "-data-dir", dataDir, "-v")
	outputs["client binary (in-process server, -v)"] = runClient(ctx, t, clientBin, "-v")

	// The same flow in-process, where the test sees the values.
	tlsConfig := serverTLS(t, dataDir)
	viaGRPC := &grpcauth.ExchangeOptions{Endpoint: srv.grpcAddr, TLSConfig: tlsConfig}
	viaREST := &grpcauth.ExchangeOptions{Endpoint: "https://" + srv.httpsAddr, TLSConfig: tlsConfig}
	keyJSON, err := os.ReadFile(filepath.Join(dataDir, demo.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	var keyFile struct {
		PrivateKey string `json:"private_key"`
	}
	if err := json.Unmarshal(keyJSON, &keyFile); err != nil {
		t.Fatal(err)
	}
	secrets.addPrivateKey(t, "the demo key file's private key", keyFile.PrivateKey)
	oauth := readOAuthToken(t, dataDir)
	secrets.add(t, "the demo user's OAuth token", oauth)

	src, err := grpcauth.ServiceAccountKeySourceFromBytes(keyJSON, viaGRPC)
	saTok := fetch(ctx, t, "key file exchange over gRPC", src, err)
	secrets.addToken(t, "service account IAM token (gRPC exchange)", saTok.Value)
	src, err = grpcauth.ServiceAccountKeySourceFromBytes(keyJSON, viaREST)
	secrets.addToken(t, "service account IAM token (REST exchange)", fetch(ctx, t, "key file exchange over REST", src, err).Value)
	oauthSrc, err := grpcauth.NewOAuthSource(oauth, viaGRPC)
	userTok := fetch(ctx, t, "OAuth exchange over gRPC", oauthSrc, err)
	secrets.addToken(t, "user IAM token (gRPC exchange)", userTok.Value)
	oauthSrc, err = grpcauth.NewOAuthSource(oauth, viaREST)
	secrets.addToken(t, "user IAM token (REST exchange)", fetch(ctx, t, "OAuth exchange over REST", oauthSrc, err).Value)

	// A JWT signed by hand and exchanged with the raw API, so the test
	// knows the JWT that crossed the wire.
	key, err := grpcauth.ServiceAccountKeyFromBytes(keyJSON)
	if err != nil {
		t.Fatal(err)
	}
	jwt, err := key.SignJWT(time.Now(), grpcauth.DefaultExchangeURL, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	secrets.addToken(t, "the service account's signed JWT", jwt)
	plain := dial(t, srv.grpcAddr, dataDir, nil)
	exchanged, err := iamv1.NewIamTokenServiceClient(plain).Create(ctx, &iamv1.IamTokenServiceCreateRequest{
		Identity: &iamv1.IamTokenServiceCreateRequest_Jwt{Jwt: jwt},
	})
	if err != nil {
		t.Fatalf("raw exchange: %v", err)
	}
	secrets.addToken(t, "service account IAM token (raw exchange)", exchanged.GetIamToken())

	// Management and compute calls with the tokens.
	saConn := dial(t, srv.grpcAddr, dataDir, staticCache(t, saTok))
	userConn := dial(t, srv.grpcAddr, dataDir, staticCache(t, userTok))
	compute := demov1.NewComputeServiceClient(saConn)
	if _, err := compute.CreateInstance(ctx, &demov1.CreateInstanceRequest{Name: "secrets-vm", ZoneId: "ru-central1-a"}); err != nil {
		t.Fatalf("CreateInstance: %v", err)
	}
	if _, err := demov1.NewComputeServiceClient(userConn).ListInstances(ctx, &demov1.ListInstancesRequest{}); err != nil {
		t.Fatalf("ListInstances as the user: %v", err)
	}
	if _, err := iamv1.NewServiceAccountServiceClient(userConn).List(ctx, &iamv1.ServiceAccountServiceListRequest{}); err != nil {
		t.Fatalf("ServiceAccountService.List as the user: %v", err)
	}
	ak, err := iamv1.NewAccessKeyServiceClient(saConn).Create(ctx, &iamv1.AccessKeyServiceCreateRequest{
		ServiceAccountId: key.ServiceAccountID, Description: "secrets test",
	})
	if err != nil {
		t.Fatalf("AccessKeyService.Create: %v", err)
	}
	keyID := ak.GetAccessKey().GetKeyId()
	secrets.add(t, "the access key secret made by the test", ak.GetSecret())
	newKey, err := iamv1.NewKeyServiceClient(saConn).Create(ctx, &iamv1.KeyServiceCreateRequest{
		ServiceAccountId: key.ServiceAccountID, Description: "secrets test",
	})
	if err != nil {
		t.Fatalf("KeyService.Create: %v", err)
	}
	secrets.addPrivateKey(t, "the private key made by KeyService.Create", newKey.GetPrivateKey())
	src, err = grpcauth.ServiceAccountKeySourceFromBytes([]byte(newKey.GetAuthorizedKeyJson()), viaGRPC)
	secrets.addToken(t, "service account IAM token (new key)", fetch(ctx, t, "new key exchange", src, err).Value)
	if _, err := iamv1.NewKeyServiceClient(saConn).Delete(ctx, &iamv1.KeyServiceDeleteRequest{KeyId: newKey.GetKey().GetId()}); err != nil {
		t.Fatalf("KeyService.Delete: %v", err)
	}

	// Storage calls with the access key.
	akCreds, err := grpcauth.NewAccessKeyCredentials(keyID, ak.GetSecret())
	if err != nil {
		t.Fatal(err)
	}
	storage := demov1.NewStorageServiceClient(dial(t, srv.grpcAddr, dataDir, nil, grpcauth.WithAccessKey(akCreds)))
	if _, err := storage.PutObject(ctx, &demov1.PutObjectRequest{Bucket: "secrets", Key: "a.txt", Data: []byte("a")}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	if _, err := storage.GetObject(ctx, &demov1.GetObjectRequest{Bucket: "secrets", Key: "a.txt"}); err != nil {
		t.Fatalf("GetObject: %v", err)
	}

	// Calls that must fail, each carrying a credential; bad ones are
	// credentials too, and must not be echoed either.
	tampered := tamper(saTok.Value)
	secrets.addToken(t, "a tampered IAM token", tampered)
	garbage := "garbage-" + rand.Text()
	secrets.add(t, "a garbage token", garbage)
	wrongSecret := rand.Text() + rand.Text()
	secrets.add(t, "a wrong access key secret", wrongSecret)
	wrongOAuth := "demo-oauth-" + rand.Text()
	secrets.add(t, "a wrong OAuth token", wrongOAuth)
	tamperedJWT := tamper(jwt)
	secrets.addToken(t, "a tampered service account JWT", tamperedJWT)

	iamOnStorage := mustResolver(t, authmode.WithOverride("iamtoken.demo.v1.StorageService", authmode.IAMToken))
	akOnCompute := mustResolver(t, authmode.WithOverride("iamtoken.demo.v1.ComputeService", authmode.AccessKey))
	tests := []struct {
		name string
		call func(ctx context.Context) error
		// wantCode is the status code of a call; for an exchange, which
		// fails with a *grpcauth.FetchError, wantRefused says it was a
		// refusal rather than an outage.
		wantCode    codes.Code
		wantRefused bool
	}{
		{name: "tampered IAM token to ComputeService", wantCode: codes.Unauthenticated, call: func(ctx context.Context) error {
			_, err := demov1.NewComputeServiceClient(dialToken(t, srv, dataDir, tampered)).ListInstances(ctx, &demov1.ListInstancesRequest{})
			return err
		}},
		{name: "garbage token to ComputeService", wantCode: codes.Unauthenticated, call: func(ctx context.Context) error {
			_, err := demov1.NewComputeServiceClient(dialToken(t, srv, dataDir, garbage)).ListInstances(ctx, &demov1.ListInstancesRequest{})
			return err
		}},
		{name: "IAM token to StorageService", wantCode: codes.Unauthenticated, call: func(ctx context.Context) error {
			conn := dial(t, srv.grpcAddr, dataDir, nil, grpcauth.WithTokenSource(staticCache(t, saTok), grpcauth.WithAuthModeResolver(iamOnStorage)))
			_, err := demov1.NewStorageServiceClient(conn).ListObjects(ctx, &demov1.ListObjectsRequest{Bucket: "secrets"})
			return err
		}},
		{name: "access key to ComputeService", wantCode: codes.Unauthenticated, call: func(ctx context.Context) error {
			creds, err := grpcauth.NewAccessKeyCredentials(keyID, ak.GetSecret(), grpcauth.WithAccessKeyResolver(akOnCompute))
			if err != nil {
				return err
			}
			conn := dial(t, srv.grpcAddr, dataDir, nil, grpcauth.WithAccessKey(creds))
			_, err = demov1.NewComputeServiceClient(conn).ListInstances(ctx, &demov1.ListInstancesRequest{})
			return err
		}},
		{name: "wrong access key secret to StorageService", wantCode: codes.Unauthenticated, call: func(ctx context.Context) error {
			creds, err := grpcauth.NewAccessKeyCredentials(keyID, wrongSecret)
			if err != nil {
				return err
			}
			conn := dial(t, srv.grpcAddr, dataDir, nil, grpcauth.WithAccessKey(creds))
			_, err = demov1.NewStorageServiceClient(conn).ListObjects(ctx, &demov1.ListObjectsRequest{Bucket: "secrets"})
			return err
		}},
		{name: "service account deleting itself", wantCode: codes.PermissionDenied, call: func(ctx context.Context) error {
			_, err := iamv1.NewServiceAccountServiceClient(saConn).Delete(ctx, &iamv1.ServiceAccountServiceDeleteRequest{ServiceAccountId: key.ServiceAccountID})
			return err
		}},
		{name: "tampered JWT to the raw exchange", wantCode: codes.Unauthenticated, call: func(ctx context.Context) error {
			_, err := iamv1.NewIamTokenServiceClient(plain).Create(ctx, &iamv1.IamTokenServiceCreateRequest{
				Identity: &iamv1.IamTokenServiceCreateRequest_Jwt{Jwt: tamperedJWT},
			})
			return err
		}},
		{name: "wrong OAuth token exchanged", wantRefused: true, call: func(ctx context.Context) error {
			src, err := grpcauth.NewOAuthSource(wrongOAuth, viaGRPC)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = src.Token(ctx)
			return err
		}},
		{name: "wrong OAuth token exchanged over REST", wantRefused: true, call: func(ctx context.Context) error {
			src, err := grpcauth.NewOAuthSource(wrongOAuth, viaREST)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = src.Token(ctx)
			return err
		}},
		{name: "deleted key exchanged", wantRefused: true, call: func(ctx context.Context) error {
			src, err := grpcauth.ServiceAccountKeySourceFromBytes([]byte(newKey.GetAuthorizedKeyJson()), viaREST)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = src.Token(ctx)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(ctx)
			if err == nil {
				t.Fatal("the call succeeded")
			}
			if tt.wantRefused {
				var fe *grpcauth.FetchError
				if !errors.As(err, &fe) || fe.Temporary {
					t.Errorf("error %v, want a *grpcauth.FetchError that is not temporary", err)
				}
			} else if got := status.Code(err); got != tt.wantCode {
				t.Errorf("code = %v, want %v (%v)", got, tt.wantCode, err)
			}
			outputs["the error of "+tt.name] = err.Error() + "\n" + status.Convert(err).Message()
		})
	}

	// Stopping the server flushes its logs; then the store gives up every
	// access key secret, including the one the client binary made, which
	// the test never saw on the wire.
	srv.stop(t)
	outputs["server (-debug)"] = srv.Logs()
	for _, ks := range storedSecrets(ctx, t, dataDir, key.ServiceAccountID) {
		secrets.add(t, "the access key secret of "+ks[0]+" (from the store)", ks[1])
	}

	for _, where := range slices.Sorted(maps.Keys(outputs)) {
		secrets.check(t, where, outputs[where])
		checkShapes(t, where, outputs[where])
	}
	t.Logf("searched %d bytes of output and %d error messages for %d secrets and %d credential shapes",
		totalLen(outputs), len(tests), len(secrets.values), len(credentialShapes))

	// The search saw what it had to: the auth decisions, the refusals and
	// gRPC's own verbose logs.
	logs := outputs["server (-debug)"]
	for _, want := range []string{"msg=auth", "code=Unauthenticated", "[core]"} {
		if !strings.Contains(logs, want) {
			t.Errorf("server logs lack %q: the flow or the debug logging did not run", want)
		}
	}
}

// dialToken dials with a fixed token, however bad.
func dialToken(t *testing.T, srv *serverProc, dataDir, token string) *grpc.ClientConn {
	t.Helper()
	return dial(t, srv.grpcAddr, dataDir, staticCache(t, &grpcauth.Token{Value: token, Expiry: time.Now().Add(time.Hour)}))
}

// tamper changes one character in the middle of a JWT's signature, so the
// token keeps its shape and fails its check.
func tamper(jwt string) string {
	i := strings.LastIndexByte(jwt, '.') + 10
	c := byte('A')
	if jwt[i] == 'A' {
		c = 'B'
	}
	return jwt[:i] + string(c) + jwt[i+1:]
}

func mustResolver(t *testing.T, opts ...authmode.Option) *authmode.Resolver {
	t.Helper()
	r, err := authmode.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// storedSecrets opens the stopped server's database and returns the key ID
// and secret of every access key of the service account. The file names
// are the demo server's (unexported there).
func storedSecrets(ctx context.Context, t *testing.T, dataDir, serviceAccountID string) [][2]string {
	t.Helper()
	dataKey, err := iamserver.LoadDataKeyFile(filepath.Join(dataDir, "data.key"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := iamserver.OpenSQLite(ctx, filepath.Join(dataDir, "iam.db"), dataKey)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	keys, err := store.ListAccessKeys(ctx, serviceAccountID, iamserver.Page{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	// The client binary's key and the test's.
	if len(keys) < 2 {
		t.Fatalf("the store holds %d access keys, want at least 2", len(keys))
	}
	var out [][2]string
	for _, k := range keys {
		// Listings leave secrets out; the verifier's lookup has them.
		full, err := store.LookupAccessKey(ctx, k.KeyID)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, [2]string{k.KeyID, string(full.Secret)})
	}
	return out
}

func totalLen(m map[string]string) int {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	return n
}
