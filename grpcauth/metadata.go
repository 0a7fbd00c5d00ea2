package grpcauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

const (
	// DefaultMetadataAddr is the VM metadata service's address.
	DefaultMetadataAddr = "169.254.169.254"
	// MetadataTokenPath is the path of the metadata service's token for the
	// service account attached to the VM.
	MetadataTokenPath = "/computeMetadata/v1/instance/service-accounts/default/token"
)

// MetadataOptions configure a MetadataSource. The zero value (and nil) asks
// the metadata service at YC_METADATA_ADDR, else DefaultMetadataAddr.
type MetadataOptions struct {
	// Addr is the metadata service's host[:port]. Optional. Default: the
	// YC_METADATA_ADDR environment variable, else DefaultMetadataAddr.
	Addr string
	// ConnectTimeout bounds connecting to the service, which is on the local
	// network: a long wait means there is none. Optional. Default: 1s.
	ConnectTimeout time.Duration
	// Timeout bounds one request, within the caller's context. Optional.
	// Default: 5s.
	Timeout time.Duration
	// HTTPClient is used instead of the source's own. Optional. Its Close
	// does not close a given client.
	HTTPClient *http.Client
}

func (o *MetadataOptions) addr() string {
	if o != nil && o.Addr != "" {
		return o.Addr
	}
	if a := os.Getenv(EnvMetadataAddr); a != "" {
		return a
	}
	return DefaultMetadataAddr
}

func (o *MetadataOptions) connectTimeout() time.Duration {
	if o == nil || o.ConnectTimeout <= 0 {
		return time.Second
	}
	return o.ConnectTimeout
}

func (o *MetadataOptions) timeout() time.Duration {
	if o == nil || o.Timeout <= 0 {
		return 5 * time.Second
	}
	return o.Timeout
}

// MetadataSource obtains the token of the service account attached to a VM
// from the VM metadata service (GCE-compatible). The token's expiry is what
// the service says remains of its lifetime (expires_in), which can be far
// less than MaxLifetime. Safe for concurrent use.
type MetadataSource struct {
	addr      string
	url       string
	client    *http.Client
	ownClient bool
	timeout   time.Duration
}

const metadataSourceName = "metadata service"

// NewMetadataSource returns a source that asks the metadata service. It does
// not contact the service; Token does.
func NewMetadataSource(opts *MetadataOptions) (*MetadataSource, error) {
	addr := opts.addr()
	if strings.Contains(addr, "/") || strings.ContainsAny(addr, " \t\r\n?#@") {
		return nil, configError(metadataSourceName, fmt.Errorf("address %q is not host[:port]", addr))
	}
	s := &MetadataSource{addr: addr, url: "http://" + addr + MetadataTokenPath, timeout: opts.timeout()}
	if opts != nil && opts.HTTPClient != nil {
		s.client = opts.HTTPClient
		return s, nil
	}
	dialer := &net.Dialer{Timeout: opts.connectTimeout()}
	s.client = &http.Client{
		Transport: &http.Transport{
			// The metadata service is link-local: never through a proxy.
			Proxy:               nil,
			DialContext:         dialer.DialContext,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     90 * time.Second,
		},
		// The service does not redirect; a redirect means something else
		// answered.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	s.ownClient = true
	return s, nil
}

// Addr is the metadata service's host[:port] this source asks.
func (s *MetadataSource) Addr() string { return s.addr }

// Token asks the metadata service for a token. Connection failures,
// timeouts, 5xx and 429 are temporary; 404 (no service account attached to
// the VM) and malformed answers are not.
func (s *MetadataSource) Token(ctx context.Context) (*Token, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, configError(metadataSourceName, err)
	}
	req.Header.Set("Metadata-Flavor", "Google")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, &FetchError{Source: metadataSourceName, Temporary: true,
			Err: fmt.Errorf("at %s: %w", s.addr, networkError(err, ""))}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerSize+1))
	if err != nil {
		return nil, &FetchError{Source: metadataSourceName, Temporary: true,
			Err: fmt.Errorf("at %s: read answer: %w", s.addr, networkError(err, ""))}
	}
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusNotFound:
		return nil, &FetchError{Source: metadataSourceName,
			Err: fmt.Errorf("at %s: no service account is attached to this VM (HTTP 404)", s.addr)}
	default:
		return nil, &FetchError{Source: metadataSourceName, Temporary: temporaryStatus(resp.StatusCode),
			Err: fmt.Errorf("at %s: HTTP %d", s.addr, resp.StatusCode)}
	}
	tok, err := parseMetadataAnswer(data, sourceNow())
	if err != nil {
		return nil, &FetchError{Source: metadataSourceName, Err: fmt.Errorf("at %s: %w", s.addr, err)}
	}
	return tok, nil
}

// Close releases the source's idle connections.
func (s *MetadataSource) Close() error {
	if s.ownClient {
		s.client.CloseIdleConnections()
	}
	return nil
}

// metadataAnswer is the metadata service's (and a function context's)
// token: {"access_token", "expires_in", "token_type"}.
type metadataAnswer struct {
	AccessToken *string `json:"access_token"`
	// ExpiresIn is raw so that a number in a string ("60"), which
	// json.Number would accept, is refused.
	ExpiresIn json.RawMessage `json:"expires_in"`
	TokenType *string         `json:"token_type"`
}

// parseMetadataAnswer parses a metadata token answer. expires_in is the
// token's remaining lifetime in seconds, so the expiry is now + expires_in.
// Unknown fields are ignored; the known ones must be well-formed.
func parseMetadataAnswer(data []byte, now time.Time) (*Token, error) {
	var a metadataAnswer
	if err := decodeAnswer(data, &a); err != nil {
		return nil, err
	}
	if a.AccessToken == nil {
		return nil, errors.New("bad answer: access_token is missing")
	}
	if a.ExpiresIn == nil || string(a.ExpiresIn) == "null" {
		return nil, errors.New("bad answer: expires_in is missing")
	}
	if a.TokenType != nil && !strings.EqualFold(*a.TokenType, "Bearer") {
		// The value is not shown: the answer is untrusted text.
		return nil, errors.New("bad answer: token_type is not Bearer")
	}
	expiresIn, err := parseExpiresIn(a.ExpiresIn)
	if err != nil {
		return nil, fmt.Errorf("bad answer: %w", err)
	}
	return newFreshToken(*a.AccessToken, expiresIn, now)
}

// parseExpiresIn reads a whole number of seconds, at least 1.
func parseExpiresIn(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, errors.New("expires_in is not a number")
	}
	secs, err := json.Number(raw).Int64()
	if err != nil {
		return 0, errors.New("expires_in is not a whole number of seconds")
	}
	if secs <= 0 {
		return 0, errors.New("expires_in is not positive: the token has expired")
	}
	if secs > int64(MaxLifetime/time.Second) {
		// No lifetime above MaxLifetime is believed; cap it here so that the
		// Duration below cannot overflow either.
		secs = int64(MaxLifetime / time.Second)
	}
	return time.Duration(secs) * time.Second, nil
}

// newFreshToken checks a token value handed over with its remaining
// lifetime and builds the Token.
func newFreshToken(value string, remaining time.Duration, now time.Time) (*Token, error) {
	if err := checkTokenValue(value); err != nil {
		return nil, fmt.Errorf("bad answer: access_token %w", err)
	}
	return tokenExpiringAt(value, now.Add(remaining), now)
}
