package iamtest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

// The exchange method's full names: the reference deployment's and this
// module's. The TokenEndpoint serves both.
const (
	ReferenceCreateMethod = "/yandex.cloud.iam.v1.IamTokenService/Create"
	CreateMethod          = iamv1.IamTokenService_Create_FullMethodName
)

// RESTPath is the REST exchange's path.
const RESTPath = "/iam/v1/tokens"

// maxJWTLifetime is the longest exp - iat the endpoint accepts.
const maxJWTLifetime = time.Hour

// EndpointCalls counts a TokenEndpoint's exchanges by how they arrived.
type EndpointCalls struct {
	// ReferenceGRPC counts gRPC calls of ReferenceCreateMethod.
	ReferenceGRPC int
	// GRPC counts gRPC calls of CreateMethod.
	GRPC int
	// REST counts POSTs to RESTPath (and requests to anything else).
	REST int
	// Refused counts the calls of all kinds that got no token.
	Refused int
	// RESTConnections counts the TCP connections the REST server accepted:
	// a client that reuses its connection makes one for many calls.
	RESTConnections int
}

// TokenEndpoint is a fake token exchange. It issues opaque tokens
// ("iamtest-<hex>") that live Lifetime (12 h by default) to service
// accounts that sign a valid JWT with a key it was given (AddKey,
// AddKeyFile) and to holders of OAuth tokens it was told about
// (AddOAuthToken).
type TokenEndpoint struct {
	grpcSrv  *grpc.Server
	grpcLis  net.Listener
	served   chan struct{} // closed when the gRPC Serve goroutine returns
	rest     *httptest.Server
	closing  chan struct{}
	closeOne sync.Once

	// mu guards everything below.
	mu         sync.Mutex
	audience   string
	lifetime   time.Duration
	keys       map[string]endpointKey // by key ID
	oauth      map[string]string      // OAuth token → account ID
	issued     map[string]string      // IAM token → account ID
	failNext   int
	failCode   codes.Code
	delay      time.Duration
	calls      EndpointCalls
	lastRefuse string
}

type endpointKey struct {
	accountID string
	pub       *rsa.PublicKey
}

// NewTokenEndpoint starts a fake token exchange: gRPC on a loopback port,
// REST on an httptest server.
func NewTokenEndpoint() *TokenEndpoint {
	e := &TokenEndpoint{
		served:   make(chan struct{}),
		closing:  make(chan struct{}),
		audience: iamjwt.ReferenceTokenURL,
		lifetime: iamjwt.MaxLifetime,
		keys:     map[string]endpointKey{},
		oauth:    map[string]string{},
		issued:   map[string]string{},
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("iamtest: listen: %v", err))
	}
	e.grpcLis = lis
	e.grpcSrv = grpc.NewServer()
	impl := &grpcEndpoint{e: e}
	iamv1.RegisterIamTokenServiceServer(e.grpcSrv, impl)
	// The reference deployment's name for the same method: the messages are
	// field-number compatible.
	ref := iamv1.IamTokenService_ServiceDesc
	ref.ServiceName = "yandex.cloud.iam.v1.IamTokenService"
	ref.Methods = nil
	for _, m := range iamv1.IamTokenService_ServiceDesc.Methods {
		if m.MethodName == "Create" {
			ref.Methods = append(ref.Methods, m)
		}
	}
	e.grpcSrv.RegisterService(&ref, impl)
	go func() {
		defer close(e.served)
		_ = e.grpcSrv.Serve(lis)
	}()
	e.rest = httptest.NewUnstartedServer(http.HandlerFunc(e.serveREST))
	e.rest.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			e.mu.Lock()
			e.calls.RESTConnections++
			e.mu.Unlock()
		}
	}
	e.rest.Start()
	return e
}

// GRPCAddr is the gRPC listener's host:port (plaintext, loopback).
func (e *TokenEndpoint) GRPCAddr() string { return e.grpcLis.Addr().String() }

// RESTURL is the REST token URL (http, loopback).
func (e *TokenEndpoint) RESTURL() string { return e.rest.URL + RESTPath }

// SetAudience sets the aud a JWT must carry. Default: the reference
// deployment's token URL.
func (e *TokenEndpoint) SetAudience(aud string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.audience = aud
}

