package grpcauth

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

// The token exchange's defaults: the reference deployment's endpoints.
const (
	// DefaultExchangeEndpoint is the reference deployment's gRPC endpoint.
	DefaultExchangeEndpoint = "iam.api.cloud.yandex.net:443"
	// DefaultExchangeURL is the reference deployment's REST token URL.
	DefaultExchangeURL = iamjwt.ReferenceTokenURL
	// ReferenceCreateMethod is the exchange method's full name on the
	// reference deployment, the only one it serves.
	ReferenceCreateMethod = "/yandex.cloud.iam.v1.IamTokenService/Create"
	// CreateMethod is the exchange method's full name in this module's API
	// (iamtoken.iam.v1). Its messages are field-number compatible with the
	// reference's, and the issuer in iamserver serves both names.
	CreateMethod = iamv1.IamTokenService_Create_FullMethodName
)

// Limits on what the exchange accepts from the network.
const (
	// maxAnswerSize bounds a token answer's body; a real one is about 1 KiB.
	maxAnswerSize = 64 << 10
	// MaxTokenSize bounds an IAM token's length. Tokens go into a header on
	// every call, and real ones are well under 2 KiB.
	MaxTokenSize = 8 << 10
)

// ExchangeOptions configure how a signed JWT or an OAuth token is exchanged
// for an IAM token. The zero value (and nil) talks gRPC over TLS to the
// reference deployment.
type ExchangeOptions struct {
	// Endpoint is where to exchange. Optional. A URL (https://host[:port][/path])
	// selects REST: POST to the path, /iam/v1/tokens when the path is empty.
	// Anything else is a gRPC target (host:port, dns:///host:port).
	// Default: DefaultExchangeEndpoint (gRPC).
	Endpoint string
	// GRPCMethod is the full name of the gRPC method to call. Optional.
	// Default: ReferenceCreateMethod; use CreateMethod for an issuer that
	// serves only this module's API.
	GRPCMethod string
	// Audience is the `aud` of the JWTs a service account key signs: the
	// issuer's token URL. Optional. Default: DefaultExchangeURL, what the
	// reference deployment expects whichever protocol is used.
	Audience string
	// TLSConfig is used for the connection. Optional. Default: the system
	// roots, TLS 1.2 or later.
	TLSConfig *tls.Config
	// Insecure sends the exchange in cleartext (http:// URLs, gRPC without
	// TLS). Optional, for tests against a fake on the loopback interface: it
	// is refused for any host other than localhost or a loopback address.
	Insecure bool
	// Timeout bounds one exchange, within the caller's context. Optional.
	// Default: 10s.
	Timeout time.Duration
	// DialOptions are added to the gRPC connection's options. Optional. They
	// must not add per-call credentials: the exchange carries no token.
	DialOptions []grpc.DialOption
	// HTTPClient is used for REST. Optional. Default: a client of its own
	// with the TLS settings above. Its Close does not close a given client.
	HTTPClient *http.Client
}

func (o *ExchangeOptions) endpoint() string {
	if o == nil || o.Endpoint == "" {
		return DefaultExchangeEndpoint
	}
	return o.Endpoint
}

func (o *ExchangeOptions) method() string {
	if o == nil || o.GRPCMethod == "" {
		return ReferenceCreateMethod
	}
	return o.GRPCMethod
}

func (o *ExchangeOptions) audience() string {
	if o == nil || o.Audience == "" {
		return DefaultExchangeURL
	}
	return o.Audience
}

func (o *ExchangeOptions) timeout() time.Duration {
	if o == nil || o.Timeout <= 0 {
		return 10 * time.Second
	}
	return o.Timeout
}

func (o *ExchangeOptions) tlsConfig() *tls.Config {
	if o != nil && o.TLSConfig != nil {
		return o.TLSConfig.Clone()
	}
	return &tls.Config{MinVersion: tls.VersionTLS12}
}

// errSourceClosed is the cause of a Token call after Close.
var errSourceClosed = errors.New("source is closed")

// exchanger performs the token exchange over one protocol. It owns one
// long-lived connection (or HTTP client) that close releases.
type exchanger interface {
	// exchange trades req for a token; secret is the credential in req, so
	// that no error ever repeats it.
	exchange(ctx context.Context, req *iamv1.IamTokenServiceCreateRequest, secret string) (*Token, error)
	close() error
}

