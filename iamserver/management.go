package iamserver

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/iamtoken/iamtoken-go/interceptors"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

// ServiceAccountService returns the gRPC implementation of
// ServiceAccountService.
func (s *Server) ServiceAccountService() iamv1.ServiceAccountServiceServer {
	return &serviceAccountService{s: s}
}

// KeyService returns the gRPC implementation of KeyService.
func (s *Server) KeyService() iamv1.KeyServiceServer { return &keyService{s: s} }

// AccessKeyService returns the gRPC implementation of AccessKeyService.
func (s *Server) AccessKeyService() iamv1.AccessKeyServiceServer { return &accessKeyService{s: s} }

type serviceAccountService struct {
	iamv1.UnimplementedServiceAccountServiceServer
	s *Server
}

func serviceAccountProto(sa *ServiceAccount) *iamv1.ServiceAccount {
	return &iamv1.ServiceAccount{
		Id: sa.ID, Name: sa.Name, Description: sa.Description,
		CreatedAt: timestamppb.New(sa.CreatedAt), CreatedBy: sa.CreatedBy,
	}
}

func (m *serviceAccountService) Create(ctx context.Context, req *iamv1.ServiceAccountServiceCreateRequest) (*iamv1.ServiceAccountServiceCreateResponse, error) {
	p, ok := interceptors.PrincipalFromContext(ctx)
	if !ok || p.SubjectID == "" {
		return nil, errUnauthenticated
	}
	if err := checkName("name", req.GetName()); err != nil {
		return nil, err
	}
	if err := checkDescription("description", req.GetDescription()); err != nil {
		return nil, err
	}
	id, err := newID(prefixServiceAccount)
	if err != nil {
		return nil, m.s.internal(err)
	}
	sa := &ServiceAccount{
		ID: id, Name: req.GetName(), Description: req.GetDescription(),
		CreatedBy: p.SubjectID, CreatedAt: m.s.now(),
	}
	if err := m.s.store.CreateServiceAccount(ctx, sa); err != nil {
		return nil, m.s.storeStatus(err, "service account")
	}
	return &iamv1.ServiceAccountServiceCreateResponse{ServiceAccount: serviceAccountProto(sa)}, nil
}

func (m *serviceAccountService) Get(ctx context.Context, req *iamv1.ServiceAccountServiceGetRequest) (*iamv1.ServiceAccountServiceGetResponse, error) {
	sa, err := m.s.authorizeAccount(ctx, "service_account_id", req.GetServiceAccountId(), true)
	if err != nil {
		return nil, err
	}
	return &iamv1.ServiceAccountServiceGetResponse{ServiceAccount: serviceAccountProto(sa)}, nil
}

func (m *serviceAccountService) List(ctx context.Context, req *iamv1.ServiceAccountServiceListRequest) (*iamv1.ServiceAccountServiceListResponse, error) {
	p, ok := interceptors.PrincipalFromContext(ctx)
	if !ok || p.SubjectID == "" {
		return nil, errUnauthenticated
	}
	list, next, err := listPage(ctx, m.s, "service account", req.GetPageSize(), req.GetPageToken(),
		func(ctx context.Context, pg Page) ([]*ServiceAccount, error) {
			return m.s.store.ListServiceAccounts(ctx, p.SubjectID, pg)
		},
		func(sa *ServiceAccount) string { return sa.ID }, serviceAccountProto)
	if err != nil {
		return nil, err
	}
	return &iamv1.ServiceAccountServiceListResponse{ServiceAccounts: list, NextPageToken: next}, nil
}

func (m *serviceAccountService) Delete(ctx context.Context, req *iamv1.ServiceAccountServiceDeleteRequest) (*iamv1.ServiceAccountServiceDeleteResponse, error) {
	// Only the creator: an account cannot delete itself and so lock its
	// owner out of cleaning up after it.
	sa, err := m.s.authorizeAccount(ctx, "service_account_id", req.GetServiceAccountId(), false)
	if err != nil {
		return nil, err
	}
	if err := m.s.store.DeleteServiceAccount(ctx, sa.ID); err != nil {
		return nil, m.s.storeStatus(err, "service account")
	}
	return &iamv1.ServiceAccountServiceDeleteResponse{}, nil
}

type keyService struct {
	iamv1.UnimplementedKeyServiceServer
	s *Server
}

func keyProto(k *AuthorizedKey) *iamv1.Key {
	alg := iamv1.KeyAlgorithm_KEY_ALGORITHM_RSA_2048
	if k.Algorithm == "RSA_4096" {
		alg = iamv1.KeyAlgorithm_KEY_ALGORITHM_RSA_4096
	}
	return &iamv1.Key{
		Id: k.ID, ServiceAccountId: k.ServiceAccountID, CreatedAt: timestamppb.New(k.CreatedAt),
		Description: k.Description, KeyAlgorithm: alg, PublicKey: k.PublicKeyPEM,
	}
}

