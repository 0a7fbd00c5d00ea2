package authmode

import (
	"fmt"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	authv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/auth/v1"
)

// Services that carry no options of ours but must be reachable without
// credentials: a load balancer probes health with none, and reflection
// describes the API to tools before they have a token.
const (
	HealthService          = "grpc.health.v1.Health"
	ReflectionService      = "grpc.reflection.v1.ServerReflection"
	ReflectionAlphaService = "grpc.reflection.v1alpha.ServerReflection"
	// ReferenceTokenCreate is the reference deployment's token exchange,
	// which an issuer may serve under that name too: like ours, its caller
	// has no token yet.
	ReferenceTokenCreate = "/yandex.cloud.iam.v1.IamTokenService/Create"
)

// Resolver answers the mode of a full method name ("/pkg.Service/Method").
// It is safe for concurrent use.
type Resolver struct {
	// overrides maps a service name or a full method name to its mode; it is
	// written only by New.
	overrides map[string]Mode
	files     *protoregistry.Files

	// cache holds the answers for methods found in files (string → Mode).
	// Its size is bounded by the number of registered methods.
	cache sync.Map
}

// Option configures a Resolver.
type Option func(*Resolver) error

// WithOverride sets the mode of a whole service ("pkg.Service") or of one
// method ("/pkg.Service/Method"), winning over the descriptors. A method
// override wins over a service override.
func WithOverride(name string, m Mode) Option {
	return func(r *Resolver) error {
		if m < IAMToken || m > None {
			return fmt.Errorf("authmode: override for %q: invalid mode %d", name, m)
		}
		if _, _, ok := splitMethod(name); !ok && !validServiceName(name) {
			return fmt.Errorf("authmode: override %q is neither \"pkg.Service\" nor \"/pkg.Service/Method\"", name)
		}
		r.overrides[name] = m
		return nil
	}
}

// WithFiles reads descriptors from files instead of
// protoregistry.GlobalFiles.
func WithFiles(files *protoregistry.Files) Option {
	return func(r *Resolver) error {
		if files == nil {
			return fmt.Errorf("authmode: WithFiles: nil registry")
		}
		r.files = files
		return nil
	}
}

// DefaultOverrides returns the overrides every Resolver starts with: the gRPC
// health and reflection services and the reference deployment's token
// exchange need no credentials.
func DefaultOverrides() map[string]Mode {
	return map[string]Mode{
		HealthService:          None,
		ReflectionService:      None,
		ReflectionAlphaService: None,
		ReferenceTokenCreate:   None,
	}
}

// New returns a Resolver over protoregistry.GlobalFiles with
// DefaultOverrides, changed by opts.
func New(opts ...Option) (*Resolver, error) {
	r := &Resolver{overrides: DefaultOverrides(), files: protoregistry.GlobalFiles}
	for _, o := range opts {
		if err := o(r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

var defaultResolver, _ = New()

// Default returns the Resolver with the default overrides over
// protoregistry.GlobalFiles.
func Default() *Resolver { return defaultResolver }

// Of returns the mode of fullMethod by the Default resolver.
func Of(fullMethod string) Mode { return defaultResolver.Mode(fullMethod) }

// Mode returns the mode of fullMethod: an override of the method, else of its
// service, else the method's option, else its service's option, else
// IAMToken. A malformed or unknown name gets IAMToken.
func (r *Resolver) Mode(fullMethod string) Mode {
	if m, ok := r.cache.Load(fullMethod); ok {
		return m.(Mode)
	}
	m, known := r.resolve(fullMethod)
	if known {
		r.cache.Store(fullMethod, m)
	}
	return m
}

// resolve computes a mode; known reports whether fullMethod is a method of a
// registered service, so that the answer may be cached.
func (r *Resolver) resolve(fullMethod string) (m Mode, known bool) {
	service, method, ok := splitMethod(fullMethod)
	if !ok {
		return IAMToken, false
	}
	if m, ok := r.overrides[fullMethod]; ok {
		return m, false
	}
	if m, ok := r.overrides[service]; ok {
		return m, false
	}
	d, err := r.files.FindDescriptorByName(protoreflect.FullName(service))
	if err != nil {
		return IAMToken, false
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return IAMToken, false
	}
	md := sd.Methods().ByName(protoreflect.Name(method))
	if md == nil {
		return IAMToken, false
	}
	if m, ok := fromProto(proto.GetExtension(md.Options(), authv1.E_MethodAuthMode).(authv1.AuthMode)); ok {
		return m, true
	}
	if m, ok := fromProto(proto.GetExtension(sd.Options(), authv1.E_ServiceAuthMode).(authv1.AuthMode)); ok {
		return m, true
	}
	return IAMToken, true
}

// splitMethod splits "/pkg.Service/Method" into its service and method.
func splitMethod(fullMethod string) (service, method string, ok bool) {
	if !strings.HasPrefix(fullMethod, "/") {
		return "", "", false
	}
	service, method, ok = strings.Cut(fullMethod[1:], "/")
	if !ok || !validServiceName(service) || method == "" || strings.Contains(method, "/") {
		return "", "", false
	}
	return service, method, true
}

func validServiceName(s string) bool {
	return s != "" && !strings.ContainsAny(s, "/ ") && protoreflect.FullName(s).IsValid()
}