// newExchanger validates opts and builds the client for the protocol its
// endpoint selects. Nothing is dialled yet.
func newExchanger(source string, opts *ExchangeOptions) (exchanger, error) {
	ep := opts.endpoint()
	if strings.HasPrefix(ep, "https://") || strings.HasPrefix(ep, "http://") {
		return newRESTExchanger(source, ep, opts)
	}
	if scheme, _, ok := strings.Cut(ep, ":"); ok && !grpcSchemes[scheme] && strings.Contains(ep, "://") {
		return nil, configError(source, fmt.Errorf("endpoint %q: scheme not supported (want https:// for REST or a gRPC target)", ep))
	}
	return newGRPCExchanger(source, ep, opts)
}

// grpcSchemes are the gRPC target schemes an endpoint may use.
var grpcSchemes = map[string]bool{"dns": true, "passthrough": true, "unix": true, "unix-abstract": true}

func configError(source string, err error) *FetchError {
	return &FetchError{Source: source, Err: err}
}

// isLoopback reports whether host names this machine, the only place an
// exchange may go in cleartext.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// isLocalTarget reports whether a gRPC target is on this machine: a
// loopback host, or a Unix socket.
func isLocalTarget(target string) bool {
	if strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") {
		return true
	}
	host := target
	if u, err := url.Parse(target); err == nil && (u.Scheme == "dns" || u.Scheme == "passthrough") {
		host = strings.TrimPrefix(u.Path, "/")
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return isLoopback(host)
}

// grpcExchanger calls IamTokenService.Create on one ClientConn.
type grpcExchanger struct {
	closed  atomic.Bool
	source  string
	target  string
	conn    *grpc.ClientConn
	method  string
	timeout time.Duration
}

func newGRPCExchanger(source, target string, opts *ExchangeOptions) (*grpcExchanger, error) {
	var tc credentials.TransportCredentials
	if opts != nil && opts.Insecure {
		if !isLocalTarget(target) {
			return nil, configError(source, fmt.Errorf("endpoint %q: Insecure is only allowed for loopback addresses", target))
		}
		tc = insecure.NewCredentials()
	} else {
		tc = credentials.NewTLS(opts.tlsConfig())
	}
	// No per-call credentials: the exchange is how a caller gets its first
	// token, so it must not ask a token source for one.
	dialOpts := []grpc.DialOption{grpc.WithTransportCredentials(tc)}
	if opts != nil {
		dialOpts = append(dialOpts, opts.DialOptions...)
	}
	conn, err := grpc.NewClient(target, dialOpts...)
	if err != nil {
		return nil, configError(source, fmt.Errorf("endpoint %q: %w", target, err))
	}
	return &grpcExchanger{source: source, target: target, conn: conn, method: opts.method(), timeout: opts.timeout()}, nil
}

func (g *grpcExchanger) exchange(ctx context.Context, req *iamv1.IamTokenServiceCreateRequest, secret string) (*Token, error) {
	if g.closed.Load() {
		return nil, &FetchError{Source: g.source, Err: errSourceClosed}
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	resp := new(iamv1.IamTokenServiceCreateResponse)
	if err := g.conn.Invoke(ctx, g.method, req, resp); err != nil {
		return nil, g.classify(err, secret)
	}
	now := sourceNow()
	if err := checkTokenValue(resp.GetIamToken()); err != nil {
		return nil, &FetchError{Source: g.source, Err: fmt.Errorf("at %s: bad answer: iam_token %w", g.target, err)}
	}
	if resp.GetExpiresAt() == nil {
		return nil, &FetchError{Source: g.source, Err: fmt.Errorf("at %s: bad answer: expires_at is missing", g.target)}
	}
	if err := resp.GetExpiresAt().CheckValid(); err != nil {
		return nil, &FetchError{Source: g.source, Err: fmt.Errorf("at %s: bad answer: expires_at is not a valid timestamp", g.target)}
	}
	tok, err := tokenExpiringAt(resp.GetIamToken(), resp.GetExpiresAt().AsTime(), now)
	if err != nil {
		return nil, &FetchError{Source: g.source, Err: fmt.Errorf("at %s: bad answer: %w", g.target, err)}
	}
	return tok, nil
}

func (g *grpcExchanger) classify(err error, secret string) error {
	st, _ := status.FromError(err)
	msg := redact(truncate(st.Message(), 256), secret)
	temporary := false
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted,
		codes.Aborted, codes.Internal, codes.Unknown, codes.Canceled:
		temporary = true
	}
	cause := fmt.Errorf("at %s: %s: %s", g.target, st.Code(), msg)
	if ctxErr := contextError(st.Code()); ctxErr != nil {
		cause = fmt.Errorf("at %s: %w", g.target, ctxErr)
		if msg != ctxErr.Error() {
			cause = fmt.Errorf("at %s: %w: %s", g.target, ctxErr, msg)
		}
	}
	return &FetchError{Source: g.source, Temporary: temporary, Err: cause}
}

