package iamserver

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/interceptors"
)

var (
	errUnauthenticated  = status.Error(codes.Unauthenticated, "iamserver: an IAM token is required")
	errPermissionDenied = status.Error(codes.PermissionDenied, "iamserver: permission denied")
	errInternal         = status.Error(codes.Internal, "iamserver: internal error")
)

// exchangeStatus maps an exchange error to its gRPC status, once, at the
// boundary.
func (s *Server) exchangeStatus(err error) error {
	switch {
	case errors.Is(err, ErrInvalidRequest):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrInvalidCredentials):
		return status.Error(codes.Unauthenticated, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "iamserver: canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "iamserver: deadline exceeded")
	default:
		return s.internal(err)
	}
}

// internal logs err, which never holds a credential, and answers a status
// that tells the client nothing about the server's insides.
func (s *Server) internal(err error) error {
	s.logger.Error("iamserver: internal error", "err", err)
	return errInternal
}

// storeStatus maps a store error of a management call.
func (s *Server) storeStatus(err error, what string) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, "iamserver: "+what+" not found")
	case errors.Is(err, ErrAlreadyExists):
		return status.Error(codes.AlreadyExists, "iamserver: "+what+" already exists")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "iamserver: canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "iamserver: deadline exceeded")
	default:
		return s.internal(err)
	}
}

// authorizeAccount answers the service account named by the request field
// field if the caller manages it: the caller created it, or (with self) the
// caller is the account itself. That is the whole ownership rule: a user
// manages the service accounts it created, a service account its own keys.
func (s *Server) authorizeAccount(ctx context.Context, field, id string, self bool) (*ServiceAccount, error) {
	p, ok := interceptors.PrincipalFromContext(ctx)
	if !ok || p.SubjectID == "" {
		return nil, errUnauthenticated
	}
	if err := checkID(field, id); err != nil {
		return nil, err
	}
	sa, err := s.store.GetServiceAccount(ctx, id)
	if err != nil {
		return nil, s.storeStatus(err, "service account")
	}
	if p.SubjectID == sa.CreatedBy || (self && p.SubjectID == sa.ID) {
		return sa, nil
	}
	return nil, errPermissionDenied
}
