package iamserver

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/interceptors"
	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

func mustCreateSA(t *testing.T, env *testEnv, ctx context.Context, name string) *iamv1.ServiceAccount {
	t.Helper()
	resp, err := env.srv.ServiceAccountService().Create(ctx, &iamv1.ServiceAccountServiceCreateRequest{Name: name})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return resp.GetServiceAccount()
}

func TestOwnershipRule(t *testing.T) {
	env := newTestEnv(t)
	alice, bob := userCtx("user-alice"), userCtx("user-bob")
	robot := mustCreateSA(t, env, alice, "robot")
	doomed := mustCreateSA(t, env, alice, "doomed")
	bobs := mustCreateSA(t, env, bob, "bobs-robot")
	robotCtx := saCtx(robot.GetId())
	key, _, err := env.srv.CreateAuthorizedKey(context.Background(), robot.GetId(), "", 2048)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := env.srv.CreateAccessKey(context.Background(), robot.GetId(), "")
	if err != nil {
		t.Fatal(err)
	}
	const unknownSA = "ajsaaaaaaaaaaaaaaaaa"

	sas, keys, aks, tokens := env.srv.ServiceAccountService(), env.srv.KeyService(), env.srv.AccessKeyService(), env.srv.IamTokenService()
	type call func(ctx context.Context, sa string) error
	ops := map[string]call{
		"sa.Get": func(ctx context.Context, sa string) error {
			_, err := sas.Get(ctx, &iamv1.ServiceAccountServiceGetRequest{ServiceAccountId: sa})
			return err
		},
		"sa.Delete": func(ctx context.Context, sa string) error {
			_, err := sas.Delete(ctx, &iamv1.ServiceAccountServiceDeleteRequest{ServiceAccountId: sa})
			return err
		},
		"key.Create": func(ctx context.Context, sa string) error {
			_, err := keys.Create(ctx, &iamv1.KeyServiceCreateRequest{ServiceAccountId: sa})
			return err
		},
		"key.List": func(ctx context.Context, sa string) error {
			_, err := keys.List(ctx, &iamv1.KeyServiceListRequest{ServiceAccountId: sa})
			return err
		},
		"key.Delete": func(ctx context.Context, _ string) error {
			_, err := keys.Delete(ctx, &iamv1.KeyServiceDeleteRequest{KeyId: key.ID})
			return err
		},
		"accessKey.Create": func(ctx context.Context, sa string) error {
			_, err := aks.Create(ctx, &iamv1.AccessKeyServiceCreateRequest{ServiceAccountId: sa})
			return err
		},
		"accessKey.List": func(ctx context.Context, sa string) error {
			_, err := aks.List(ctx, &iamv1.AccessKeyServiceListRequest{ServiceAccountId: sa})
			return err
		},
		"accessKey.Delete": func(ctx context.Context, _ string) error {
			_, err := aks.Delete(ctx, &iamv1.AccessKeyServiceDeleteRequest{AccessKeyId: ak.ID})
			return err
		},
		"token.CreateForServiceAccount": func(ctx context.Context, sa string) error {
			_, err := tokens.CreateForServiceAccount(ctx, &iamv1.IamTokenServiceCreateForServiceAccountRequest{ServiceAccountId: sa})
			return err
		},
	}
	tests := []struct {
		name     string
		ctx      context.Context
		op       string
		sa       string
		wantCode codes.Code
	}{
		{name: "no principal gets", ctx: context.Background(), op: "sa.Get", sa: robot.GetId(), wantCode: codes.Unauthenticated},
		{name: "no principal creates a key", ctx: context.Background(), op: "key.Create", sa: robot.GetId(), wantCode: codes.Unauthenticated},
		{name: "no principal deletes a key", ctx: context.Background(), op: "key.Delete", wantCode: codes.Unauthenticated},
		{name: "no principal creates an access key", ctx: context.Background(), op: "accessKey.Create", sa: robot.GetId(), wantCode: codes.Unauthenticated},
		{name: "no principal asks for a token", ctx: context.Background(), op: "token.CreateForServiceAccount", sa: robot.GetId(), wantCode: codes.Unauthenticated},

		{name: "creator gets", ctx: alice, op: "sa.Get", sa: robot.GetId()},
		{name: "creator creates a key", ctx: alice, op: "key.Create", sa: robot.GetId()},
		{name: "creator lists keys", ctx: alice, op: "key.List", sa: robot.GetId()},
		{name: "creator creates an access key", ctx: alice, op: "accessKey.Create", sa: robot.GetId()},
		{name: "creator lists access keys", ctx: alice, op: "accessKey.List", sa: robot.GetId()},
		{name: "creator asks for a token", ctx: alice, op: "token.CreateForServiceAccount", sa: robot.GetId()},
		{name: "creator deletes", ctx: alice, op: "sa.Delete", sa: doomed.GetId()},

		{name: "account gets itself", ctx: robotCtx, op: "sa.Get", sa: robot.GetId()},
		{name: "account creates its own key", ctx: robotCtx, op: "key.Create", sa: robot.GetId()},
		{name: "account lists its own keys", ctx: robotCtx, op: "key.List", sa: robot.GetId()},
		{name: "account creates its own access key", ctx: robotCtx, op: "accessKey.Create", sa: robot.GetId()},
		{name: "account asks for its own token", ctx: robotCtx, op: "token.CreateForServiceAccount", sa: robot.GetId()},
		{name: "account cannot delete itself", ctx: robotCtx, op: "sa.Delete", sa: robot.GetId(), wantCode: codes.PermissionDenied},
		{name: "account cannot touch another account", ctx: robotCtx, op: "key.Create", sa: bobs.GetId(), wantCode: codes.PermissionDenied},

		{name: "stranger gets", ctx: bob, op: "sa.Get", sa: robot.GetId(), wantCode: codes.PermissionDenied},
		{name: "stranger deletes", ctx: bob, op: "sa.Delete", sa: robot.GetId(), wantCode: codes.PermissionDenied},
		{name: "stranger creates a key", ctx: bob, op: "key.Create", sa: robot.GetId(), wantCode: codes.PermissionDenied},
		{name: "stranger lists keys", ctx: bob, op: "key.List", sa: robot.GetId(), wantCode: codes.PermissionDenied},
		{name: "stranger deletes a key", ctx: bob, op: "key.Delete", wantCode: codes.PermissionDenied},
		{name: "stranger creates an access key", ctx: bob, op: "accessKey.Create", sa: robot.GetId(), wantCode: codes.PermissionDenied},
		{name: "stranger lists access keys", ctx: bob, op: "accessKey.List", sa: robot.GetId(), wantCode: codes.PermissionDenied},
		{name: "stranger deletes an access key", ctx: bob, op: "accessKey.Delete", wantCode: codes.PermissionDenied},
		{name: "stranger asks for a token", ctx: bob, op: "token.CreateForServiceAccount", sa: robot.GetId(), wantCode: codes.PermissionDenied},

		{name: "unknown account", ctx: alice, op: "sa.Get", sa: unknownSA, wantCode: codes.NotFound},
		{name: "unknown account's keys", ctx: alice, op: "key.Create", sa: unknownSA, wantCode: codes.NotFound},

		// Last, once the strangers were refused: the account deletes its own.
		{name: "account deletes its own key", ctx: robotCtx, op: "key.Delete"},
		{name: "account deletes its own access key", ctx: robotCtx, op: "accessKey.Delete"},
		{name: "deleted key is gone", ctx: robotCtx, op: "key.Delete", wantCode: codes.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ops[tt.op](tt.ctx, tt.sa)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("%s: code %v, want %v (err %v)", tt.op, got, tt.wantCode, err)
			}
		})
	}
}

