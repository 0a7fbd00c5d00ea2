package demo

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/authmode"
	"github.com/iamtoken/iamtoken-go/grpcauth"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

// ClientConfig configures the demo walk-through.
type ClientConfig struct {
	// Addr is the demo server's gRPC address. Required.
	Addr string
	// CAFile is the CA certificate to trust. Required.
	CAFile string
	// KeyFile is the service account's authorized key file. Required.
	KeyFile string
	// Out receives the steps, one line each. Required.
	Out io.Writer
}

// RunClient walks through the whole flow against a demo server: an IAM token
// from a service-account key, ComputeService calls with it, an access key
// made with it, StorageService calls with the access key, each credential
// refused where it does not belong, and the cache's figures. It returns nil
// only if every step behaved as expected.
func RunClient(ctx context.Context, cfg ClientConfig) (err error) {
	if cfg.Addr == "" || cfg.CAFile == "" || cfg.KeyFile == "" || cfg.Out == nil {
		return errors.New("demo: ClientConfig needs Addr, CAFile, KeyFile and Out")
	}
	say := func(format string, args ...any) { fmt.Fprintf(cfg.Out, format+"\n", args...) }
	pool, err := CertPool(cfg.CAFile)
	if err != nil {
		return err
	}
	tlsConfig := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	transport := grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig))

	// 1. An IAM token from the service-account key, through the cache.
	say("1. IAM token from the service-account key %s", cfg.KeyFile)
	keySource, err := grpcauth.ServiceAccountKeySourceFromFile(cfg.KeyFile, &grpcauth.ExchangeOptions{
		Endpoint:  cfg.Addr,
		TLSConfig: tlsConfig,
	})
	if err != nil {
		return err
	}
	defer keySource.Close()
	cache := grpcauth.NewCachedSource(keySource)
	defer cache.Close()
	tok, err := cache.Token(ctx)
	if err != nil {
		return fmt.Errorf("step 1: %w", err)
	}
	say("   got a token for service account %s, valid until %s (%s from now)",
		keySource.Key().ServiceAccountID, tok.Expiry.UTC().Format(time.RFC3339), time.Until(tok.Expiry).Round(time.Minute))

	iamConn, err := grpc.NewClient(cfg.Addr, transport, grpcauth.WithTokenSource(cache))
	if err != nil {
		return err
	}
	defer iamConn.Close()

	// 2. ComputeService, unary and the stream.
	say("2. ComputeService with the IAM token")
	compute := demov1.NewComputeServiceClient(iamConn)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch, err := compute.WatchInstances(watchCtx, &demov1.WatchInstancesRequest{})
	if err != nil {
		return fmt.Errorf("step 2: WatchInstances: %w", err)
	}
	created, err := compute.CreateInstance(ctx, &demov1.CreateInstanceRequest{Name: "demo-vm", ZoneId: "ru-central1-a"})
	if err != nil {
		return fmt.Errorf("step 2: CreateInstance: %w", err)
	}
	say("   CreateInstance: %s %q in %s, %s", created.GetInstance().GetId(), created.GetInstance().GetName(),
		created.GetInstance().GetZoneId(), created.GetInstance().GetStatus())
	got, err := compute.GetInstance(ctx, &demov1.GetInstanceRequest{InstanceId: created.GetInstance().GetId()})
	if err != nil {
		return fmt.Errorf("step 2: GetInstance: %w", err)
	}
	say("   GetInstance: %s created by %s", got.GetInstance().GetId(), got.GetInstance().GetCreatedBy())
	list, err := compute.ListInstances(ctx, &demov1.ListInstancesRequest{})
	if err != nil {
		return fmt.Errorf("step 2: ListInstances: %w", err)
	}
	say("   ListInstances: %d instance(s)", len(list.GetInstances()))
	for {
		ev, err := watch.Recv()
		if err != nil {
			return fmt.Errorf("step 2: WatchInstances: %w", err)
		}
		if ev.GetInstance().GetId() == created.GetInstance().GetId() {
			say("   WatchInstances (server stream): %s %s", ev.GetType(), ev.GetInstance().GetId())
			break
		}
	}
	stopWatch()

	// 3. An access key, made with the IAM token.
	say("3. AccessKeyService.Create with the IAM token")
	ak, err := iamv1.NewAccessKeyServiceClient(iamConn).Create(ctx, &iamv1.AccessKeyServiceCreateRequest{
		ServiceAccountId: keySource.Key().ServiceAccountID, Description: "demo client",
	})
	if err != nil {
		return fmt.Errorf("step 3: %w", err)
	}
	keyID := ak.GetAccessKey().GetKeyId()
	say("   access key %s for %s (its secret is shown once and kept in memory only)", keyID, ak.GetAccessKey().GetServiceAccountId())
	akCreds, err := grpcauth.NewAccessKeyCredentials(keyID, ak.GetSecret())
	if err != nil {
		return err
	}

	// 4. StorageService with the access key.
	say("4. StorageService with the access key")
	akConn, err := grpc.NewClient(cfg.Addr, transport, grpcauth.WithAccessKey(akCreds))
	if err != nil {
		return err
	}
	defer akConn.Close()
	storage := demov1.NewStorageServiceClient(akConn)
	const bucket = "demo-bucket"
	put, err := storage.PutObject(ctx, &demov1.PutObjectRequest{Bucket: bucket, Key: "hello.txt", Data: []byte("hello, world\n")})
	if err != nil {
		return fmt.Errorf("step 4: PutObject: %w", err)
	}
	say("   PutObject hello.txt: %d bytes, etag %.12s…", put.GetSize(), put.GetEtag())
	up, err := storage.UploadObject(ctx)
	if err != nil {
		return fmt.Errorf("step 4: UploadObject: %w", err)
	}
	if err := up.Send(&demov1.UploadObjectRequest{Bucket: bucket, Key: "numbers.txt"}); err != nil {
		return fmt.Errorf("step 4: UploadObject: %w", err)
	}
	for i := range 3 {
		if err := up.Send(&demov1.UploadObjectRequest{Chunk: fmt.Appendf(nil, "chunk %d\n", i)}); err != nil {
			return fmt.Errorf("step 4: UploadObject: %w", err)
		}
	}
	upRes, err := up.CloseAndRecv()
	if err != nil {
		return fmt.Errorf("step 4: UploadObject: %w", err)
	}
	say("   UploadObject numbers.txt (client stream, 3 chunks): %d bytes", upRes.GetSize())
	obj, err := storage.GetObject(ctx, &demov1.GetObjectRequest{Bucket: bucket, Key: "hello.txt"})
	if err != nil {
		return fmt.Errorf("step 4: GetObject: %w", err)
	}
	say("   GetObject hello.txt: %q", obj.GetData())
	objs, err := storage.ListObjects(ctx, &demov1.ListObjectsRequest{Bucket: bucket})
	if err != nil {
		return fmt.Errorf("step 4: ListObjects: %w", err)
	}
	for _, o := range objs.GetObjects() {
		say("   ListObjects: %s (%d bytes)", o.GetKey(), o.GetSize())
	}

	// 5. Each credential where it does not belong. The library never sends
	// them there, so these clients are told the wrong mode on purpose.
	say("5. Each credential where it does not belong")
	wrongIAM, err := authmode.New(authmode.WithOverride("iamtoken.demo.v1.StorageService", authmode.IAMToken))
	if err != nil {
		return err
	}
	wrongIAMConn, err := grpc.NewClient(cfg.Addr, transport,
		grpcauth.WithTokenSource(cache, grpcauth.WithAuthModeResolver(wrongIAM)))
	if err != nil {
		return err
	}
	defer wrongIAMConn.Close()
	_, err = demov1.NewStorageServiceClient(wrongIAMConn).ListObjects(ctx, &demov1.ListObjectsRequest{Bucket: bucket})
	if err := expectRefused(err, "IAM token → StorageService", say); err != nil {
		return err
	}
	wrongAK, err := authmode.New(authmode.WithOverride("iamtoken.demo.v1.ComputeService", authmode.AccessKey))
	if err != nil {
		return err
	}
	wrongAKCreds, err := grpcauth.NewAccessKeyCredentials(keyID, ak.GetSecret(), grpcauth.WithAccessKeyResolver(wrongAK))
	if err != nil {
		return err
	}
	wrongAKConn, err := grpc.NewClient(cfg.Addr, transport, grpcauth.WithAccessKey(wrongAKCreds))
	if err != nil {
		return err
	}
	defer wrongAKConn.Close()
	_, err = demov1.NewComputeServiceClient(wrongAKConn).ListInstances(ctx, &demov1.ListInstancesRequest{})
	if err := expectRefused(err, "access key → ComputeService", say); err != nil {
		return err
	}

	// 6. The cache's figures: never the token.
	st := cache.Stats()
	say("6. Token cache: %d fetch(es), %d background refresh(es), %d failure(s); token expires %s",
		st.Fetches, st.Refreshes, st.Failures, st.Expiry.UTC().Format(time.RFC3339))
	if st.Fetches != 1 {
		return fmt.Errorf("step 6: the cache fetched %d tokens, want 1 for one short session", st.Fetches)
	}
	say("All steps behaved as expected.")
	return nil
}

func expectRefused(err error, what string, say func(string, ...any)) error {
	if status.Code(err) != codes.Unauthenticated {
		return fmt.Errorf("step 5: %s: got %v, want Unauthenticated", what, err)
	}
	say("   %s refused: %s: %s", what, status.Code(err), status.Convert(err).Message())
	return nil
}
