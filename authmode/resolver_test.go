package authmode_test

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/iamtoken/iamtoken-go/authmode"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

func TestModeOfDeclaredMethods(t *testing.T) {
	// Every method of our services, by the generated full-method constants, so
	// that a method added to a proto without a row here fails
	// TestEveryRegisteredMethodHasARow.
	want := map[string]authmode.Mode{
		iamv1.IamTokenService_Create_FullMethodName:                  authmode.None,
		iamv1.IamTokenService_CreateForServiceAccount_FullMethodName: authmode.IAMToken,
		iamv1.IamTokenService_Revoke_FullMethodName:                  authmode.IAMToken,
		iamv1.ServiceAccountService_Create_FullMethodName:            authmode.IAMToken,
		iamv1.ServiceAccountService_Get_FullMethodName:               authmode.IAMToken,
		iamv1.ServiceAccountService_List_FullMethodName:              authmode.IAMToken,
		iamv1.ServiceAccountService_Delete_FullMethodName:            authmode.IAMToken,
		iamv1.KeyService_Create_FullMethodName:                       authmode.IAMToken,
		iamv1.KeyService_List_FullMethodName:                         authmode.IAMToken,
		iamv1.KeyService_Delete_FullMethodName:                       authmode.IAMToken,
		iamv1.AccessKeyService_Create_FullMethodName:                 authmode.IAMToken,
		iamv1.AccessKeyService_List_FullMethodName:                   authmode.IAMToken,
		iamv1.AccessKeyService_Delete_FullMethodName:                 authmode.IAMToken,
		demov1.ComputeService_CreateInstance_FullMethodName:          authmode.IAMToken,
		demov1.ComputeService_GetInstance_FullMethodName:             authmode.IAMToken,
		demov1.ComputeService_ListInstances_FullMethodName:           authmode.IAMToken,
		demov1.ComputeService_WatchInstances_FullMethodName:          authmode.IAMToken,
		demov1.StorageService_PutObject_FullMethodName:               authmode.AccessKey,
		demov1.StorageService_GetObject_FullMethodName:               authmode.AccessKey,
		demov1.StorageService_ListObjects_FullMethodName:             authmode.AccessKey,
		demov1.StorageService_UploadObject_FullMethodName:            authmode.AccessKey,
	}
	for method, wantMode := range want {
		t.Run(method, func(t *testing.T) {
			// Twice: the second answer comes from the cache.
			for i := range 2 {
				if got := authmode.Of(method); got != wantMode {
					t.Errorf("lookup %d: Of(%q) = %v, want %v", i, method, got, wantMode)
				}
			}
		})
	}

	// Every method registered under our proto packages must have a row above.
	for _, svc := range ourServices(t) {
		methods := svc.Methods()
		for i := range methods.Len() {
			name := "/" + string(svc.FullName()) + "/" + string(methods.Get(i).Name())
			if _, ok := want[name]; !ok {
				t.Errorf("method %s has no expected mode in this test", name)
			}
		}
	}
}

func ourServices(t *testing.T) []protoreflect.ServiceDescriptor {
	t.Helper()
	var out []protoreflect.ServiceDescriptor
	for _, pkg := range []protoreflect.FullName{"iamtoken.iam.v1", "iamtoken.demo.v1"} {
		protoregistry.GlobalFiles.RangeFilesByPackage(pkg, func(fd protoreflect.FileDescriptor) bool {
			for i := range fd.Services().Len() {
				out = append(out, fd.Services().Get(i))
			}
			return true
		})
	}
	if len(out) != 6 {
		t.Fatalf("found %d services in our packages, want 6", len(out))
	}
	return out
}