// contextError maps the codes gRPC uses for a context's end back to the
// context errors, so that errors.Is(err, context.DeadlineExceeded) holds.
func contextError(c codes.Code) error {
	switch c {
	case codes.DeadlineExceeded:
		return context.DeadlineExceeded
	case codes.Canceled:
		return context.Canceled
	}
	return nil
}

func (g *grpcExchanger) close() error {
	if g.closed.Swap(true) {
		return nil
	}
	return g.conn.Close()
}

// restExchanger POSTs to the REST token URL with one http.Client.
type restExchanger struct {
	closed    atomic.Bool
	source    string
	url       string
	host      string // for errors
	client    *http.Client
	ownClient bool
	timeout   time.Duration
}

func newRESTExchanger(source, endpoint string, opts *ExchangeOptions) (*restExchanger, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return nil, configError(source, fmt.Errorf("endpoint %q is not a valid URL", endpoint))
	}
	if u.User != nil {
		return nil, configError(source, errors.New("endpoint URL must not carry user information"))
	}
	if u.Scheme == "http" {
		if opts == nil || !opts.Insecure {
			return nil, configError(source, fmt.Errorf("endpoint %q is not https (set Insecure for a loopback test server)", endpoint))
		}
		if !isLoopback(u.Hostname()) {
			return nil, configError(source, fmt.Errorf("endpoint %q: Insecure is only allowed for loopback addresses", endpoint))
		}
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/iam/v1/tokens"
	}
	r := &restExchanger{source: source, url: u.String(), host: u.Host, timeout: opts.timeout()}
	if opts != nil && opts.HTTPClient != nil {
		r.client = opts.HTTPClient
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = opts.tlsConfig()
		// No proxy from the environment would be wrong for some users and
		// right for others; keep the standard behaviour.
		r.client = &http.Client{
			Transport: t,
			// A token URL that redirects elsewhere is not followed: the
			// request carries a credential.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		r.ownClient = true
	}
	return r, nil
}

// restRequest is the REST exchange's request body: exactly one field is set.
type restRequest struct {
	JWT        string `json:"jwt,omitempty"`
	OAuthToken string `json:"yandexPassportOauthToken,omitempty"`
}

