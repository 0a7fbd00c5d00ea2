package demo

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/iamtoken/iamtoken-go/iamserver"
	"github.com/iamtoken/iamtoken-go/interceptors"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

// Files the demo server keeps in its data directory, besides CAFile.
const (
	KeyFile        = "service-account-key.json" // the demo service account's authorized key
	OAuthTokenFile = "demo-user-oauth-token"    // the demo user's OAuth token
	stateFile      = "demo.json"
	dataKeyFile    = "data.key" // encrypts secrets in the database; kept outside it
	dbFile         = "iam.db"
	objectsDir     = "objects"

	// DemoUserID is the user account the demo's OAuth token belongs to.
	DemoUserID = "user-demo"
	// DemoServiceAccountName is the name of the service account made on first start.
	DemoServiceAccountName = "demo-sa"
)

// Config configures the demo server.
type Config struct {
	// DataDir holds everything the server keeps. Required.
	DataDir string
	// GRPCAddr is where gRPC is served (TLS). Optional; "127.0.0.1:0" picks a
	// free loopback port.
	GRPCAddr string
	// HTTPAddr is where the REST token exchange and the JWKS are served
	// (HTTPS). Optional; "127.0.0.1:0" by default.
	HTTPAddr string
	// Logger receives structured logs. Optional; slog.Default().
	Logger *slog.Logger
}

// Server is a running demo server.
type Server struct {
	dir      string
	log      *slog.Logger
	store    *iamserver.SQLiteStore
	issuer   *iamserver.Server
	valid    *interceptors.Validator
	grpcSrv  *grpc.Server
	httpSrv  *http.Server
	grpcLis  net.Listener
	httpLis  net.Listener
	health   *health.Server
	wg       sync.WaitGroup // the two Serve goroutines
	once     sync.Once
	closeErr error

	// ServiceAccountID is the demo service account's ID.
	ServiceAccountID string
}

type state struct {
	ServiceAccountID string `json:"service_account_id"`
}

// Start opens (or on first start creates) the data directory's contents and
// serves gRPC and HTTPS until Shutdown or Close.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.DataDir == "" {
		return nil, errors.New("demo: Config.DataDir is required")
	}
	if cfg.GRPCAddr == "" {
		cfg.GRPCAddr = "127.0.0.1:0"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("demo: data directory: %w", err)
	}
	s := &Server{dir: cfg.DataDir, log: log}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	cert, err := LoadOrCreateCerts(s.dir)
	if err != nil {
		return nil, err
	}
	pool, err := CertPool(s.path(CAFile))
	if err != nil {
		return nil, err
	}
	dataKey, err := iamserver.LoadOrCreateDataKeyFile(s.path(dataKeyFile))
	if err != nil {
		return nil, err
	}
	if s.store, err = iamserver.OpenSQLite(ctx, s.path(dbFile), dataKey); err != nil {
		return nil, err
	}
	oauthToken, err := loadOrCreateSecret(s.path(OAuthTokenFile))
	if err != nil {
		return nil, err
	}
	s.issuer, err = iamserver.New(ctx, iamserver.Options{
		Store:       s.store,
		OAuthTokens: map[string]string{oauthToken: DemoUserID},
		Logger:      log,
	})
	if err != nil {
		return nil, err
	}
	if s.ServiceAccountID, err = s.ensureServiceAccount(ctx); err != nil {
		return nil, err
	}

	// HTTPS first: the validator reads the issuer's keys from it.
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if s.httpLis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("demo: HTTP listener: %w", err)
	}
	s.httpSrv = &http.Server{
		Handler:           s.issuer.HTTPHandler(),
		TLSConfig:         tlsConfig.Clone(), // ServeTLS changes its config
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.httpSrv.ServeTLS(s.httpLis, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTPS server stopped", "err", err)
		}
	}()

	s.valid, err = interceptors.NewValidator(
		interceptors.WithJWKSURL("https://"+s.httpLis.Addr().String()+iamserver.JWKSPath),
		interceptors.WithHTTPClient(&http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		}),
		interceptors.WithRevocationList(s.issuer),
	)
	if err != nil {
		return nil, err
	}
	verifier, err := interceptors.NewAccessKeyVerifier(s.store)
	if err != nil {
		return nil, err
	}
	authOpts := []interceptors.Option{
		interceptors.WithValidator(s.valid),
		interceptors.WithAccessKeyVerifier(verifier),
		interceptors.WithOutcomeHook(s.logOutcome),
	}
	s.grpcSrv = grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsConfig.Clone())),
		grpc.ChainUnaryInterceptor(interceptors.UnaryServerInterceptor(authOpts...)),
		grpc.ChainStreamInterceptor(interceptors.StreamServerInterceptor(authOpts...)),
	)
	s.issuer.Register(s.grpcSrv)
	storage, err := NewStorageService(s.path(objectsDir))
	if err != nil {
		return nil, err
	}
	demov1.RegisterComputeServiceServer(s.grpcSrv, NewComputeService())
	demov1.RegisterStorageServiceServer(s.grpcSrv, storage)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpcSrv, s.health)
	reflection.Register(s.grpcSrv)

	if s.grpcLis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("demo: gRPC listener: %w", err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.grpcSrv.Serve(s.grpcLis); err != nil {
			log.Error("gRPC server stopped", "err", err)
		}
	}()
	log.Info("demo server started",
		"grpc", s.GRPCAddr(), "https", s.HTTPAddr(), "data_dir", s.dir,
		"ca_file", s.path(CAFile), "key_file", s.path(KeyFile), "oauth_token_file", s.path(OAuthTokenFile),
		"service_account_id", s.ServiceAccountID)
	return s, nil
}

