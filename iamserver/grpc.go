package iamserver

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/iamtoken/iamtoken-go/interceptors"
	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

// ReferenceTokenServiceName is the reference deployment's name of the token
// service. The issuer serves IamTokenService under it too, so that that
// cloud's SDKs obtain tokens from it unchanged: the messages have the same
// field numbers.
const ReferenceTokenServiceName = "yandex.cloud.iam.v1.IamTokenService"

// Register registers every service of the issuer on r: IamTokenService
// under its own name and under ReferenceTokenServiceName, and the
// management services. The management services and CreateForServiceAccount
// and Revoke need the server's interceptors to have put the caller's
// interceptors.Principal in the context.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	ts := s.IamTokenService()
	iamv1.RegisterIamTokenServiceServer(r, ts)
	r.RegisterService(ReferenceTokenServiceDesc(), ts)
	iamv1.RegisterServiceAccountServiceServer(r, s.ServiceAccountService())
	iamv1.RegisterKeyServiceServer(r, s.KeyService())
	iamv1.RegisterAccessKeyServiceServer(r, s.AccessKeyService())
}

// ReferenceTokenServiceDesc returns a copy of IamTokenService's service
// description named ReferenceTokenServiceName. Its handlers report the
// alias's own method names to interceptors (the generated ones would report
// /iamtoken.iam.v1.IamTokenService/…), so that a policy sees the path the
// client actually called.
func ReferenceTokenServiceDesc() *grpc.ServiceDesc {
	desc := iamv1.IamTokenService_ServiceDesc
	desc.ServiceName = ReferenceTokenServiceName
	full := func(m string) string { return "/" + ReferenceTokenServiceName + "/" + m }
	desc.Methods = []grpc.MethodDesc{
		{MethodName: "Create", Handler: aliasHandler(full("Create"), iamv1.IamTokenServiceServer.Create)},
		{MethodName: "CreateForServiceAccount", Handler: aliasHandler(full("CreateForServiceAccount"), iamv1.IamTokenServiceServer.CreateForServiceAccount)},
		{MethodName: "Revoke", Handler: aliasHandler(full("Revoke"), iamv1.IamTokenServiceServer.Revoke)},
	}
	return &desc
}

// aliasHandler is what protoc-gen-go-grpc generates for a unary method, with
// fullMethod as the name interceptors see.
func aliasHandler[Req, Resp any](fullMethod string, call func(iamv1.IamTokenServiceServer, context.Context, *Req) (*Resp, error)) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		in := new(Req)
		if err := dec(in); err != nil {
			return nil, err
		}
		ts := srv.(iamv1.IamTokenServiceServer)
		if interceptor == nil {
			return call(ts, ctx, in)
		}
		info := &grpc.UnaryServerInfo{Server: srv, FullMethod: fullMethod}
		return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
			return call(ts, ctx, req.(*Req))
		})
	}
}

// IamTokenService returns the gRPC implementation of IamTokenService.
func (s *Server) IamTokenService() iamv1.IamTokenServiceServer { return &tokenService{s: s} }

type tokenService struct {
	iamv1.UnimplementedIamTokenServiceServer
	s *Server
}

func (t *tokenService) Create(ctx context.Context, req *iamv1.IamTokenServiceCreateRequest) (*iamv1.IamTokenServiceCreateResponse, error) {
	var (
		tok IssuedToken
		err error
	)
	switch id := req.GetIdentity().(type) {
	case *iamv1.IamTokenServiceCreateRequest_Jwt:
		tok, err = t.s.ExchangeJWT(ctx, id.Jwt)
	case *iamv1.IamTokenServiceCreateRequest_OauthToken:
		tok, err = t.s.ExchangeOAuthToken(ctx, id.OauthToken)
	default:
		return nil, status.Error(codes.InvalidArgument, "iamserver: identity: one of jwt or oauth_token is required")
	}
	if err != nil {
		return nil, t.s.exchangeStatus(err)
	}
	return &iamv1.IamTokenServiceCreateResponse{IamToken: tok.Value, ExpiresAt: timestamppb.New(tok.ExpiresAt)}, nil
}

func (t *tokenService) CreateForServiceAccount(ctx context.Context, req *iamv1.IamTokenServiceCreateForServiceAccountRequest) (*iamv1.IamTokenServiceCreateForServiceAccountResponse, error) {
	sa, err := t.s.authorizeAccount(ctx, "service_account_id", req.GetServiceAccountId(), true)
	if err != nil {
		return nil, err
	}
	tok, err := t.s.IssueToken(sa.ID, iamjwt.SubjectServiceAccount)
	if err != nil {
		return nil, t.s.internal(err)
	}
	return &iamv1.IamTokenServiceCreateForServiceAccountResponse{IamToken: tok.Value, ExpiresAt: timestamppb.New(tok.ExpiresAt)}, nil
}

func (t *tokenService) Revoke(ctx context.Context, req *iamv1.IamTokenServiceRevokeRequest) (*iamv1.IamTokenServiceRevokeResponse, error) {
	p, ok := interceptors.PrincipalFromContext(ctx)
	if !ok {
		return nil, errUnauthenticated
	}
	if req.GetIamToken() == "" {
		return nil, status.Error(codes.InvalidArgument, "iamserver: iam_token: required")
	}
	claims, err := t.s.verifyIssuedToken(req.GetIamToken())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if claims.Subject != p.SubjectID {
		// Besides the subject, whoever manages it (the creator of a service
		// account) may revoke its tokens. Users manage no one.
		if !validID(claims.Subject) {
			return nil, errPermissionDenied
		}
		if _, err := t.s.authorizeAccount(ctx, "iam_token", claims.Subject, false); err != nil {
			if status.Code(err) == codes.NotFound {
				return nil, errPermissionDenied
			}
			return nil, err
		}
	}
	if err := t.s.store.Revoke(ctx, claims.ID, claims.ExpiresAt.Time); err != nil {
		return nil, t.s.internal(err)
	}
	return &iamv1.IamTokenServiceRevokeResponse{SubjectId: claims.Subject}, nil
}