// SetLifetime sets the lifetime of the tokens issued from now on.
func (e *TokenEndpoint) SetLifetime(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lifetime = d
}

// AddKey accepts JWTs signed by the private half of pub, with header kid =
// keyID and claim iss = accountID.
func (e *TokenEndpoint) AddKey(keyID, accountID string, pub *rsa.PublicKey) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.keys[keyID] = endpointKey{accountID: accountID, pub: pub}
}

// AddKeyFile is AddKey for a generated key file.
func (e *TokenEndpoint) AddKeyFile(k *KeyFile) {
	e.AddKey(k.ID, k.ServiceAccountID, &k.PrivateKey.PublicKey)
}

// AddOAuthToken accepts oauthToken as the proof of identity of accountID.
func (e *TokenEndpoint) AddOAuthToken(oauthToken, accountID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.oauth[oauthToken] = accountID
}

// FailNext makes the next n exchanges fail with code (REST: the matching
// HTTP status), before any verification.
func (e *TokenEndpoint) FailNext(n int, code codes.Code) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failNext, e.failCode = n, code
}

// SetDelay makes every exchange wait d first, or until the client gives up
// or Close is called.
func (e *TokenEndpoint) SetDelay(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.delay = d
}

// Calls counts the exchanges so far.
func (e *TokenEndpoint) Calls() EndpointCalls {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls
}

// LastRefusal says why the latest refused exchange got no token, or "".
func (e *TokenEndpoint) LastRefusal() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastRefuse
}

// Subject returns the account an issued token belongs to.
func (e *TokenEndpoint) Subject(iamToken string) (accountID string, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	accountID, ok = e.issued[iamToken]
	return accountID, ok
}

// Close stops both servers, ending delayed exchanges first.
func (e *TokenEndpoint) Close() {
	e.closeOne.Do(func() { close(e.closing) })
	e.grpcSrv.Stop()
	<-e.served
	e.rest.Close()
}

// exchangeRequest is one exchange, whichever way it arrived.
type exchangeRequest struct {
	jwt, oauth string
	hasJWT     bool
	hasOAuth   bool
	credential string // non-empty when the request carried an authorization
}

// refusal is a refused exchange: a gRPC code and a message.
type refusal struct {
	code codes.Code
	msg  string
}

func (r *refusal) Error() string { return r.msg }

// create runs one exchange: counts it, applies failures and delay,
// verifies the proof and issues a token.
func (e *TokenEndpoint) create(ctx context.Context, kind *int, req exchangeRequest) (string, time.Time, *refusal) {
	e.mu.Lock()
	*kind++
	delay := e.delay
	var fail *refusal
	if e.failNext > 0 {
		e.failNext--
		fail = &refusal{code: e.failCode, msg: "iamtest: injected failure"}
	}
	e.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			// The deadline the client sent can pass here a moment before the
			// client's own timer fires, and then this answer is what it sees.
			code := codes.Canceled
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				code = codes.DeadlineExceeded
			}
			return "", time.Time{}, e.refuse(&refusal{code, "iamtest: client gave up"})
		case <-e.closing:
			return "", time.Time{}, e.refuse(&refusal{codes.Unavailable, "iamtest: endpoint closing"})
		}
	}
	if fail != nil {
		return "", time.Time{}, e.refuse(fail)
	}
	if req.credential != "" {
		return "", time.Time{}, e.refuse(&refusal{codes.InvalidArgument, "iamtest: the exchange must carry no authorization"})
	}
	var account string
	var err *refusal
	switch {
	case req.hasJWT == req.hasOAuth:
		err = &refusal{codes.InvalidArgument, "iamtest: exactly one of jwt and the OAuth token must be set"}
	case req.hasJWT:
		account, err = e.verifyJWT(req.jwt)
	default:
		e.mu.Lock()
		a, ok := e.oauth[req.oauth]
		e.mu.Unlock()
		if !ok {
			err = &refusal{codes.Unauthenticated, "iamtest: unknown OAuth token"}
		}
		account = a
	}
	if err != nil {
		return "", time.Time{}, e.refuse(err)
	}

	var b [16]byte
	rand.Read(b[:])
	tok := "iamtest-" + hex.EncodeToString(b[:])
	e.mu.Lock()
	defer e.mu.Unlock()
	e.issued[tok] = account
	return tok, time.Now().Add(e.lifetime), nil
}