// logOutcome logs every authentication decision: never the credential.
func (s *Server) logOutcome(ctx context.Context, o interceptors.Outcome) {
	level := slog.LevelInfo
	if o.Code != codes.OK {
		level = slog.LevelWarn
	}
	attrs := []any{"method", o.FullMethod, "mode", o.Mode.String(), "code", o.Code.String(), "subject", o.Subject}
	if o.Err != nil {
		attrs = append(attrs, "err", o.Err.Error())
	}
	s.log.Log(ctx, level, "auth", attrs...)
}

// ensureServiceAccount makes the demo service account and its authorized key
// file on first start, and checks they are still there on later ones.
func (s *Server) ensureServiceAccount(ctx context.Context) (string, error) {
	var st state
	data, err := os.ReadFile(s.path(stateFile))
	switch {
	case err == nil:
		if err := json.Unmarshal(data, &st); err != nil {
			return "", fmt.Errorf("demo: %s is damaged: %w", stateFile, err)
		}
		if _, err := s.store.GetServiceAccount(ctx, st.ServiceAccountID); err != nil {
			return "", fmt.Errorf("demo: the service account %s recorded in %s: %w", st.ServiceAccountID, stateFile, err)
		}
		if _, err := os.Stat(s.path(KeyFile)); err != nil {
			return "", fmt.Errorf("demo: the key file: %w", err)
		}
		return st.ServiceAccountID, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("demo: reading %s: %w", stateFile, err)
	}

	user := interceptors.NewContextWithPrincipal(ctx, &interceptors.Principal{
		SubjectID: DemoUserID, SubjectType: interceptors.SubjectUserAccount, Method: interceptors.AuthIAMToken,
	})
	sa, err := s.issuer.ServiceAccountService().Create(user, &iamv1.ServiceAccountServiceCreateRequest{
		Name: DemoServiceAccountName, Description: "made by the demo server on first start",
	})
	if err != nil {
		return "", fmt.Errorf("demo: creating the service account: %w", err)
	}
	id := sa.GetServiceAccount().GetId()
	key, err := s.issuer.KeyService().Create(user, &iamv1.KeyServiceCreateRequest{ServiceAccountId: id, Description: "demo key"})
	if err != nil {
		return "", fmt.Errorf("demo: creating the authorized key: %w", err)
	}
	if err := writeFile(s.path(KeyFile), []byte(key.GetAuthorizedKeyJson()), 0o600); err != nil {
		return "", err
	}
	data, err = json.Marshal(state{ServiceAccountID: id})
	if err != nil {
		return "", err
	}
	if err := writeFile(s.path(stateFile), data, 0o600); err != nil {
		return "", err
	}
	return id, nil
}

// loadOrCreateSecret reads a secret from path, or makes a random one and
// writes it there (mode 0600) when the file does not exist.
func loadOrCreateSecret(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		secret := strings.TrimSpace(string(data))
		if secret == "" {
			return "", fmt.Errorf("demo: %s is empty", filepath.Base(path))
		}
		return secret, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("demo: reading %s: %w", filepath.Base(path), err)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	secret := "demo-oauth-" + base64.RawURLEncoding.EncodeToString(b[:])
	return secret, writeFile(path, []byte(secret+"\n"), 0o600)
}

func (s *Server) path(name string) string { return filepath.Join(s.dir, name) }

// GRPCAddr is the address gRPC is served on.
func (s *Server) GRPCAddr() string { return s.grpcLis.Addr().String() }

// HTTPAddr is the address HTTPS is served on.
func (s *Server) HTTPAddr() string { return s.httpLis.Addr().String() }

// DataDir is the data directory.
func (s *Server) DataDir() string { return s.dir }

// CAFile is the path of the CA certificate clients trust.
func (s *Server) CAFile() string { return s.path(CAFile) }

// KeyFile is the path of the demo service account's authorized key file.
func (s *Server) KeyFile() string { return s.path(KeyFile) }

// Shutdown stops taking calls, lets the calls under way finish until ctx
// ends, then closes everything.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.health != nil {
		s.health.Shutdown()
	}
	done := make(chan struct{})
	go func() {
		if s.grpcSrv != nil {
			s.grpcSrv.GracefulStop()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpcSrv.Stop() // ends the streams still open, so GracefulStop returns
		<-done
	}
	if s.httpSrv != nil {
		_ = s.httpSrv.Shutdown(ctx)
	}
	return s.Close()
}

// Close stops serving at once and releases everything.
func (s *Server) Close() error {
	s.once.Do(func() {
		if s.grpcSrv != nil {
			s.grpcSrv.Stop()
		} else if s.grpcLis != nil {
			s.grpcLis.Close()
		}
		if s.httpSrv != nil {
			s.httpSrv.Close()
		} else if s.httpLis != nil {
			s.httpLis.Close()
		}
		s.wg.Wait()
		var errs []error
		if s.valid != nil {
			errs = append(errs, s.valid.Close())
		}
		if s.issuer != nil {
			errs = append(errs, s.issuer.Close())
		}
		if s.store != nil {
			errs = append(errs, s.store.Close())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}
