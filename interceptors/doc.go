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
package interceptors