func TestManagementValidation(t *testing.T) {
	env := newTestEnv(t)
	alice := userCtx("user-alice")
	robot := mustCreateSA(t, env, alice, "robot")
	sas, keys, aks := env.srv.ServiceAccountService(), env.srv.KeyService(), env.srv.AccessKeyService()
	tests := []struct {
		name      string
		call      func() error
		wantField string
		wantCode  codes.Code
	}{
		{name: "name too short", wantField: "name", call: func() error {
			_, err := sas.Create(alice, &iamv1.ServiceAccountServiceCreateRequest{Name: "ab"})
			return err
		}},
		{name: "name with capitals", wantField: "name", call: func() error {
			_, err := sas.Create(alice, &iamv1.ServiceAccountServiceCreateRequest{Name: "Robot"})
			return err
		}},
		{name: "name too long", wantField: "name", call: func() error {
			_, err := sas.Create(alice, &iamv1.ServiceAccountServiceCreateRequest{Name: "a" + strings.Repeat("b", 63)})
			return err
		}},
		{name: "name ends with a hyphen", wantField: "name", call: func() error {
			_, err := sas.Create(alice, &iamv1.ServiceAccountServiceCreateRequest{Name: "robot-"})
			return err
		}},
		{name: "description too long", wantField: "description", call: func() error {
			_, err := sas.Create(alice, &iamv1.ServiceAccountServiceCreateRequest{Name: "robot2", Description: strings.Repeat("é", 257)})
			return err
		}},
		{name: "description with control characters", wantField: "description", call: func() error {
			_, err := keys.Create(alice, &iamv1.KeyServiceCreateRequest{ServiceAccountId: robot.GetId(), Description: "a\x00b"})
			return err
		}},
		{name: "description not UTF-8", wantField: "description", call: func() error {
			_, err := aks.Create(alice, &iamv1.AccessKeyServiceCreateRequest{ServiceAccountId: robot.GetId(), Description: "\xff"})
			return err
		}},
		{name: "missing service account ID", wantField: "service_account_id", call: func() error {
			_, err := keys.List(alice, &iamv1.KeyServiceListRequest{})
			return err
		}},
		{name: "malformed service account ID", wantField: "service_account_id", call: func() error {
			_, err := sas.Get(alice, &iamv1.ServiceAccountServiceGetRequest{ServiceAccountId: "'; DROP TABLE x; --"})
			return err
		}},
		{name: "malformed key ID", wantField: "key_id", call: func() error {
			_, err := keys.Delete(alice, &iamv1.KeyServiceDeleteRequest{KeyId: "x"})
			return err
		}},
		{name: "malformed access key ID", wantField: "access_key_id", call: func() error {
			_, err := aks.Delete(alice, &iamv1.AccessKeyServiceDeleteRequest{AccessKeyId: "YCAJxxxxxxxxxxxxxxxxxxxxx"})
			return err
		}},
		{name: "unknown key algorithm", wantField: "key_algorithm", call: func() error {
			_, err := keys.Create(alice, &iamv1.KeyServiceCreateRequest{ServiceAccountId: robot.GetId(), KeyAlgorithm: 99})
			return err
		}},
		{name: "negative page size", wantField: "page_size", call: func() error {
			_, err := sas.List(alice, &iamv1.ServiceAccountServiceListRequest{PageSize: -1})
			return err
		}},
		{name: "forged page token", wantField: "page_token", call: func() error {
			_, err := sas.List(alice, &iamv1.ServiceAccountServiceListRequest{PageToken: "' OR 1=1"})
			return err
		}},
		{name: "duplicate name", wantCode: codes.AlreadyExists, call: func() error {
			_, err := sas.Create(alice, &iamv1.ServiceAccountServiceCreateRequest{Name: "robot"})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.wantCode
			if want == codes.OK {
				want = codes.InvalidArgument
			}
			err := tt.call()
			if got := status.Code(err); got != want {
				t.Fatalf("code %v, want %v (err %v)", got, want, err)
			}
			if tt.wantField != "" && !strings.HasPrefix(status.Convert(err).Message(), "iamserver: "+tt.wantField+": ") {
				t.Errorf("message %q does not name the field %s", status.Convert(err).Message(), tt.wantField)
			}
		})
	}

	// The same name under another creator is fine.
	mustCreateSA(t, env, userCtx("user-bob"), "robot")
}

