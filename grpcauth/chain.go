package grpcauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultOptions configure FindDefaultSource. Each explicit field, when set,
// wins over the environment; they are tried in the order listed.
type DefaultOptions struct {
	// Source is used as is. Optional.
	Source TokenSource
	// Token is a ready IAM token (a StaticSource). Optional.
	Token string
	// Key is a service account's authorized key. Optional.
	Key *ServiceAccountKey
	// KeyFile is the path of an authorized key file. Optional.
	KeyFile string
	// OAuthToken is a user account's OAuth token. Optional.
	OAuthToken string
	// Exchange configures the exchange of keys and OAuth tokens. Optional.
	Exchange *ExchangeOptions
	// Metadata configures the metadata service. Optional.
	Metadata *MetadataOptions
	// MetadataProbeTimeout bounds the one request that checks whether the
	// metadata service answers. Optional. Default: 2s.
	MetadataProbeTimeout time.Duration
	// NoMetadata skips the metadata service. Optional.
	NoMetadata bool
}

// DefaultSource is the source FindDefaultSource chose. Safe for concurrent
// use.
type DefaultSource struct {
	src  TokenSource
	name string
	// first is the token the metadata probe obtained, handed to the first
	// Token call instead of asking again; nil once taken.
	first atomic.Pointer[Token]
}

// Name says which source was chosen, e.g. "YC_SERVICE_ACCOUNT_KEY_FILE", for
// logs. It never contains a secret.
func (d *DefaultSource) Name() string { return d.name }

// Token obtains a token from the chosen source.
func (d *DefaultSource) Token(ctx context.Context) (*Token, error) {
	if tok := d.first.Swap(nil); tok != nil && tok.Expiry.After(sourceNow()) {
		return tok, nil
	}
	return d.src.Token(ctx)
}

// Close closes the chosen source if it has a Close method.
func (d *DefaultSource) Close() error {
	if c, ok := d.src.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

const chainSourceName = "default credentials"

// FindDefaultSource chooses the first way to obtain a token that is
// configured: the explicit options (Source, Token, Key, KeyFile,
// OAuthToken), then the environment (IAM_TOKEN, YC_SERVICE_ACCOUNT_KEY_FILE,
// YC_TOKEN), then the VM metadata service if it answers a token request
// within MetadataProbeTimeout. A way that is configured but broken (an
// unreadable key file) is an error, not a reason to try the next. When
// nothing works, the error lists what was tried, without secrets.
func FindDefaultSource(ctx context.Context, opts *DefaultOptions) (*DefaultSource, error) {
	if opts == nil {
		opts = &DefaultOptions{}
	}
	var tried []string
	found := func(name string, src TokenSource, err error) (*DefaultSource, error) {
		if err != nil {
			// The source's own error says what is wrong and where it came from.
			return nil, err
		}
		return &DefaultSource{src: src, name: name}, nil
	}

	switch {
	case opts.Source != nil:
		return &DefaultSource{src: opts.Source, name: "DefaultOptions.Source"}, nil
	case opts.Token != "":
		s, err := NewStaticSource(opts.Token, time.Time{})
		return found("DefaultOptions.Token", s, err)
	case opts.Key != nil:
		s, err := NewServiceAccountKeySource(opts.Key, opts.Exchange)
		return found("DefaultOptions.Key", s, err)
	case opts.KeyFile != "":
		s, err := ServiceAccountKeySourceFromFile(opts.KeyFile, opts.Exchange)
		return found("DefaultOptions.KeyFile", s, err)
	case opts.OAuthToken != "":
		s, err := NewOAuthSource(opts.OAuthToken, opts.Exchange)
		return found("DefaultOptions.OAuthToken", s, err)
	}
	tried = append(tried, "explicit options (none set)")

	type envSource struct {
		name string
		make func() (TokenSource, error)
	}
	for _, e := range []envSource{
		{EnvIAMToken, func() (TokenSource, error) { return StaticSourceFromEnv() }},
		{EnvServiceAccountKeyFile, func() (TokenSource, error) { return ServiceAccountKeySourceFromEnv(opts.Exchange) }},
		{EnvOAuthToken, func() (TokenSource, error) { return OAuthSourceFromEnv(opts.Exchange) }},
	} {
		s, err := e.make()
		if errors.Is(err, errEnvNotSet) {
			tried = append(tried, e.name+" (not set)")
			continue
		}
		return found(e.name, s, err)
	}

	temporary := false
	if opts.NoMetadata {
		tried = append(tried, "metadata service (disabled)")
	} else {
		md, err := NewMetadataSource(opts.Metadata)
		if err != nil {
			return nil, err
		}
		probe := opts.MetadataProbeTimeout
		if probe <= 0 {
			probe = 2 * time.Second
		}
		pctx, cancel := context.WithTimeout(ctx, probe)
		tok, err := md.Token(pctx)
		cancel()
		if err == nil {
			d := &DefaultSource{src: md, name: "metadata service at " + md.Addr()}
			d.first.Store(tok)
			return d, nil
		}
		md.Close()
		temporary = IsTemporary(err)
		var fe *FetchError
		reason := err.Error()
		if errors.As(err, &fe) {
			reason = fe.Err.Error()
		}
		tried = append(tried, fmt.Sprintf("metadata service (%s)", reason))
	}
	return nil, &FetchError{Source: chainSourceName, Temporary: temporary,
		Err: fmt.Errorf("no way to obtain an IAM token; tried: %s", strings.Join(tried, "; "))}
}