// AuthorizedKeyFile is the JSON file of an authorized key, as the reference
// deployment's console and CLI save it and the client's key-file source
// reads it.
type AuthorizedKeyFile struct {
	ID               string `json:"id"`
	ServiceAccountID string `json:"service_account_id"`
	CreatedAt        string `json:"created_at"`
	Description      string `json:"description,omitempty"`
	KeyAlgorithm     string `json:"key_algorithm"`
	PublicKey        string `json:"public_key"`
	// PrivateKey is PKCS #8 PEM. It never appears in String.
	PrivateKey string `json:"private_key"`
}

// String describes the key file without its private key.
func (f *AuthorizedKeyFile) String() string {
	if f == nil {
		return "iamserver.AuthorizedKeyFile(nil)"
	}
	return "iamserver.AuthorizedKeyFile{ID: " + f.ID + ", ServiceAccountID: " + f.ServiceAccountID + ", PrivateKey: [redacted]}"
}

// GoString is String, so that %#v redacts the private key too.
func (f *AuthorizedKeyFile) GoString() string { return f.String() }

// CreateAuthorizedKey generates an RSA key pair for a service account,
// stores its public half and answers the key file with the private half.
// The KeyService calls it once the caller is authorized; the Go API trusts
// its caller. bits is 2048 or 4096.
func (s *Server) CreateAuthorizedKey(ctx context.Context, serviceAccountID, description string, bits int) (*AuthorizedKey, *AuthorizedKeyFile, error) {
	alg := map[int]string{2048: "RSA_2048", 4096: "RSA_4096"}[bits]
	if alg == "" {
		return nil, nil, fmt.Errorf("iamserver: key size %d bits: want 2048 or 4096", bits)
	}
	priv, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	id, err := newID(prefixAuthorizedKey)
	if err != nil {
		return nil, nil, err
	}
	k := &AuthorizedKey{
		ID: id, ServiceAccountID: serviceAccountID, Description: description, Algorithm: alg,
		PublicKeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})),
		CreatedAt:    s.now(),
	}
	if err := s.store.CreateAuthorizedKey(ctx, k); err != nil {
		return nil, nil, err
	}
	return k, &AuthorizedKeyFile{
		ID: k.ID, ServiceAccountID: k.ServiceAccountID, CreatedAt: k.CreatedAt.Format(time.RFC3339Nano),
		Description: k.Description, KeyAlgorithm: alg, PublicKey: k.PublicKeyPEM,
		PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})),
	}, nil
}

func (m *keyService) Create(ctx context.Context, req *iamv1.KeyServiceCreateRequest) (*iamv1.KeyServiceCreateResponse, error) {
	sa, err := m.s.authorizeAccount(ctx, "service_account_id", req.GetServiceAccountId(), true)
	if err != nil {
		return nil, err
	}
	if err := checkDescription("description", req.GetDescription()); err != nil {
		return nil, err
	}
	var bits int
	switch req.GetKeyAlgorithm() {
	case iamv1.KeyAlgorithm_KEY_ALGORITHM_UNSPECIFIED, iamv1.KeyAlgorithm_KEY_ALGORITHM_RSA_2048:
		bits = 2048
	case iamv1.KeyAlgorithm_KEY_ALGORITHM_RSA_4096:
		bits = 4096
	default:
		return nil, invalidArgument("key_algorithm", "unknown algorithm")
	}
	k, file, err := m.s.CreateAuthorizedKey(ctx, sa.ID, req.GetDescription(), bits)
	if err != nil {
		return nil, m.s.storeStatus(err, "service account")
	}
	js, err := json.MarshalIndent(file, "", "  ")
	if err != nil {
		return nil, m.s.internal(err)
	}
	return &iamv1.KeyServiceCreateResponse{Key: keyProto(k), PrivateKey: file.PrivateKey, AuthorizedKeyJson: string(js)}, nil
}

func (m *keyService) List(ctx context.Context, req *iamv1.KeyServiceListRequest) (*iamv1.KeyServiceListResponse, error) {
	sa, err := m.s.authorizeAccount(ctx, "service_account_id", req.GetServiceAccountId(), true)
	if err != nil {
		return nil, err
	}
	list, next, err := listPage(ctx, m.s, "key", req.GetPageSize(), req.GetPageToken(),
		func(ctx context.Context, pg Page) ([]*AuthorizedKey, error) {
			return m.s.store.ListAuthorizedKeys(ctx, sa.ID, pg)
		},
		func(k *AuthorizedKey) string { return k.ID }, keyProto)
	if err != nil {
		return nil, err
	}
	return &iamv1.KeyServiceListResponse{Keys: list, NextPageToken: next}, nil
}

func (m *keyService) Delete(ctx context.Context, req *iamv1.KeyServiceDeleteRequest) (*iamv1.KeyServiceDeleteResponse, error) {
	err := deleteOwned(ctx, m.s, "key_id", req.GetKeyId(), "key", m.s.store.GetAuthorizedKey,
		func(k *AuthorizedKey) string { return k.ServiceAccountID }, m.s.store.DeleteAuthorizedKey)
	if err != nil {
		return nil, err
	}
	return &iamv1.KeyServiceDeleteResponse{}, nil
}

type accessKeyService struct {
	iamv1.UnimplementedAccessKeyServiceServer
	s *Server
}

