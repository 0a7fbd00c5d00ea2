// Package authmode answers one question for the client and the server alike:
// which credential does a gRPC method take?
//
// # Where the answer comes from
//
// A method's mode is declared once, as a proto option
// (iamtoken.auth.v1.method_auth_mode, else the service's
// iamtoken.auth.v1.service_auth_mode), and read here from the descriptors
// registered in the process. A method that declares nothing, and a method this
// process knows nothing about, requires an IAM token: deny by default.
//
// Services that are not ours carry no options, so a [Resolver] has explicit
// overrides for them. The defaults make the standard gRPC health service and
// server reflection (v1 and v1alpha) [None]; [WithOverride] changes them or
// adds more. An override wins over the descriptors.
//
// # Cost
//
// The first lookup of a registered method reads its descriptor; later lookups
// are one read of a concurrent map with no allocation. Names that match no
// registered method are not remembered, so arbitrary names cannot grow memory.
//
// This package imports neither the client (grpcauth) nor the server
// (interceptors) side: both import it.
package authmode
