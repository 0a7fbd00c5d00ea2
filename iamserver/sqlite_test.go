package iamserver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/iamtoken/iamtoken-go/internal/iamjwt"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

func openTestSQLite(t *testing.T, path string, key []byte) *SQLiteStore {
	t.Helper()
	s, err := OpenSQLite(context.Background(), path, key)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	return s
}

func TestSQLiteRestartServesEverything(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "iam.db")
	dataKey, err := NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	start := func(store Store) *Server {
		srv, err := New(ctx, Options{Store: store, Now: clock.Now, Logger: discardLogger, DisableBackgroundRotation: true})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}

	store := openTestSQLite(t, path, dataKey)
	srv := start(store)
	alice := userCtx("user-alice")
	sa, err := srv.ServiceAccountService().Create(alice, &iamv1.ServiceAccountServiceCreateRequest{Name: "robot"})
	if err != nil {
		t.Fatal(err)
	}
	saID := sa.GetServiceAccount().GetId()
	key, err := srv.KeyService().Create(alice, &iamv1.KeyServiceCreateRequest{ServiceAccountId: saID})
	if err != nil {
		t.Fatal(err)
	}
	ak, err := srv.AccessKeyService().Create(alice, &iamv1.AccessKeyServiceCreateRequest{ServiceAccountId: saID})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := srv.IssueToken(saID, iamjwt.SubjectServiceAccount)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.IamTokenService().Revoke(alice, &iamv1.IamTokenServiceRevokeRequest{IamToken: tok.Value}); err != nil {
		t.Fatal(err)
	}
	jwks := srv.JWKS()
	srv.Close()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	for _, f := range []string{path, path + "-wal"} {
		if fi, err := os.Stat(f); err == nil && fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want owner-only", filepath.Base(f), fi.Mode().Perm())
		}
	}
	// The secrets are not in the files in the clear.
	for _, f := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if bytes.Contains(b, []byte(ak.GetSecret())) {
			t.Errorf("%s holds the access key secret in the clear", filepath.Base(f))
		}
	}

	store = openTestSQLite(t, path, dataKey)
	defer store.Close()
	srv = start(store)
	defer srv.Close()
	if diff := cmp.Diff(string(jwks), string(srv.JWKS())); diff != "" {
		t.Errorf("JWKS after restart (-want +got):\n%s", diff)
	}
	if _, err := verifyWithJWKS(t, srv.JWKS(), tok.Value, clock.Now()); err != nil {
		t.Errorf("token issued before the restart: %v", err)
	}
	got, err := srv.ServiceAccountService().Get(alice, &iamv1.ServiceAccountServiceGetRequest{ServiceAccountId: saID})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sa.GetServiceAccount().String(), got.GetServiceAccount().String()); diff != "" {
		t.Errorf("service account after restart (-want +got):\n%s", diff)
	}
	a := saWithKey{sa: &ServiceAccount{ID: saID}, key: &AuthorizedKey{ID: key.GetKey().GetId()}, priv: parsePrivatePEM(t, key.GetPrivateKey())}
	if _, err := srv.ExchangeJWT(ctx, saJWT(t, clock.Now(), a, nil)); err != nil {
		t.Errorf("exchange with a key created before the restart: %v", err)
	}
	lookedUp, err := store.LookupAccessKey(ctx, ak.GetAccessKey().GetKeyId())
	if err != nil || string(lookedUp.Secret) != ak.GetSecret() {
		t.Errorf("access key after restart: %v, %v", lookedUp, err)
	}
	claims, err := srv.verifyIssuedToken(tok.Value)
	if err != nil {
		t.Fatal(err)
	}
	if revoked, err := srv.IsRevoked(ctx, claims.ID); err != nil || !revoked {
		t.Errorf("revocation after restart: %v, %v", revoked, err)
	}
	if v, err := store.SchemaVersion(ctx); err != nil || v != len(migrations)-1 {
		t.Errorf("SchemaVersion = %d, %v; want %d", v, err, len(migrations)-1)
	}
}