func (r *restExchanger) exchange(ctx context.Context, req *iamv1.IamTokenServiceCreateRequest, secret string) (*Token, error) {
	if r.closed.Load() {
		return nil, &FetchError{Source: r.source, Err: errSourceClosed}
	}
	body, err := json.Marshal(restRequest{JWT: req.GetJwt(), OAuthToken: req.GetOauthToken()})
	if err != nil {
		return nil, &FetchError{Source: r.source, Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		return nil, configError(r.source, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(hreq)
	if err != nil {
		return nil, &FetchError{Source: r.source, Temporary: true, Err: fmt.Errorf("at %s: %w", r.host, networkError(err, secret))}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerSize+1))
	if err != nil {
		return nil, &FetchError{Source: r.source, Temporary: true, Err: fmt.Errorf("at %s: read answer: %w", r.host, networkError(err, secret))}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &FetchError{Source: r.source, Temporary: temporaryStatus(resp.StatusCode),
			Err: fmt.Errorf("at %s: HTTP %d%s", r.host, resp.StatusCode, restErrorMessage(data, secret))}
	}
	tok, err := parseRESTAnswer(data, sourceNow())
	if err != nil {
		return nil, &FetchError{Source: r.source, Err: fmt.Errorf("at %s: %w", r.host, err)}
	}
	return tok, nil
}

func (r *restExchanger) close() error {
	if r.closed.Swap(true) {
		return nil
	}
	if r.ownClient {
		r.client.CloseIdleConnections()
	}
	return nil
}

// networkError describes a transport failure without the URL's query or
// anything the request carried.
func networkError(err error, secret string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if secret != "" && strings.Contains(err.Error(), secret) {
		return errors.New("request failed")
	}
	return err
}

// temporaryStatus tells the HTTP statuses that trying again may cure.
func temporaryStatus(code int) bool {
	return code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout
}

// restErrorMessage extracts the message of an error answer
// ({"code": …, "message": …}), bounded and without the credential.
func restErrorMessage(data []byte, secret string) string {
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(data, &e) != nil || e.Message == "" {
		return ""
	}
	return ": " + redact(truncate(sanitize(e.Message), 256), secret)
}

// restAnswer is the REST exchange's answer.
type restAnswer struct {
	IAMToken  *string `json:"iamToken"`
	ExpiresAt *string `json:"expiresAt"`
}

// parseRESTAnswer parses a REST exchange answer: {"iamToken": …,
// "expiresAt": "<RFC 3339>"}. Unknown fields are ignored so that a newer
// server still works; the known ones must be present and well-formed.
func parseRESTAnswer(data []byte, now time.Time) (*Token, error) {
	var a restAnswer
	if err := decodeAnswer(data, &a); err != nil {
		return nil, err
	}
	if a.IAMToken == nil {
		return nil, errors.New("bad answer: iamToken is missing")
	}
	if err := checkTokenValue(*a.IAMToken); err != nil {
		return nil, fmt.Errorf("bad answer: iamToken %w", err)
	}
	if a.ExpiresAt == nil {
		return nil, errors.New("bad answer: expiresAt is missing")
	}
	exp, err := time.Parse(time.RFC3339Nano, *a.ExpiresAt)
	if err != nil {
		return nil, errors.New("bad answer: expiresAt is not an RFC 3339 time")
	}
	tok, err := tokenExpiringAt(*a.IAMToken, exp, now)
	if err != nil {
		return nil, fmt.Errorf("bad answer: %w", err)
	}
	return tok, nil
}

// tokenExpiringAt builds a token that expires at exp, refusing one that has
// already expired and believing no more than MaxLifetime.
func tokenExpiringAt(value string, exp, now time.Time) (*Token, error) {
	if !exp.After(now) {
		return nil, errors.New("token has already expired")
	}
	if limit := now.Add(MaxLifetime); exp.After(limit) {
		exp = limit
	}
	return &Token{Value: value, Expiry: exp, Obtained: now}, nil
}

// checkTokenValue accepts a token that can go into an authorization header:
// non-empty, bounded, printable ASCII without spaces. Its error never shows
// the value.
func checkTokenValue(v string) error {
	if v == "" {
		return errors.New("is empty")
	}
	if len(v) > MaxTokenSize {
		return fmt.Errorf("is longer than %d bytes", MaxTokenSize)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c >= 0x7f {
			return errors.New("has a byte that is not printable ASCII")
		}
	}
	return nil
}

// decodeAnswer decodes a token answer (REST exchange, metadata service,
// function context) of at most maxAnswerSize bytes into v.
func decodeAnswer(data []byte, v any) error {
	if len(data) > maxAnswerSize {
		return fmt.Errorf("bad answer: larger than %d bytes", maxAnswerSize)
	}
	if err := decodeJSONObject(data, v); err != nil {
		return fmt.Errorf("bad answer: %w", err)
	}
	return nil
}

// decodeJSONObject decodes exactly one JSON object into v. Its errors name
// the offset or the field, never the input, which may hold a secret.
func decodeJSONObject(data []byte, v any) error {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return errors.New("not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return fmt.Errorf("not valid JSON (at byte %d)", se.Offset)
		case errors.As(err, &te):
			return fmt.Errorf("field %q has the wrong type (JSON %s)", te.Field, te.Value)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return errors.New("not valid JSON (truncated)")
		default:
			return errors.New("not valid JSON")
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// sanitize drops control characters from text that goes into an error.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// redact removes secret from s; an error never repeats a credential even
// when a server echoes it.
func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[redacted]")
}
