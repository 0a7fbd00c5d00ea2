package interceptors

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/authmode"
)

// UnaryServerInterceptor returns a unary interceptor that gives each call
// the check of its method's auth mode: an IAM token for IAMToken methods
// (and every unknown method), the AccessKeyVerifier for AccessKey methods,
// none for None methods. An authenticated caller's Principal is in the
// handler's context.
//
// It is go-grpc-middleware's auth interceptor behind its selector, which
// skips None methods; as with any auth interceptor, a service implementing
// auth.ServiceAuthFuncOverride replaces the check with its own.
//
// Tokens are checked by the Validator given with WithValidator, or else by
// one built from the options, which then need WithStaticKeys: a JWKS
// Validator must be closed, so build it with NewValidator. It panics on
// invalid options, at setup, so that a server that cannot check credentials
// never starts.
//
// The Principal in the context is shared by every call with the same token:
// treat it as read-only.
func UnaryServerInterceptor(opts ...Option) grpc.UnaryServerInterceptor {
	s := mustNewServer(opts)
	return selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(s.authenticate), selector.MatchFunc(s.needsCredentials))
}

// StreamServerInterceptor is UnaryServerInterceptor for streams. The
// handler's stream returns the Principal's context from Context().
func StreamServerInterceptor(opts ...Option) grpc.StreamServerInterceptor {
	s := mustNewServer(opts)
	return selector.StreamServerInterceptor(auth.StreamServerInterceptor(s.authenticate), selector.MatchFunc(s.needsCredentials))
}

// Outcome is what the interceptors decided for one call that needs
// credentials. It never holds the credential.
type Outcome struct {
	// FullMethod is the called method, "/pkg.Service/Method".
	FullMethod string
	// Mode is the method's auth mode.
	Mode authmode.Mode
	// Code is codes.OK for an accepted call, else the code of the refusal.
	Code codes.Code
	// Subject is the caller's subject ID once it authenticated (also when the
	// authorizer then refused), else "".
	Subject string
	// Err is the refusal (a gRPC status error), nil for an accepted call. Its
	// message never holds a credential.
	Err error
}

// server is the configuration both interceptors close over.
type server struct {
	validator         *Validator
	resolver          *authmode.Resolver
	accessKeys        AccessKeyVerifier
	hook              func(context.Context, Outcome)
	authorizer        func(ctx context.Context, fullMethod string, p *Principal) error
	insecureTransport bool
}

func mustNewServer(opts []Option) *server {
	s, err := newServer(opts)
	if err != nil {
		panic(err)
	}
	return s
}

func newServer(opts []Option) (*server, error) {
	o := newOptions(opts)
	if err := errors.Join(o.errs...); err != nil {
		return nil, err
	}
	v := o.validator
	if v == nil {
		if o.jwksURL != "" {
			return nil, errors.New("interceptors: WithJWKSURL needs a Validator that can be closed: use NewValidator and WithValidator")
		}
		var err error
		if v, err = NewValidator(opts...); err != nil {
			return nil, err
		}
	} else if len(o.validation) > 0 {
		// The Validator was configured when it was made: an option here would
		// be ignored, and an ignored WithRevocationList fails open.
		return nil, fmt.Errorf("interceptors: with WithValidator, pass %s to NewValidator instead", strings.Join(o.validation, ", "))
	}
	return &server{
		validator:         v,
		resolver:          o.resolver,
		accessKeys:        o.accessKeys,
		hook:              o.hook,
		authorizer:        o.authorizer,
		insecureTransport: o.insecureTransport,
	}, nil
}

// fullMethod returns the call's method. The server puts its transport
// stream in every handler's context; the selector's CallMeta spells the name
// only with an allocation.
func fullMethod(ctx context.Context, meta interceptors.CallMeta) string {
	if m, ok := grpc.Method(ctx); ok {
		return m
	}
	return meta.FullMethod()
}

func (s *server) needsCredentials(ctx context.Context, meta interceptors.CallMeta) bool {
	return s.resolver.Mode(fullMethod(ctx, meta)) != authmode.None
}

// authenticate is the auth.AuthFunc: the check of the call's mode, the
// authorizer, the outcome hook.
func (s *server) authenticate(ctx context.Context) (context.Context, error) {
	// Without a method name (no transport stream) the resolver answers
	// IAMToken: deny by default.
	method, _ := grpc.Method(ctx)
	mode := s.resolver.Mode(method)
	var (
		p   *Principal
		err error
	)
	if mode == authmode.AccessKey {
		p, err = s.checkAccessKey(ctx, method)
	} else {
		p, err = s.checkIAMToken(ctx)
	}
	if err == nil && s.authorizer != nil {
		err = authorizeError(s.authorizer(ctx, method, p))
	}
	if s.hook != nil {
		o := Outcome{FullMethod: method, Mode: mode, Code: status.Code(err), Err: err}
		if p != nil {
			o.Subject = p.SubjectID
		}
		s.hook(ctx, o)
	}
	if err != nil {
		return nil, err
	}
	return NewContextWithPrincipal(ctx, p), nil
}

