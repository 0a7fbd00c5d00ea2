// Package demo is the assembly of the iamtoken-go demo, shared by the two
// binaries (examples/server and examples/client), which cannot import each
// other's main packages.
//
// # The server
//
// Start serves, on one TLS gRPC port, the issuer and its management services
// (iamserver, over a SQLite store in the data directory), ComputeService (IAM
// token) and StorageService (access key only), gRPC health and reflection,
// all behind the library's interceptor chain with every decision logged; and
// on one HTTPS port the REST token exchange and the JWKS that the chain's
// validator reads. On first start it creates a test CA, a demo user's OAuth
// token and a service account with an authorized key file in the data
// directory.
//
// # The walk-through
//
// RunClient goes through the whole flow against a server: an IAM token from
// the key file through the cache, ComputeService calls (unary and a stream),
// an access key made with the token, StorageService calls with the key (unary
// and a client stream), each credential refused where it does not belong,
// and the cache's figures. It fails if any step does not behave as expected.
package demo
