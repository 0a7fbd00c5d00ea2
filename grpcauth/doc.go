// Package grpcauth is the client side of iamtoken-go: gRPC call credentials
// that put a cached IAM token on every outgoing call, and the token sources
// that obtain one.
//
// # Where to start
//
// Token and TokenSource (token.go) are the two types everything else is
// built from: a source obtains tokens, a cache decorates a source, and the
// credentials put the cached token on calls.
//
// # Caching and call credentials
//
// NewCachedSource puts any source behind a cache shared by all calls: its
// hot path is one atomic load and one reading of the wall clock, it
// refreshes in the background well before expiry (hourly by default), and
// a call waits only when no valid token exists. NewPerRPCCredentials turns
// a source into gRPC call credentials that add "authorization: Bearer …"
// to the calls whose auth mode (package authmode) is IAMToken, and nothing
// to the others; WithTokenSource does both in one dial option. An
// access-key signer (NewAccessKeyCredentials) acts on AccessKey methods
// only, so both go on one connection.
//
// # Sources
//
// Each way to obtain a token is a TokenSource, meant to sit behind the
// cache: StaticSource (a ready token, IAM_TOKEN), MetadataSource (the VM
// metadata service; its expires_in becomes the expiry),
// FunctionContextSource (the token a function runtime hands each
// invocation), ServiceAccountKeySource (a PS256 JWT signed with an
// authorized key, exchanged over gRPC or REST; sakey.go, exchange.go),
// OAuthSource (a user's OAuth token, exchanged the same ways) and CLISource
// (the output of `yc iam create-token`). FindDefaultSource picks the first
// one configured: explicit options, then IAM_TOKEN,
// YC_SERVICE_ACCOUNT_KEY_FILE, YC_TOKEN, then the metadata service. Every
// source fails with a *FetchError whose Temporary field tells an outage
// from a refusal; package iamtest has fakes of the services they talk to.
//
// # Access keys
//
// AccessKeyCredentials (accesskey.go) sign each call to an AccessKey method
// with a static access key in the AWS Signature Version 4 scheme, using
// smithy-go's signer on a synthetic request that holds the call's method
// path, authority, date and nonce; the secret never leaves the process.
// Region and service default to DefaultAccessKeyRegion and
// DefaultAccessKeyService and must match the server's verifier
// (interceptors.NewAccessKeyVerifier).
package grpcauth