func authorizeError(err error) error {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok {
		if st.Code() == codes.OK {
			return status.Error(codes.PermissionDenied, "interceptors: authorizer refused with code OK")
		}
		return err
	}
	return status.Error(codes.PermissionDenied, err.Error())
}

func (s *server) checkIAMToken(ctx context.Context) (*Principal, error) {
	values := metadata.ValueFromIncomingContext(ctx, "authorization")
	switch len(values) {
	case 0:
		return nil, status.Error(codes.Unauthenticated, msgNoCredentials)
	case 1:
	default:
		return nil, status.Error(codes.Unauthenticated, msgManyAuthorization)
	}
	scheme, token := parseAuthorization(values[0])
	switch scheme {
	case schemeBearer:
		if isAccessKeyID(token) {
			return nil, status.Error(codes.Unauthenticated, msgAccessKeyToIAM)
		}
	case schemeSigV4:
		return nil, status.Error(codes.Unauthenticated, msgAccessKeyToIAM)
	case schemeEmptyBearer:
		return nil, status.Error(codes.Unauthenticated, msgEmptyBearer)
	default:
		return nil, status.Error(codes.Unauthenticated, msgBadScheme)
	}
	// Checked before the token is: a token that crossed in clear is refused
	// whatever it is.
	if !s.insecureTransport && !transportSecure(ctx) {
		return nil, status.Error(codes.Unauthenticated, msgInsecure)
	}
	p, err := s.validator.Validate(ctx, token)
	if err != nil {
		return nil, tokenStatus(err)
	}
	return p, nil
}

func (s *server) checkAccessKey(ctx context.Context, method string) (*Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	if len(values) > 1 {
		return nil, status.Error(codes.Unauthenticated, msgManyAuthorization)
	}
	if len(values) == 1 {
		// A bearer token here is refused unread: never validated, never
		// passed on.
		if scheme, _ := parseAuthorization(values[0]); scheme == schemeBearer || scheme == schemeEmptyBearer {
			return nil, status.Error(codes.Unauthenticated, msgIAMToAccessKey)
		}
	}
	if s.accessKeys == nil {
		return nil, status.Error(codes.Unauthenticated, msgNoVerifier)
	}
	// The signature does not cover the message (UNSIGNED-PAYLOAD: call
	// credentials never see it), so only transport security keeps a body
	// from being changed under a valid signature.
	if !s.insecureTransport && !transportSecure(ctx) {
		return nil, status.Error(codes.Unauthenticated, msgInsecureAccessKey)
	}
	var authority string
	if a := md.Get(":authority"); len(a) == 1 {
		authority = a[0]
	}
	p, err := s.accessKeys.VerifyAccessKey(ctx, method, authority, md)
	switch {
	case err != nil:
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		return nil, status.Error(codes.Unauthenticated, fmt.Sprintf("interceptors: access key refused: %v", err))
	case p == nil:
		return nil, status.Error(codes.Internal, "interceptors: access-key verifier returned no principal")
	}
	return p, nil
}

// transportSecure reports whether the call came over a connection with
// privacy and integrity (TLS, ALTS, local credentials over a Unix socket).
// Unlike credentials.CheckSecurityLevel it treats an AuthInfo that does not
// tell its level as insecure.
func transportSecure(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return false
	}
	ci, ok := p.AuthInfo.(interface {
		GetCommonAuthInfo() credentials.CommonAuthInfo
	})
	return ok && ci.GetCommonAuthInfo().SecurityLevel == credentials.PrivacyAndIntegrity
}

type scheme uint8

const (
	schemeOther scheme = iota
	schemeBearer
	schemeEmptyBearer
	schemeSigV4
)

// parseAuthorization splits an authorization value into its scheme and, for
// Bearer, the token. Scheme names are case-insensitive (RFC 9110 11.1).
func parseAuthorization(v string) (scheme, string) {
	const bearer, sigV4 = "Bearer", "AWS4-HMAC-SHA256"
	name, rest, _ := strings.Cut(v, " ")
	switch {
	case strings.EqualFold(name, bearer):
		if rest == "" {
			return schemeEmptyBearer, ""
		}
		return schemeBearer, rest
	case strings.EqualFold(name, sigV4):
		return schemeSigV4, ""
	default:
		return schemeOther, ""
	}
}

// isAccessKeyID reports whether a bearer credential is an access key ID
// (YCAJ…), which an IAM token never is.
func isAccessKeyID(s string) bool {
	return len(s) > 4 && s[:4] == "YCAJ" && !strings.Contains(s, ".")
}
