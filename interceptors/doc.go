// Package interceptors is the server side of iamtoken-go: gRPC unary and
// stream interceptors that give every method the check its auth mode asks for
// (IAM token, access key or none) and put the authenticated caller, a
// Principal, in the context.
//
// # Where to start
//
// Principal and PrincipalFromContext (principal.go) are what handlers use.
// AccessKeyVerifier, AccessKeyStore and RevocationList (seams.go) are the
// interfaces through which the access-key check and the issuer plug in.
//
// # The interceptors
//
// UnaryServerInterceptor and StreamServerInterceptor (interceptor.go) are
// go-grpc-middleware's auth interceptor behind its selector: the selector
// skips methods whose auth mode (authmode) is None, the auth function routes
// IAM-token methods, and every unknown method, to the token check and
// access-key methods to the AccessKeyVerifier. Options (options.go) set the
// keys, the claims, the cache, the revocation list, the outcome hook and the
// authorizer.
//
// # Checking IAM tokens
//
// A Validator (validator.go) checks a token's shape and header itself
// (checkHeader: size before anything, compact form, alg allow-list, kid,
// no jku/x5u/jwk/x5c/crit), then lets golang-jwt verify the signature and the
// times. Keys come from a static set or from the issuer's JWKS (jwks.go,
// jwk.go): refreshed in the background and, rate limited, on an unknown kid.
// Valid tokens live in a sharded copy-on-write cache (cache.go) until their
// exp; a key leaving the key set takes its tokens with it.
//
// # Checking access keys
//
// NewAccessKeyVerifier (accesskey.go) returns the AccessKeyVerifier for calls
// signed with AWS Signature Version 4, as grpcauth's AccessKeyCredentials and
// the AWS SDK signers produce them; give it to WithAccessKeyVerifier. It
// parses the authorization value strictly (sigv4.go), requires host and
// x-amz-date to be signed and every x-amz-* metadata to be, keeps the date
// within ±15 minutes of the clock, looks the key up in an AccessKeyStore,
// recomputes the signature (one HMAC: derived signing keys are cached per key
// and day, sigv4_keycache.go) and compares it in constant time. Refusing
// replayed signatures (accesskey_replay.go) is an option, off by default.
package interceptors