func (e *TokenEndpoint) refuse(r *refusal) *refusal {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls.Refused++
	e.lastRefuse = r.msg
	return r
}

// verifyJWT checks a service account's JWT as the reference issuer does,
// and the signature's salt length strictly (golang-jwt's verifier accepts
// any): returns the account ID.
func (e *TokenEndpoint) verifyJWT(s string) (string, *refusal) {
	e.mu.Lock()
	aud := e.audience
	e.mu.Unlock()
	bad := func(format string, args ...any) (string, *refusal) {
		return "", &refusal{codes.Unauthenticated, "iamtest: invalid JWT: " + fmt.Sprintf(format, args...)}
	}
	var key endpointKey
	claims := &jwt.RegisteredClaims{}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodPS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithAudience(aud),
	)
	t, err := parser.ParseWithClaims(s, claims, func(t *jwt.Token) (any, error) {
		kid, ok := t.Header["kid"].(string)
		if !ok || kid == "" {
			return nil, errors.New("header kid is missing")
		}
		e.mu.Lock()
		k, found := e.keys[kid]
		e.mu.Unlock()
		if !found {
			return nil, fmt.Errorf("unknown kid %q", kid)
		}
		key = k
		return k.pub, nil
	})
	if err != nil {
		return bad("%v", err)
	}
	if typ, ok := t.Header["typ"]; ok && typ != "JWT" {
		return bad("header typ is %v, want JWT", typ)
	}
	if claims.Issuer != key.accountID {
		return bad("iss %q is not the key's account", claims.Issuer)
	}
	if claims.IssuedAt == nil {
		return bad("iat is missing")
	}
	if claims.ExpiresAt.Sub(claims.IssuedAt.Time) > maxJWTLifetime {
		return bad("exp is more than %s after iat", maxJWTLifetime)
	}
	// RFC 7518 section 3.5: the PSS salt is as long as the hash.
	dot := strings.LastIndexByte(s, '.')
	sig, err := base64.RawURLEncoding.DecodeString(s[dot+1:])
	if err != nil {
		return bad("signature is not base64url")
	}
	digest := sha256.Sum256([]byte(s[:dot]))
	if err := rsa.VerifyPSS(key.pub, crypto.SHA256, digest[:], sig,
		&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}); err != nil {
		return bad("PSS salt length is not 32 bytes")
	}
	return key.accountID, nil
}

// grpcEndpoint serves IamTokenService.Create under both names.
type grpcEndpoint struct {
	iamv1.UnimplementedIamTokenServiceServer
	e *TokenEndpoint
}

func (g *grpcEndpoint) Create(ctx context.Context, in *iamv1.IamTokenServiceCreateRequest) (*iamv1.IamTokenServiceCreateResponse, error) {
	kind := &g.e.calls.GRPC
	if method, _ := grpc.Method(ctx); method == ReferenceCreateMethod {
		kind = &g.e.calls.ReferenceGRPC
	}
	req := exchangeRequest{}
	switch id := in.GetIdentity().(type) {
	case *iamv1.IamTokenServiceCreateRequest_Jwt:
		req.jwt, req.hasJWT = id.Jwt, true
	case *iamv1.IamTokenServiceCreateRequest_OauthToken:
		req.oauth, req.hasOAuth = id.OauthToken, true
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("authorization")) > 0 {
		req.credential = "authorization"
	}
	tok, exp, r := g.e.create(ctx, kind, req)
	if r != nil {
		return nil, status.Error(r.code, r.msg)
	}
	return &iamv1.IamTokenServiceCreateResponse{IamToken: tok, ExpiresAt: timestamppb.New(exp)}, nil
}

// httpStatus maps a refusal's code the way the reference REST gateway does.
func httpStatus(c codes.Code) int {
	switch c {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound:
		return http.StatusNotFound
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Canceled:
		return 499
	default:
		return http.StatusInternalServerError
	}
}

