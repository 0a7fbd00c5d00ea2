package demo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
)

// MaxObjectSize is the largest object StorageService keeps.
const MaxObjectSize = 16 << 20

// StorageService is the demo's AWS-compatible service: it accepts access keys
// only (by its proto option). Objects are files under a directory, one folder
// per bucket, named by the hex of their key, written atomically.
type StorageService struct {
	demov1.UnimplementedStorageServiceServer
	dir string
}

// NewStorageService keeps objects under dir, creating it if needed.
func NewStorageService(dir string) (*StorageService, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &StorageService{dir: dir}, nil
}

// PutObject stores an object.
func (s *StorageService) PutObject(ctx context.Context, req *demov1.PutObjectRequest) (*demov1.PutObjectResponse, error) {
	if _, err := caller(ctx); err != nil {
		return nil, err
	}
	w, err := s.create(req.GetBucket(), req.GetKey())
	if err != nil {
		return nil, err
	}
	defer w.abort()
	if err := w.write(req.GetData()); err != nil {
		return nil, err
	}
	etag, size, err := w.commit()
	if err != nil {
		return nil, err
	}
	return &demov1.PutObjectResponse{Etag: etag, Size: size}, nil
}

// UploadObject stores an object sent in chunks.
func (s *StorageService) UploadObject(stream grpc.ClientStreamingServer[demov1.UploadObjectRequest, demov1.UploadObjectResponse]) error {
	if _, err := caller(stream.Context()); err != nil {
		return err
	}
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return status.Error(codes.InvalidArgument, "demo: empty upload: the first message must name bucket and key")
	}
	if err != nil {
		return err
	}
	w, err := s.create(first.GetBucket(), first.GetKey())
	if err != nil {
		return err
	}
	defer w.abort()
	for msg := first; ; {
		if err := w.write(msg.GetChunk()); err != nil {
			return err
		}
		msg, err = stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	etag, size, err := w.commit()
	if err != nil {
		return err
	}
	return stream.SendAndClose(&demov1.UploadObjectResponse{Etag: etag, Size: size})
}

// GetObject returns an object.
func (s *StorageService) GetObject(ctx context.Context, req *demov1.GetObjectRequest) (*demov1.GetObjectResponse, error) {
	if _, err := caller(ctx); err != nil {
		return nil, err
	}
	path, err := s.path(req.GetBucket(), req.GetKey())
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, status.Errorf(codes.NotFound, "demo: object %q not found in bucket %q", truncate(req.GetKey()), req.GetBucket())
	}
	if err != nil {
		return nil, status.Error(codes.Internal, "demo: reading the object failed")
	}
	sum := sha256.Sum256(data)
	return &demov1.GetObjectResponse{Data: data, Etag: hex.EncodeToString(sum[:])}, nil
}

// ListObjects returns a bucket's objects in key order.
func (s *StorageService) ListObjects(ctx context.Context, req *demov1.ListObjectsRequest) (*demov1.ListObjectsResponse, error) {
	if _, err := caller(ctx); err != nil {
		return nil, err
	}
	if err := validBucket(req.GetBucket()); err != nil {
		return nil, err
	}
	size, start, err := page(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(s.dir, req.GetBucket()))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, status.Error(codes.Internal, "demo: listing the bucket failed")
	}
	var objs []*demov1.ObjectInfo
	for _, e := range entries {
		raw, err := hex.DecodeString(e.Name())
		if err != nil || !e.Type().IsRegular() {
			continue // temporary files of uploads in progress
		}
		key := string(raw)
		if !strings.HasPrefix(key, req.GetPrefix()) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.dir, req.GetBucket(), e.Name()))
		if err != nil {
			continue
		}
		sum := sha256.Sum256(data)
		objs = append(objs, &demov1.ObjectInfo{Key: key, Size: info.Size(), Etag: hex.EncodeToString(sum[:]), ModifiedAt: timestamppb.New(info.ModTime())})
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key < objs[j].Key })
	resp := &demov1.ListObjectsResponse{}
	if start < len(objs) {
		end := min(start+size, len(objs))
		resp.Objects = objs[start:end]
		if end < len(objs) {
			resp.NextPageToken = strconv.Itoa(end)
		}
	}
	return resp, nil
}

func validBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return status.Error(codes.InvalidArgument, "demo: bucket must be 3–63 characters")
	}
	for _, r := range b {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return status.Error(codes.InvalidArgument, "demo: bucket may hold only lowercase letters, digits, dots and hyphens")
		}
	}
	if b[0] == '.' || b[0] == '-' {
		return status.Error(codes.InvalidArgument, "demo: bucket must start with a letter or digit")
	}
	return nil
}

func (s *StorageService) path(bucket, key string) (string, error) {
	if err := validBucket(bucket); err != nil {
		return "", err
	}
	if key == "" || len(key) > 1024 || !utf8.ValidString(key) {
		return "", status.Error(codes.InvalidArgument, "demo: key must be 1–1024 bytes of UTF-8")
	}
	return filepath.Join(s.dir, bucket, hex.EncodeToString([]byte(key))), nil
}

// objectWriter writes an object to a temporary file and renames it into
// place on commit, so a reader never sees half an object.
type objectWriter struct {
	f      *os.File
	final  string
	sum    hash.Hash
	size   int64
	closed bool
}

func (s *StorageService) create(bucket, key string) (*objectWriter, error) {
	final, err := s.path(bucket, key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return nil, status.Error(codes.Internal, "demo: creating the bucket failed")
	}
	f, err := os.CreateTemp(filepath.Dir(final), ".upload-*")
	if err != nil {
		return nil, status.Error(codes.Internal, "demo: creating the object failed")
	}
	return &objectWriter{f: f, final: final, sum: sha256.New()}, nil
}

func (w *objectWriter) write(p []byte) error {
	if w.size+int64(len(p)) > MaxObjectSize {
		return status.Errorf(codes.ResourceExhausted, "demo: object larger than %d bytes", MaxObjectSize)
	}
	if _, err := w.f.Write(p); err != nil {
		return status.Error(codes.Internal, "demo: writing the object failed")
	}
	w.sum.Write(p)
	w.size += int64(len(p))
	return nil
}

func (w *objectWriter) commit() (etag string, size int64, err error) {
	if err := w.f.Sync(); err != nil {
		return "", 0, status.Error(codes.Internal, "demo: writing the object failed")
	}
	if err := w.f.Close(); err != nil {
		return "", 0, status.Error(codes.Internal, "demo: writing the object failed")
	}
	w.closed = true
	if err := os.Rename(w.f.Name(), w.final); err != nil {
		return "", 0, status.Error(codes.Internal, "demo: storing the object failed")
	}
	return hex.EncodeToString(w.sum.Sum(nil)), w.size, nil
}

// abort removes the temporary file unless commit renamed it.
func (w *objectWriter) abort() {
	if !w.closed {
		w.f.Close()
	}
	os.Remove(w.f.Name()) // after a commit the name no longer exists
}