func TestSQLiteRefusesBadArguments(t *testing.T) {
	path := filepath.Join(t.TempDir(), "iam.db")
	k1, _ := NewDataKey()
	k2, _ := NewDataKey()
	openTestSQLite(t, path, k1).Close()
	if s, err := OpenSQLite(context.Background(), path, k2); err == nil {
		s.Close()
		t.Fatal("opened with another data key")
	}
	if _, err := OpenSQLite(context.Background(), path, k1[:16]); err == nil {
		t.Fatal("opened with a short data key")
	}
	if _, err := OpenSQLite(context.Background(), "", k1); err == nil {
		t.Fatal("opened an empty path")
	}
}

func TestSQLiteOddPath(t *testing.T) {
	// Characters that mean something in a URI must stay part of the name.
	dir := filepath.Join(t.TempDir(), "a b%20c?d#e")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	k, _ := NewDataKey()
	openTestSQLite(t, filepath.Join(dir, "iam.db"), k).Close()
	if _, err := os.Stat(filepath.Join(dir, "iam.db")); err != nil {
		t.Fatalf("database not where asked: %v", err)
	}
}

func TestSQLiteRefusesANewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "iam.db")
	k, _ := NewDataKey()
	s := openTestSQLite(t, path, k)
	if _, err := s.db.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := OpenSQLite(context.Background(), path, k); err == nil {
		s.Close()
		t.Fatal("opened a database migrated by a newer binary")
	}
}

func TestDataKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data.key")
	k1, err := LoadOrCreateDataKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreateDataKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1, k2) || len(k1) != DataKeySize {
		t.Errorf("second load answered another key")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	os.WriteFile(bad, []byte(base64.StdEncoding.EncodeToString([]byte("short"))), 0o600)
	if _, err := LoadDataKeyFile(bad); err == nil {
		t.Errorf("loaded a short key")
	}
}

// The crash test: a child process (this test binary, re-executed) writes to
// the database and prints a line for each write once it is committed; the
// parent kills it with SIGKILL mid-stream, reopens the database and checks
// that every acknowledged write is there.
const (
	crashChildEnv    = "IAMSERVER_CRASH_CHILD_DB"
	crashChildKeyEnv = "IAMSERVER_CRASH_CHILD_KEY"
	crashAcks        = 150
)

// runCrashChild is the child's main: it writes until killed. TestMain calls
// it when crashChildEnv is set.
func runCrashChild() int {
	key, err := base64.StdEncoding.DecodeString(os.Getenv(crashChildKeyEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: key:", err)
		return 2
	}
	ctx := context.Background()
	store, err := OpenSQLite(ctx, os.Getenv(crashChildEnv), key)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	var outMu sync.Mutex // one ack line per write(2), never interleaved
	ack := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
	}
	var wg sync.WaitGroup
	for w := range 3 { // concurrent writers contend for the write lock
		wg.Go(func() {
			for i := 0; ; i++ {
				saID, _ := newID(prefixServiceAccount)
				sa := &ServiceAccount{ID: saID, Name: fmt.Sprintf("w%d-n%d", w, i), CreatedBy: "crash", CreatedAt: t0}
				if err := store.CreateServiceAccount(ctx, sa); err != nil {
					fmt.Fprintln(os.Stderr, "child:", err)
					os.Exit(2)
				}
				ack("sa %s", saID)
				rec := &AccessKeyRecord{ServiceAccountID: saID, CreatedAt: t0}
				rec.ID, _ = newID(prefixAccessKey)
				rec.KeyID, _ = newAccessKeyID()
				secret, _ := newAccessKeySecret()
				rec.Secret = []byte(secret)
				if err := store.CreateAccessKey(ctx, rec); err != nil {
					fmt.Fprintln(os.Stderr, "child:", err)
					os.Exit(2)
				}
				sum := sha256.Sum256(rec.Secret)
				ack("ak %s %s", rec.KeyID, hex.EncodeToString(sum[:]))
				if i%5 == 0 {
					sk, err := newSigningKey(t0)
					if err != nil {
						os.Exit(2)
					}
					if err := store.RotateSigningKey(ctx, sk); err != nil {
						fmt.Fprintln(os.Stderr, "child:", err)
						os.Exit(2)
					}
					ack("sk %s", sk.ID)
				}
			}
		})
	}
	wg.Wait()
	return 0
}

