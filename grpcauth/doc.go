// Package grpcauth is the client side of iamtoken-go: gRPC call credentials
// that put a cached IAM token on every outgoing call, and the token sources
// that obtain one.
//
// # Where to start
//
// Token and TokenSource (token.go) are the two types everything else is
// built from: a source obtains tokens, a cache decorates a source, and the
// credentials put the cached token on calls.
package grpcauth