func (e *TokenEndpoint) serveREST(w http.ResponseWriter, r *http.Request) {
	writeErr := func(ref *refusal) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(httpStatus(ref.code))
		json.NewEncoder(w).Encode(map[string]any{"code": int(ref.code), "message": ref.msg})
	}
	problem := ""
	switch {
	case r.URL.Path != RESTPath:
		problem = fmt.Sprintf("path %q, want %q", r.URL.Path, RESTPath)
	case r.Method != http.MethodPost:
		problem = fmt.Sprintf("method %s, want POST", r.Method)
	case !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json"):
		problem = "Content-Type is not application/json"
	}
	var body struct {
		JWT   *string `json:"jwt"`
		OAuth *string `json:"yandexPassportOauthToken"`
	}
	if problem == "" {
		data, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err != nil || dec.Decode(&body) != nil || dec.More() {
			problem = "body is not a JSON object with only jwt or yandexPassportOauthToken"
		}
	}
	if problem != "" {
		e.mu.Lock()
		e.calls.REST++
		e.mu.Unlock()
		writeErr(e.refuse(&refusal{codes.InvalidArgument, "iamtest: " + problem}))
		return
	}
	req := exchangeRequest{}
	if body.JWT != nil {
		req.jwt, req.hasJWT = *body.JWT, true
	}
	if body.OAuth != nil {
		req.oauth, req.hasOAuth = *body.OAuth, true
	}
	if r.Header.Get("Authorization") != "" {
		req.credential = "authorization"
	}
	tok, exp, ref := e.create(r.Context(), &e.calls.REST, req)
	if ref != nil {
		writeErr(ref)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{
		"iamToken":  tok,
		"expiresAt": exp.UTC().Format(time.RFC3339Nano),
	})
}

// KeyFile is a generated service account authorized key, for tests.
type KeyFile struct {
	// ID is the key ID.
	ID string
	// ServiceAccountID is the account the key belongs to.
	ServiceAccountID string
	// PrivateKey is the RSA 2048 private key.
	PrivateKey *rsa.PrivateKey
}

// NewKeyFile generates an RSA 2048 authorized key.
func NewKeyFile(keyID, serviceAccountID string) *KeyFile {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(fmt.Sprintf("iamtest: generate key: %v", err))
	}
	return &KeyFile{ID: keyID, ServiceAccountID: serviceAccountID, PrivateKey: priv}
}

// String describes the key without its private half.
func (k *KeyFile) String() string {
	return fmt.Sprintf("iamtest.KeyFile{ID: %q, ServiceAccountID: %q}", k.ID, k.ServiceAccountID)
}

// PrivateKeyPEM is the private key as the key file holds it: the reference
// console's warning line, then a PKCS#8 PEM block.
func (k *KeyFile) PrivateKeyPEM() string {
	der, err := x509.MarshalPKCS8PrivateKey(k.PrivateKey)
	if err != nil {
		panic(fmt.Sprintf("iamtest: marshal key: %v", err))
	}
	return "PLEASE DO NOT REMOVE THIS LINE! Yandex.Cloud SA Key ID <" + k.ID + ">\n" +
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// PublicKeyPEM is the public key as the key file holds it (PKIX PEM).
func (k *KeyFile) PublicKeyPEM() string {
	der, err := x509.MarshalPKIXPublicKey(&k.PrivateKey.PublicKey)
	if err != nil {
		panic(fmt.Sprintf("iamtest: marshal key: %v", err))
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// Fields returns the key file's fields with snake_case names, for tests
// that build variants of it.
func (k *KeyFile) Fields() map[string]any {
	return map[string]any{
		"id":                 k.ID,
		"service_account_id": k.ServiceAccountID,
		"created_at":         "2026-01-02T03:04:05Z",
		"key_algorithm":      "RSA_2048",
		"public_key":         k.PublicKeyPEM(),
		"private_key":        k.PrivateKeyPEM(),
	}
}

// JSON is the key file with snake_case names, as the reference CLI writes it.
func (k *KeyFile) JSON() []byte {
	b, _ := json.MarshalIndent(k.Fields(), "", "  ")
	return b
}

// CamelJSON is the key file with camelCase names, as some tools write it.
func (k *KeyFile) CamelJSON() []byte {
	b, _ := json.MarshalIndent(map[string]any{
		"id":               k.ID,
		"serviceAccountId": k.ServiceAccountID,
		"createdAt":        "2026-01-02T03:04:05Z",
		"keyAlgorithm":     "RSA_2048",
		"publicKey":        k.PublicKeyPEM(),
		"privateKey":       k.PrivateKeyPEM(),
	}, "", "  ")
	return b
}