func TestSQLiteSurvivesSIGKILL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "iam.db")
	dataKey, err := NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path, crashChildKeyEnv+"="+base64.StdEncoding.EncodeToString(dataKey))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	r := bufio.NewReader(stdout)
	killed := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			// EOF: the child is gone. A line cut short was never acknowledged.
			if err != io.EOF {
				t.Errorf("reading the child: %v", err)
			}
			break
		}
		acked = append(acked, strings.TrimSuffix(line, "\n"))
		if len(acked) == crashAcks && !killed {
			// Kill mid-stream; keep reading what it acknowledged before dying.
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child exited (%v) after %d acknowledgements; stderr:\n%s", err, len(acked), stderr.String())
	}

	store := openTestSQLite(t, path, dataKey)
	defer store.Close()
	ctx := context.Background()
	var integrity string
	if err := store.db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&integrity); err != nil || integrity != "ok" {
		t.Fatalf("integrity_check = %q, %v", integrity, err)
	}
	signing, err := store.SigningKeys(ctx)
	if err != nil {
		t.Fatalf("SigningKeys after the crash: %v", err)
	}
	signingIDs := map[string]bool{}
	current := 0
	for _, k := range signing {
		signingIDs[k.ID] = true
		if k.RetiredAt.IsZero() {
			current++
		}
	}
	if current != 1 {
		t.Errorf("%d current signing keys after the crash, want 1", current)
	}
	for _, line := range acked {
		f := strings.Fields(line)
		switch f[0] {
		case "sa":
			if _, err := store.GetServiceAccount(ctx, f[1]); err != nil {
				t.Errorf("acknowledged service account %s lost: %v", f[1], err)
			}
		case "ak":
			k, err := store.LookupAccessKey(ctx, f[1])
			if err != nil {
				t.Errorf("acknowledged access key %s lost: %v", f[1], err)
				continue
			}
			sum := sha256.Sum256(k.Secret)
			if hex.EncodeToString(sum[:]) != f[2] {
				t.Errorf("access key %s: secret changed", f[1])
			}
		case "sk":
			if !signingIDs[f[1]] {
				t.Errorf("acknowledged signing key %s lost", f[1])
			}
		default:
			t.Errorf("unexpected line from the child: %q", line)
		}
	}
	t.Logf("%d acknowledged writes survived SIGKILL", len(acked))
}

// TestSQLiteMigratesAnOlderDatabase opens a database made by a binary that
// knew only the first migration (simulated by hiding the later ones), and
// checks that the current binary migrates it and keeps its access keys.
func TestSQLiteMigratesAnOlderDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "iam.db")
	key, err := NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	all := migrations
	migrations = all[:2]
	old, err := OpenSQLite(ctx, path, key)
	migrations = all
	if err != nil {
		t.Fatal(err)
	}
	if v, err := old.SchemaVersion(ctx); err != nil || v != 1 {
		t.Fatalf("old SchemaVersion = %d, %v; want 1", v, err)
	}
	if _, err := old.db.ExecContext(ctx, `INSERT INTO service_accounts (id, name, description, created_by, created_at) VALUES ('ajsaaaaaaaaaaaaaaaa1', 'robot', '', 'user-1', 1)`); err != nil {
		t.Fatal(err)
	}
	sealed, err := old.sealer.seal([]byte("secret-1"), accessKeyAAD("ajaaaaaaaaaaaaaaaaa1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.db.ExecContext(ctx, `INSERT INTO access_keys (id, key_id, service_account_id, description, secret, created_at) VALUES ('ajaaaaaaaaaaaaaaaaa1', 'YCAJaaaaaaaaaaaaaaaaaaaa1', 'ajsaaaaaaaaaaaaaaaa1', '', ?, 1)`, sealed); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := OpenSQLite(ctx, path, key)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.SchemaVersion(ctx); err != nil || v != len(migrations)-1 {
		t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, len(migrations)-1)
	}
	got, err := s.GetAccessKey(ctx, "ajaaaaaaaaaaaaaaaaa1")
	if err != nil || string(got.Secret) != "secret-1" || !got.LastUsedAt.IsZero() {
		t.Fatalf("access key after migration = %v (last used %v), %v", got, got.LastUsedAt, err)
	}
	if err := s.RecordAccessKeyUse(ctx, "YCAJaaaaaaaaaaaaaaaaaaaa1", t0); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetAccessKey(ctx, "ajaaaaaaaaaaaaaaaaa1"); !got.LastUsedAt.Equal(t0) {
		t.Errorf("last used %v, want %v", got.LastUsedAt, t0)
	}
}
