package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/iamtoken/iamtoken-go/interceptors"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
)

// ComputeService is the demo's ordinary service: it requires an IAM token (by
// its proto option) and keeps instances in memory, each visible only to the
// subject that created it.
type ComputeService struct {
	demov1.UnimplementedComputeServiceServer

	mu        sync.Mutex // guards instances and watchers
	instances map[string]*demov1.Instance
	watchers  map[chan *demov1.WatchInstancesResponse]string // channel → subject
}

// NewComputeService returns an empty ComputeService.
func NewComputeService() *ComputeService {
	return &ComputeService{
		instances: make(map[string]*demov1.Instance),
		watchers:  make(map[chan *demov1.WatchInstancesResponse]string),
	}
}

const (
	defaultPageSize = 100
	maxPageSize     = 1000
	maxNameLen      = 63
)

func caller(ctx context.Context) (string, error) {
	p, ok := interceptors.PrincipalFromContext(ctx)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "demo: no authenticated caller")
	}
	return p.SubjectID, nil
}

// CreateInstance creates a running instance owned by the caller.
func (s *ComputeService) CreateInstance(ctx context.Context, req *demov1.CreateInstanceRequest) (*demov1.CreateInstanceResponse, error) {
	subject, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := validName("name", req.GetName()); err != nil {
		return nil, err
	}
	zone := req.GetZoneId()
	if zone == "" {
		zone = "ru-central1-a"
	}
	if err := validName("zone_id", zone); err != nil {
		return nil, err
	}
	inst := &demov1.Instance{
		Id:        "inst-" + randomID(),
		Name:      req.GetName(),
		ZoneId:    zone,
		Status:    demov1.InstanceStatus_INSTANCE_STATUS_RUNNING,
		CreatedAt: timestamppb.Now(),
		CreatedBy: subject,
	}
	s.mu.Lock()
	s.instances[inst.Id] = inst
	s.notifyLocked(subject, demov1.WatchEventType_WATCH_EVENT_TYPE_CREATED, inst)
	s.mu.Unlock()
	return &demov1.CreateInstanceResponse{Instance: proto.Clone(inst).(*demov1.Instance)}, nil
}

// GetInstance returns one of the caller's instances.
func (s *ComputeService) GetInstance(ctx context.Context, req *demov1.GetInstanceRequest) (*demov1.GetInstanceResponse, error) {
	subject, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	inst, ok := s.instances[req.GetInstanceId()]
	s.mu.Unlock()
	if !ok || inst.CreatedBy != subject {
		return nil, status.Errorf(codes.NotFound, "demo: instance %q not found", truncate(req.GetInstanceId()))
	}
	return &demov1.GetInstanceResponse{Instance: proto.Clone(inst).(*demov1.Instance)}, nil
}

// ListInstances returns the caller's instances in ID order.
func (s *ComputeService) ListInstances(ctx context.Context, req *demov1.ListInstancesRequest) (*demov1.ListInstancesResponse, error) {
	subject, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	size, start, err := page(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	var mine []*demov1.Instance
	for _, inst := range s.instances {
		if inst.CreatedBy == subject {
			mine = append(mine, proto.Clone(inst).(*demov1.Instance))
		}
	}
	s.mu.Unlock()
	sort.Slice(mine, func(i, j int) bool { return mine[i].Id < mine[j].Id })
	resp := &demov1.ListInstancesResponse{}
	if start < len(mine) {
		end := min(start+size, len(mine))
		resp.Instances = mine[start:end]
		if end < len(mine) {
			resp.NextPageToken = strconv.Itoa(end)
		}
	}
	return resp, nil
}

// WatchInstances sends the caller's instances, then each one it creates, until
// the caller cancels.
func (s *ComputeService) WatchInstances(_ *demov1.WatchInstancesRequest, stream grpc.ServerStreamingServer[demov1.WatchInstancesResponse]) error {
	ctx := stream.Context()
	subject, err := caller(ctx)
	if err != nil {
		return err
	}
	ch := make(chan *demov1.WatchInstancesResponse, 64)
	s.mu.Lock()
	var existing []*demov1.Instance
	for _, inst := range s.instances {
		if inst.CreatedBy == subject {
			existing = append(existing, proto.Clone(inst).(*demov1.Instance))
		}
	}
	s.watchers[ch] = subject
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, ch)
		s.mu.Unlock()
	}()

	sort.Slice(existing, func(i, j int) bool { return existing[i].Id < existing[j].Id })
	for _, inst := range existing {
		if err := stream.Send(&demov1.WatchInstancesResponse{Type: demov1.WatchEventType_WATCH_EVENT_TYPE_EXISTING, Instance: inst}); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case ev := <-ch:
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}

// notifyLocked tells the subject's watchers of an event; a watcher too slow to
// keep 64 events buffered misses events rather than stalling the service.
func (s *ComputeService) notifyLocked(subject string, typ demov1.WatchEventType, inst *demov1.Instance) {
	for ch, who := range s.watchers {
		if who != subject {
			continue
		}
		select {
		case ch <- &demov1.WatchInstancesResponse{Type: typ, Instance: proto.Clone(inst).(*demov1.Instance)}:
		default:
		}
	}
}

func validName(field, v string) error {
	if v == "" || len(v) > maxNameLen {
		return status.Errorf(codes.InvalidArgument, "demo: %s must be 1–%d characters", field, maxNameLen)
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return status.Errorf(codes.InvalidArgument, "demo: %s may hold only lowercase letters, digits and hyphens", field)
		}
	}
	return nil
}

func page(pageSize int64, token string) (size, start int, err error) {
	switch {
	case pageSize < 0:
		return 0, 0, status.Error(codes.InvalidArgument, "demo: page_size must not be negative")
	case pageSize == 0:
		size = defaultPageSize
	default:
		size = int(min(pageSize, maxPageSize))
	}
	if token != "" {
		n, err := strconv.Atoi(token)
		if err != nil || n < 0 {
			return 0, 0, status.Error(codes.InvalidArgument, "demo: page_token is not one this server gave")
		}
		start = n
	}
	return size, start, nil
}

func randomID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// truncate keeps an echoed identifier short and valid UTF-8.
func truncate(s string) string {
	const max = 64
	if len(s) <= max && utf8.ValidString(s) {
		return s
	}
	return fmt.Sprintf("%.64q…", s)
}
