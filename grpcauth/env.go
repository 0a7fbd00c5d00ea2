package grpcauth

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// The environment variables the sources read.
const (
	// EnvIAMToken holds a ready IAM token (StaticSourceFromEnv).
	EnvIAMToken = "IAM_TOKEN"
	// EnvServiceAccountKeyFile holds the path of a service account's
	// authorized key file (ServiceAccountKeySourceFromEnv).
	EnvServiceAccountKeyFile = "YC_SERVICE_ACCOUNT_KEY_FILE"
	// EnvOAuthToken holds a user account's OAuth token (OAuthSourceFromEnv).
	EnvOAuthToken = "YC_TOKEN"
	// EnvMetadataAddr overrides the VM metadata service's host[:port].
	EnvMetadataAddr = "YC_METADATA_ADDR"
)

// errEnvNotSet is wrapped by the ...FromEnv constructors when their variable
// is empty, so that the default chain can move on to the next.
var errEnvNotSet = errors.New("not set")

func envError(source, name string) error {
	return configError(source, fmt.Errorf("environment variable %s is %w", name, errEnvNotSet))
}

// StaticSourceFromEnv returns a StaticSource of the token in IAM_TOKEN, with
// an unknown expiry.
func StaticSourceFromEnv() (*StaticSource, error) {
	v := os.Getenv(EnvIAMToken)
	if v == "" {
		return nil, envError(staticSourceName, EnvIAMToken)
	}
	s, err := NewStaticSource(v, time.Time{})
	if err != nil {
		return nil, fmt.Errorf("%w (from %s)", err, EnvIAMToken)
	}
	return s, nil
}

// ServiceAccountKeySourceFromEnv returns a ServiceAccountKeySource of the key
// file named by YC_SERVICE_ACCOUNT_KEY_FILE.
func ServiceAccountKeySourceFromEnv(opts *ExchangeOptions) (*ServiceAccountKeySource, error) {
	path := os.Getenv(EnvServiceAccountKeyFile)
	if path == "" {
		return nil, envError(keySourceName, EnvServiceAccountKeyFile)
	}
	s, err := ServiceAccountKeySourceFromFile(path, opts)
	if err != nil {
		return nil, fmt.Errorf("%w (from %s)", err, EnvServiceAccountKeyFile)
	}
	return s, nil
}

// OAuthSourceFromEnv returns an OAuthSource of the OAuth token in YC_TOKEN.
func OAuthSourceFromEnv(opts *ExchangeOptions) (*OAuthSource, error) {
	v := os.Getenv(EnvOAuthToken)
	if v == "" {
		return nil, envError(oauthSourceName, EnvOAuthToken)
	}
	s, err := NewOAuthSource(v, opts)
	if err != nil {
		return nil, fmt.Errorf("%w (from %s)", err, EnvOAuthToken)
	}
	return s, nil
}