func TestModeOfOtherNames(t *testing.T) {
	tests := []struct {
		name   string
		method string
		want   authmode.Mode
	}{
		{"health check", "/grpc.health.v1.Health/Check", authmode.None},
		{"health watch", "/grpc.health.v1.Health/Watch", authmode.None},
		{"health list", "/grpc.health.v1.Health/List", authmode.None},
		{"reflection v1", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", authmode.None},
		{"reflection v1alpha", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", authmode.None},
		{"reference token exchange", "/yandex.cloud.iam.v1.IamTokenService/Create", authmode.None},
		{"reference token service, other method", "/yandex.cloud.iam.v1.IamTokenService/CreateForServiceAccount", authmode.IAMToken},
		{"unknown service", "/acme.v1.Unknown/Do", authmode.IAMToken},
		{"unknown method of a none service", "/iamtoken.iam.v1.IamTokenService/Nope", authmode.IAMToken},
		{"unknown method of an access-key service", "/iamtoken.demo.v1.StorageService/Nope", authmode.IAMToken},
		{"empty", "", authmode.IAMToken},
		{"no leading slash", "iamtoken.iam.v1.IamTokenService/Create", authmode.IAMToken},
		{"no method", "/iamtoken.iam.v1.IamTokenService/", authmode.IAMToken},
		{"extra segment", "/iamtoken.iam.v1.IamTokenService/Create/x", authmode.IAMToken},
		{"message, not service", "/iamtoken.iam.v1.Key/Create", authmode.IAMToken},
		{"health prefix trick", "/grpc.health.v1.HealthX/Check", authmode.IAMToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := authmode.Of(tt.method); got != tt.want {
				t.Errorf("Of(%q) = %v, want %v", tt.method, got, tt.want)
			}
		})
	}
}

func TestOverrides(t *testing.T) {
	r, err := authmode.New(
		authmode.WithOverride(authmode.ReflectionService, authmode.IAMToken),
		authmode.WithOverride("iamtoken.demo.v1.StorageService", authmode.None),
		authmode.WithOverride(demov1.StorageService_PutObject_FullMethodName, authmode.AccessKey),
		authmode.WithOverride("acme.v1.Legacy", authmode.AccessKey),
	)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method string
		want   authmode.Mode
	}{
		{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", authmode.IAMToken},
		{"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", authmode.None},
		{"/grpc.health.v1.Health/Check", authmode.None},
		{demov1.StorageService_GetObject_FullMethodName, authmode.None},
		{demov1.StorageService_PutObject_FullMethodName, authmode.AccessKey},
		{"/acme.v1.Legacy/Anything", authmode.AccessKey},
		{demov1.ComputeService_GetInstance_FullMethodName, authmode.IAMToken},
	}
	for _, tt := range tests {
		if got := r.Mode(tt.method); got != tt.want {
			t.Errorf("Mode(%q) = %v, want %v", tt.method, got, tt.want)
		}
	}
}

func TestOverrideErrors(t *testing.T) {
	tests := []struct {
		name string
		opt  authmode.Option
	}{
		{"bad mode", authmode.WithOverride("acme.v1.S", authmode.Mode(0))},
		{"mode out of range", authmode.WithOverride("acme.v1.S", authmode.Mode(9))},
		{"bad name", authmode.WithOverride("not a name", authmode.None)},
		{"method without slash", authmode.WithOverride("acme.v1.S/M", authmode.None)},
		{"nil files", authmode.WithFiles(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := authmode.New(tt.opt); err == nil {
				t.Error("New succeeded, want an error")
			}
		})
	}
}

func TestWithFilesSeesOnlyThoseFiles(t *testing.T) {
	r, err := authmode.New(authmode.WithFiles(new(protoregistry.Files)))
	if err != nil {
		t.Fatal(err)
	}
	// With an empty registry the Create method's "none" option is unknown:
	// deny by default.
	if got := r.Mode(iamv1.IamTokenService_Create_FullMethodName); got != authmode.IAMToken {
		t.Errorf("Mode = %v, want IAM_TOKEN", got)
	}
}

func TestModeDoesNotAllocate(t *testing.T) {
	for _, m := range []string{demov1.StorageService_PutObject_FullMethodName, "/grpc.health.v1.Health/Check", "/acme.v1.Unknown/Do"} {
		authmode.Of(m)
		if n := testing.AllocsPerRun(100, func() { authmode.Of(m) }); n != 0 {
			t.Errorf("Of(%q) allocates %v times per call, want 0", m, n)
		}
	}
}

func TestModeString(t *testing.T) {
	for m, want := range map[authmode.Mode]string{
		authmode.IAMToken: "IAM_TOKEN", authmode.AccessKey: "ACCESS_KEY", authmode.None: "NONE", 0: "UNKNOWN",
	} {
		if got := m.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", m, got, want)
		}
	}
}

func BenchmarkOf(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		authmode.Of(demov1.ComputeService_GetInstance_FullMethodName)
	}
}
