// Package reliability holds no library code: its tests put the client
// (grpcauth), the server's interceptors (interceptors) and the issuer
// (iamserver, through iamtest) together over real loopback sockets and break
// things on purpose, to show what an application sees when the issuer is
// down, the metadata service hangs, the JWKS endpoint is down across a key
// rotation, clocks disagree, and 10,000 calls run through a token refresh and
// a key rotation.
//
// # Where to start
//
// helpers_test.go has the fault injector (faultProxy: a TCP proxy that
// passes, refuses or black-holes connections), the test CA and the server
// under test (a ComputeService behind the real interceptor chain). Each
// *_test.go file is one scenario; docs/readme/reliability-faults.md lists
// what each proves, the figures it printed and the command that reproduces
// it.
package reliability
