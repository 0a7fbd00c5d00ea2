// Package iamserver is the issuer: the IAM service that turns a proof of
// identity into an IAM token, publishes the keys that verify it, and manages
// service accounts, their authorized keys and their access keys.
//
// # Where to start
//
// New (server.go) builds a Server over a Store. Register puts its gRPC
// services on a grpc.Server — IamTokenService also under the reference
// deployment's name, yandex.cloud.iam.v1.IamTokenService, so that that
// cloud's SDKs get tokens from it unchanged — and HTTPHandler serves the
// REST exchange (POST /iam/v1/tokens) and the key set
// (GET /.well-known/jwks.json).
//
// # Token exchange
//
// exchange.go: a service account proves itself with a PS256 JWT signed by
// one of its authorized keys (kid = key ID, iss = the account, aud = one of
// the issuer's token URLs, at most one hour between iat and exp); a user with
// an OAuth token from the configuration. The answer is an IAM token in the
// internal/iamjwt format, signed ES256 with the current key and living 12
// hours at most.
//
// # Keys
//
// keys.go: the signing key rotates on a schedule (a goroutine owned by the
// Server, stopped by Close). The next key is published ten minutes before
// it signs anything, longer than validators may cache the JWKS; the JWKS
// holds it, the current key, and every retired key that may have signed a
// token still alive. Private signing keys live in the Store, which the
// SQLite implementation encrypts at rest, or come from PEM files the
// operator provides (Options.SigningKeyFiles, keyfiles.go).
//
// # Management
//
// management.go: ServiceAccountService, KeyService and AccessKeyService.
// They read the caller from interceptors.PrincipalFromContext; the server's
// interceptors put it there. The ownership rule: a caller manages the
// service accounts it created, and a service account its own keys and
// access keys. Private keys and secrets are answered once, at creation.
//
// # Store
//
// store.go defines the Store; MemoryStore is for tests, SQLiteStore for a
// single-host issuer (WAL, synchronous=FULL, migrations, secrets sealed with
// AES-GCM under a data key kept outside the database file). Both implement
// interceptors.AccessKeyStore and interceptors.RevocationList.
package iamserver
