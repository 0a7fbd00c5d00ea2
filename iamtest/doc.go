// Package iamtest provides in-process fakes of the services a client obtains
// IAM tokens from, and an in-process issuer, for tests: yours and this
// module's.
//
// # Fakes
//
//   - MetadataServer is a VM metadata service (an httptest server): point
//     YC_METADATA_ADDR (or grpcauth.MetadataOptions.Addr) at its Addr. Its
//     token, the remaining lifetime it reports (expires_in), 404 (no service
//     account attached), failures and slowness are settable; it counts calls
//     and records requests that break the wire format.
//   - TokenEndpoint is the token exchange, over gRPC (on a loopback listener,
//     under both the reference deployment's method name and this module's)
//     and REST (an httptest server). It verifies a service account's PS256
//     JWT against the public half of the keys it was given (header kid,
//     claims iss, aud, iat, exp) and the OAuth tokens it was told about, and
//     issues opaque tokens with a settable lifetime. NewKeyFile generates an
//     authorized key file to go with it.
//   - Issuer is the real issuer (iamserver) over a memory store, served on a
//     loopback gRPC listener and an httptest server (REST exchange, JWKS).
//     Its helpers create service accounts with authorized keys and access
//     keys, and mint tokens for any subject, including expired and oddly
//     formed ones for negative tests.
//
// Every fake is safe for concurrent use, and Close stops all its goroutines.
// Constructors panic if they cannot listen, as httptest.NewServer does.
package iamtest