func accessKeyProto(k *AccessKeyRecord) *iamv1.AccessKey {
	return &iamv1.AccessKey{
		Id: k.ID, ServiceAccountId: k.ServiceAccountID, CreatedAt: timestamppb.New(k.CreatedAt),
		Description: k.Description, KeyId: k.KeyID,
		LastUsedAt: lastUsedProto(k.LastUsedAt),
	}
}

func lastUsedProto(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// CreateAccessKey makes a static access key for a service account and
// answers it with its secret, the only time the secret is shown. The
// AccessKeyService calls it once the caller is authorized.
func (s *Server) CreateAccessKey(ctx context.Context, serviceAccountID, description string) (*AccessKeyRecord, error) {
	id, err := newID(prefixAccessKey)
	if err != nil {
		return nil, err
	}
	keyID, err := newAccessKeyID()
	if err != nil {
		return nil, err
	}
	secret, err := newAccessKeySecret()
	if err != nil {
		return nil, err
	}
	k := &AccessKeyRecord{
		ID: id, KeyID: keyID, ServiceAccountID: serviceAccountID, Description: description,
		Secret: []byte(secret), CreatedAt: s.now(),
	}
	if err := s.store.CreateAccessKey(ctx, k); err != nil {
		return nil, err
	}
	return k, nil
}

func (m *accessKeyService) Create(ctx context.Context, req *iamv1.AccessKeyServiceCreateRequest) (*iamv1.AccessKeyServiceCreateResponse, error) {
	sa, err := m.s.authorizeAccount(ctx, "service_account_id", req.GetServiceAccountId(), true)
	if err != nil {
		return nil, err
	}
	if err := checkDescription("description", req.GetDescription()); err != nil {
		return nil, err
	}
	k, err := m.s.CreateAccessKey(ctx, sa.ID, req.GetDescription())
	if err != nil {
		return nil, m.s.storeStatus(err, "service account")
	}
	return &iamv1.AccessKeyServiceCreateResponse{AccessKey: accessKeyProto(k), Secret: string(k.Secret)}, nil
}

func (m *accessKeyService) List(ctx context.Context, req *iamv1.AccessKeyServiceListRequest) (*iamv1.AccessKeyServiceListResponse, error) {
	sa, err := m.s.authorizeAccount(ctx, "service_account_id", req.GetServiceAccountId(), true)
	if err != nil {
		return nil, err
	}
	list, next, err := listPage(ctx, m.s, "access key", req.GetPageSize(), req.GetPageToken(),
		func(ctx context.Context, pg Page) ([]*AccessKeyRecord, error) {
			return m.s.store.ListAccessKeys(ctx, sa.ID, pg)
		},
		func(k *AccessKeyRecord) string { return k.ID }, accessKeyProto)
	if err != nil {
		return nil, err
	}
	return &iamv1.AccessKeyServiceListResponse{AccessKeys: list, NextPageToken: next}, nil
}

func (m *accessKeyService) Delete(ctx context.Context, req *iamv1.AccessKeyServiceDeleteRequest) (*iamv1.AccessKeyServiceDeleteResponse, error) {
	err := deleteOwned(ctx, m.s, "access_key_id", req.GetAccessKeyId(), "access key", m.s.store.GetAccessKey,
		func(k *AccessKeyRecord) string { return k.ServiceAccountID }, m.s.store.DeleteAccessKey)
	if err != nil {
		return nil, err
	}
	return &iamv1.AccessKeyServiceDeleteResponse{}, nil
}

// listPage reads one page of records with list and answers them as protos
// with the next page's token: the List methods differ only in the store
// call and the message.
func listPage[R, P any](ctx context.Context, s *Server, what string, pageSize int64, token string,
	list func(context.Context, Page) ([]R, error), id func(R) string, toProto func(R) P) ([]P, string, error) {
	pg, err := checkPage(pageSize, token)
	if err != nil {
		return nil, "", err
	}
	records, err := list(ctx, pg)
	if err != nil {
		return nil, "", s.storeStatus(err, what)
	}
	var out []P
	for _, r := range records {
		out = append(out, toProto(r))
	}
	next := ""
	if len(records) > 0 {
		next = nextPageToken(len(records), pg, id(records[len(records)-1]))
	}
	return out, next, nil
}

// deleteOwned deletes a service account's key or access key, named by the
// request field, once the caller is found to manage that account.
func deleteOwned[R any](ctx context.Context, s *Server, field, id, what string,
	get func(context.Context, string) (R, error), owner func(R) string, del func(context.Context, string) error) error {
	if _, ok := interceptors.PrincipalFromContext(ctx); !ok {
		return errUnauthenticated
	}
	if err := checkID(field, id); err != nil {
		return err
	}
	r, err := get(ctx, id)
	if err != nil {
		return s.storeStatus(err, what)
	}
	if _, err := s.authorizeAccount(ctx, "service_account_id", owner(r), true); err != nil {
		return err
	}
	if err := del(ctx, id); err != nil {
		return s.storeStatus(err, what)
	}
	return nil
}
