package demo

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/iamtoken/iamtoken-go/interceptors"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
)

// asSubject is a stand-in for the auth interceptors: these tests are about the
// services, which only read the Principal.
func asSubject(subject string) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	p := &interceptors.Principal{SubjectID: subject}
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return h(interceptors.NewContextWithPrincipal(ctx, p), req)
		}, func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, &ctxStream{ss, interceptors.NewContextWithPrincipal(ss.Context(), p)})
		}
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

func serve(t *testing.T, subject string) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	u, s := asSubject(subject)
	srv := grpc.NewServer(grpc.UnaryInterceptor(u), grpc.StreamInterceptor(s))
	storage, err := NewStorageService(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	demov1.RegisterComputeServiceServer(srv, NewComputeService())
	demov1.RegisterStorageServiceServer(srv, storage)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestComputeCreateGetListWatch(t *testing.T) {
	ctx := t.Context()
	c := demov1.NewComputeServiceClient(serve(t, "sa-1"))

	created, err := c.CreateInstance(ctx, &demov1.CreateInstanceRequest{Name: "web-1"})
	if err != nil {
		t.Fatal(err)
	}
	inst := created.GetInstance()
	if inst.GetCreatedBy() != "sa-1" || inst.GetStatus() != demov1.InstanceStatus_INSTANCE_STATUS_RUNNING || inst.GetZoneId() != "ru-central1-a" {
		t.Errorf("created %v", inst)
	}
	got, err := c.GetInstance(ctx, &demov1.GetInstanceRequest{InstanceId: inst.GetId()})
	if err != nil || got.GetInstance().GetName() != "web-1" {
		t.Fatalf("GetInstance = %v, %v", got, err)
	}
	if _, err := c.GetInstance(ctx, &demov1.GetInstanceRequest{InstanceId: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetInstance(nope) code = %v, want NotFound", status.Code(err))
	}

	watchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := c.WatchInstances(watchCtx, &demov1.WatchInstancesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := w.Recv()
	if err != nil || ev.GetType() != demov1.WatchEventType_WATCH_EVENT_TYPE_EXISTING || ev.GetInstance().GetId() != inst.GetId() {
		t.Fatalf("first watch event = %v, %v", ev, err)
	}
	// The watch registers before sending existing instances, so this creation
	// is seen as an event.
	second, err := c.CreateInstance(ctx, &demov1.CreateInstanceRequest{Name: "web-2", ZoneId: "ru-central1-b"})
	if err != nil {
		t.Fatal(err)
	}
	ev, err = w.Recv()
	if err != nil || ev.GetType() != demov1.WatchEventType_WATCH_EVENT_TYPE_CREATED || ev.GetInstance().GetId() != second.GetInstance().GetId() {
		t.Fatalf("second watch event = %v, %v", ev, err)
	}
	cancel()

	list, err := c.ListInstances(ctx, &demov1.ListInstancesRequest{PageSize: 1})
	if err != nil || len(list.GetInstances()) != 1 || list.GetNextPageToken() == "" {
		t.Fatalf("ListInstances page 1 = %v, %v", list, err)
	}
	list2, err := c.ListInstances(ctx, &demov1.ListInstancesRequest{PageSize: 1, PageToken: list.GetNextPageToken()})
	if err != nil || len(list2.GetInstances()) != 1 || list2.GetNextPageToken() != "" {
		t.Fatalf("ListInstances page 2 = %v, %v", list2, err)
	}
}

func TestComputeInvalidInput(t *testing.T) {
	c := demov1.NewComputeServiceClient(serve(t, "sa-1"))
	for _, req := range []*demov1.CreateInstanceRequest{
		{Name: ""}, {Name: "UPPER"}, {Name: strings.Repeat("a", 64)}, {Name: "ok", ZoneId: "bad zone"},
	} {
		if _, err := c.CreateInstance(t.Context(), req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("CreateInstance(%v) code = %v, want InvalidArgument", req, status.Code(err))
		}
	}
	if _, err := c.ListInstances(t.Context(), &demov1.ListInstancesRequest{PageToken: "x"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad page token code = %v, want InvalidArgument", status.Code(err))
	}
}

func TestStoragePutUploadGetList(t *testing.T) {
	ctx := t.Context()
	c := demov1.NewStorageServiceClient(serve(t, "sa-1"))

	put, err := c.PutObject(ctx, &demov1.PutObjectRequest{Bucket: "demo-bucket", Key: "a/hello.txt", Data: []byte("hello")})
	if err != nil || put.GetSize() != 5 {
		t.Fatalf("PutObject = %v, %v", put, err)
	}
	up, err := c.UploadObject(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte("0123456789"), 10000)
	if err := up.Send(&demov1.UploadObjectRequest{Bucket: "demo-bucket", Key: "b/big.bin"}); err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(want); off += 32 << 10 {
		if err := up.Send(&demov1.UploadObjectRequest{Chunk: want[off:min(off+32<<10, len(want))]}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := up.CloseAndRecv()
	if err != nil || res.GetSize() != int64(len(want)) {
		t.Fatalf("UploadObject = %v, %v", res, err)
	}
	got, err := c.GetObject(ctx, &demov1.GetObjectRequest{Bucket: "demo-bucket", Key: "b/big.bin"})
	if err != nil || !bytes.Equal(got.GetData(), want) || got.GetEtag() != res.GetEtag() {
		t.Fatalf("GetObject: err %v, equal %v, etag %q vs %q", err, bytes.Equal(got.GetData(), want), got.GetEtag(), res.GetEtag())
	}
	list, err := c.ListObjects(ctx, &demov1.ListObjectsRequest{Bucket: "demo-bucket"})
	if err != nil || len(list.GetObjects()) != 2 || list.GetObjects()[0].GetKey() != "a/hello.txt" {
		t.Fatalf("ListObjects = %v, %v", list, err)
	}
	list, err = c.ListObjects(ctx, &demov1.ListObjectsRequest{Bucket: "demo-bucket", Prefix: "b/"})
	if err != nil || len(list.GetObjects()) != 1 {
		t.Fatalf("ListObjects(prefix) = %v, %v", list, err)
	}
	if _, err := c.GetObject(ctx, &demov1.GetObjectRequest{Bucket: "demo-bucket", Key: "missing"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetObject(missing) code = %v, want NotFound", status.Code(err))
	}
}

func TestStorageRefusesBadInput(t *testing.T) {
	ctx := t.Context()
	c := demov1.NewStorageServiceClient(serve(t, "sa-1"))
	tests := []struct {
		name     string
		req      *demov1.PutObjectRequest
		wantCode codes.Code
	}{
		{"short bucket", &demov1.PutObjectRequest{Bucket: "ab", Key: "k"}, codes.InvalidArgument},
		{"path in bucket", &demov1.PutObjectRequest{Bucket: "../etc", Key: "k"}, codes.InvalidArgument},
		{"empty key", &demov1.PutObjectRequest{Bucket: "bucket", Key: ""}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.PutObject(ctx, tt.req); status.Code(err) != tt.wantCode {
				t.Errorf("code = %v, want %v", status.Code(err), tt.wantCode)
			}
		})
	}
	// An upload over the size cap is refused and leaves nothing behind.
	up, err := c.UploadObject(ctx)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	_ = up.Send(&demov1.UploadObjectRequest{Bucket: "bucket", Key: "huge"})
	for range MaxObjectSize/len(chunk) + 1 {
		if up.Send(&demov1.UploadObjectRequest{Chunk: chunk}) != nil {
			break
		}
	}
	if _, err := up.CloseAndRecv(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("oversized upload code = %v, want ResourceExhausted", status.Code(err))
	}
	list, err := c.ListObjects(ctx, &demov1.ListObjectsRequest{Bucket: "bucket"})
	if err != nil || len(list.GetObjects()) != 0 {
		t.Errorf("after refused upload ListObjects = %v, %v; want none", list, err)
	}
}