func TestKeyServiceCreateAnswersAUsableKeyFile(t *testing.T) {
	env := newTestEnv(t)
	alice := userCtx("user-alice")
	robot := mustCreateSA(t, env, alice, "robot")
	resp, err := env.srv.KeyService().Create(alice, &iamv1.KeyServiceCreateRequest{ServiceAccountId: robot.GetId(), Description: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]string
	if err := json.Unmarshal([]byte(resp.GetAuthorizedKeyJson()), &file); err != nil {
		t.Fatalf("authorized_key_json: %v", err)
	}
	k := resp.GetKey()
	want := map[string]string{
		"id": k.GetId(), "service_account_id": robot.GetId(), "created_at": k.GetCreatedAt().AsTime().Format(time.RFC3339Nano),
		"description": "ci", "key_algorithm": "RSA_2048", "public_key": k.GetPublicKey(), "private_key": resp.GetPrivateKey(),
	}
	if diff := cmp.Diff(want, file); diff != "" {
		t.Errorf("authorized key file (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(resp.GetPrivateKey(), "-----BEGIN PRIVATE KEY-----") {
		t.Errorf("private key is not PKCS #8 PEM")
	}

	// The private half is not kept: listing shows only public halves, and
	// the stored record has no private key.
	list, err := env.srv.KeyService().List(alice, &iamv1.KeyServiceListRequest{ServiceAccountId: robot.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetKeys()) != 1 || strings.Contains(list.String(), "PRIVATE") {
		t.Errorf("List = %v", list)
	}

	// The key file works for the exchange.
	a := saWithKey{
		sa:   &ServiceAccount{ID: robot.GetId()},
		key:  &AuthorizedKey{ID: k.GetId()},
		priv: parsePrivatePEM(t, file["private_key"]),
	}
	if _, err := env.srv.ExchangeJWT(context.Background(), saJWT(t, env.clock.Now(), a, nil)); err != nil {
		t.Fatalf("exchange with the new key: %v", err)
	}

	// Once deleted, its JWTs are refused.
	if _, err := env.srv.KeyService().Delete(alice, &iamv1.KeyServiceDeleteRequest{KeyId: k.GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.srv.ExchangeJWT(context.Background(), saJWT(t, env.clock.Now(), a, nil)); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("exchange with a deleted key: %v, want ErrInvalidCredentials", err)
	}
}

func TestAccessKeyServiceAnswersTheSecretOnce(t *testing.T) {
	env := newTestEnv(t)
	alice := userCtx("user-alice")
	robot := mustCreateSA(t, env, alice, "robot")
	resp, err := env.srv.AccessKeyService().Create(alice, &iamv1.AccessKeyServiceCreateRequest{ServiceAccountId: robot.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	keyID, secret := resp.GetAccessKey().GetKeyId(), resp.GetSecret()
	if !strings.HasPrefix(keyID, "YCAJ") || len(keyID) != 25 {
		t.Errorf("key ID %q: want YCAJ and 25 characters", keyID)
	}
	if len(secret) != 40 {
		t.Errorf("secret is %d characters, want 40", len(secret))
	}
	got, err := env.store.LookupAccessKey(context.Background(), keyID)
	if err != nil {
		t.Fatal(err)
	}
	want := &interceptors.AccessKey{KeyID: keyID, Secret: []byte(secret), ServiceAccountID: robot.GetId(), Active: true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LookupAccessKey (-want +got):\n%s", diff)
	}
	list, err := env.srv.AccessKeyService().List(alice, &iamv1.AccessKeyServiceListRequest{ServiceAccountId: robot.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetAccessKeys()) != 1 || strings.Contains(list.String(), secret) {
		t.Errorf("List = %v", list)
	}
	if _, err := env.srv.AccessKeyService().Delete(alice, &iamv1.AccessKeyServiceDeleteRequest{AccessKeyId: resp.GetAccessKey().GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.store.LookupAccessKey(context.Background(), keyID); !errors.Is(err, interceptors.ErrAccessKeyNotFound) {
		t.Errorf("LookupAccessKey after Delete: %v, want ErrAccessKeyNotFound", err)
	}
}

func TestListPages(t *testing.T) {
	env := newTestEnv(t)
	alice := userCtx("user-alice")
	var want []string
	for _, n := range []string{"one", "two", "three"} {
		want = append(want, mustCreateSA(t, env, alice, n).GetId())
	}
	mustCreateSA(t, env, userCtx("user-bob"), "not-alices")
	var got []string
	token := ""
	for range 5 {
		resp, err := env.srv.ServiceAccountService().List(alice, &iamv1.ServiceAccountServiceListRequest{PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, sa := range resp.GetServiceAccounts() {
			got = append(got, sa.GetId())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if diff := cmp.Diff(want, got, cmpSortStrings); diff != "" {
		t.Errorf("listed (-want +got):\n%s", diff)
	}
}

func TestRevoke(t *testing.T) {
	env := newTestEnv(t)
	alice, bob := userCtx("user-alice"), userCtx("user-bob")
	robot := mustCreateSA(t, env, alice, "robot")
	issue := func(sub, typ string) string {
		tok, err := env.srv.IssueToken(sub, typ)
		if err != nil {
			t.Fatal(err)
		}
		return tok.Value
	}
	foreign := func() string {
		other := newTestEnv(t)
		tok, err := other.srv.IssueToken("user-alice", iamjwt.SubjectUserAccount)
		if err != nil {
			t.Fatal(err)
		}
		return tok.Value
	}()
	tests := []struct {
		name        string
		ctx         context.Context
		token       string
		wantCode    codes.Code
		wantSubject string
	}{
		{name: "own token", ctx: alice, token: issue("user-alice", iamjwt.SubjectUserAccount), wantSubject: "user-alice"},
		{name: "a managed account's token", ctx: alice, token: issue(robot.GetId(), iamjwt.SubjectServiceAccount), wantSubject: robot.GetId()},
		{name: "someone else's token", ctx: bob, token: issue("user-alice", iamjwt.SubjectUserAccount), wantCode: codes.PermissionDenied},
		{name: "an unmanaged account's token", ctx: bob, token: issue(robot.GetId(), iamjwt.SubjectServiceAccount), wantCode: codes.PermissionDenied},
		{name: "another issuer's token", ctx: alice, token: foreign, wantCode: codes.InvalidArgument},
		{name: "garbage", ctx: alice, token: "a.b.c", wantCode: codes.InvalidArgument},
		{name: "empty", ctx: alice, token: "", wantCode: codes.InvalidArgument},
		{name: "no principal", ctx: context.Background(), token: issue("user-alice", iamjwt.SubjectUserAccount), wantCode: codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := env.srv.IamTokenService().Revoke(tt.ctx, &iamv1.IamTokenServiceRevokeRequest{IamToken: tt.token})
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code %v, want %v (err %v)", got, tt.wantCode, err)
			}
			var claims jwt.RegisteredClaims
			if tt.token != "" && tt.token != "a.b.c" {
				if _, _, err := jwt.NewParser().ParseUnverified(tt.token, &claims); err != nil {
					t.Fatal(err)
				}
			}
			revoked, err := env.srv.IsRevoked(context.Background(), claims.ID)
			if err != nil {
				t.Fatal(err)
			}
			if revoked != (tt.wantCode == codes.OK) {
				t.Errorf("IsRevoked = %v", revoked)
			}
			if resp.GetSubjectId() != tt.wantSubject {
				t.Errorf("subject %q, want %q", resp.GetSubjectId(), tt.wantSubject)
			}
		})
	}
}
