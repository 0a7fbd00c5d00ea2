package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/examples/demo"
	"github.com/iamtoken/iamtoken-go/grpcauth"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
	iamv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/iam/v1"
)

const (
	// crashWriters is how many goroutines write at once.
	crashWriters = 6
	// crashKillAfter is how many acknowledged writes the burst reaches
	// before the server is killed; the writers go on until it dies.
	crashKillAfter = 60
)

// ackedAccount is a service account whose creation the server acknowledged,
// with the keys and access keys it acknowledged for it.
type ackedAccount struct {
	id, name   string
	keys       map[string][]byte // key ID → the authorized key file
	accessKeys map[string]string // key ID → secret
}

// ackLog records, from all writers, every write the server acknowledged.
type ackLog struct {
	mu       sync.Mutex // guards the fields below
	accounts map[string]*ackedAccount
	writes   int
	failed   []codes.Code // the writes that got no acknowledgement
	inFlight int          // how many of them had been sent before the kill
	reached  chan struct{}
	once     sync.Once
}

func (l *ackLog) ack(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f()
	l.writes++
	if l.writes >= crashKillAfter {
		l.once.Do(func() { close(l.reached) })
	}
}

// fail records a write with no acknowledgement; sentBeforeKill says
// whether the writer had sent it before the kill was.
func (l *ackLog) fail(err error, sentBeforeKill bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failed = append(l.failed, status.Code(err))
	if sentBeforeKill {
		l.inFlight++
	}
}

// TestCrashDuringManagementWrites kills the demo server (SIGKILL) in the
// middle of a burst of management writes from several goroutines, restarts
// it over the same data directory, and checks that every write the server
// had acknowledged is there, and works: each access key signs a call, each
// authorized key obtains a token.
func TestCrashDuringManagementWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the demo server")
	}
	serverBin, _ := build(t)
	dataDir := t.TempDir()
	srv := startServer(t, serverBin, dataDir)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	// The demo user's token, from its OAuth token: it owns what it creates.
	userTok := userToken(ctx, t, srv.grpcAddr, dataDir)
	conn := dial(t, srv.grpcAddr, dataDir, staticCache(t, userTok))
	accounts := iamv1.NewServiceAccountServiceClient(conn)
	keys := iamv1.NewKeyServiceClient(conn)
	accessKeys := iamv1.NewAccessKeyServiceClient(conn)

	acks := &ackLog{accounts: map[string]*ackedAccount{}, reached: make(chan struct{})}
	var killSent atomic.Bool // set just before SIGKILL is sent
	var wg sync.WaitGroup
	for w := range crashWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each round: an account, an authorized key for it, an access
			// key for it; a writer stops at its first unacknowledged write.
			for i := 0; ; i++ {
				before := !killSent.Load()
				name := fmt.Sprintf("crash-w%d-%d", w, i)
				sa, err := accounts.Create(ctx, &iamv1.ServiceAccountServiceCreateRequest{Name: name})
				if err != nil {
					acks.fail(err, before)
					return
				}
				acc := &ackedAccount{id: sa.GetServiceAccount().GetId(), name: name, keys: map[string][]byte{}, accessKeys: map[string]string{}}
				acks.ack(func() { acks.accounts[acc.id] = acc })
				before = !killSent.Load()
				k, err := keys.Create(ctx, &iamv1.KeyServiceCreateRequest{ServiceAccountId: acc.id})
				if err != nil {
					acks.fail(err, before)
					return
				}
				acks.ack(func() { acc.keys[k.GetKey().GetId()] = []byte(k.GetAuthorizedKeyJson()) })
				before = !killSent.Load()
				ak, err := accessKeys.Create(ctx, &iamv1.AccessKeyServiceCreateRequest{ServiceAccountId: acc.id})
				if err != nil {
					acks.fail(err, before)
					return
				}
				acks.ack(func() { acc.accessKeys[ak.GetAccessKey().GetKeyId()] = ak.GetSecret() })
			}
		}()
	}
	select {
	case <-acks.reached:
	case <-ctx.Done():
		t.Fatalf("the burst did not reach %d acknowledged writes: %v", crashKillAfter, ctx.Err())
	}
	killSent.Store(true)
	srv.kill(t)
	wg.Wait()

	// No writer can write any more; what was acknowledged is final.
	acks.mu.Lock()
	acked, failed, inFlight := acks.writes, slices.Clone(acks.failed), acks.inFlight
	acks.mu.Unlock()
	if len(failed) != crashWriters {
		t.Fatalf("%d writers stopped with an error, want all %d", len(failed), crashWriters)
	}
	for _, c := range failed {
		if c != codes.Unavailable {
			t.Errorf("a write failed with %v, want Unavailable (the server died)", c)
		}
	}
	var nAccounts, nKeys, nAccessKeys int
	for _, a := range acks.accounts {
		nAccounts++
		nKeys += len(a.keys)
		nAccessKeys += len(a.accessKeys)
	}
	t.Logf("acknowledged before the kill: %d writes (%d service accounts, %d keys, %d access keys); %d writes got no answer, %d of them sent before the kill",
		acked, nAccounts, nKeys, nAccessKeys, len(failed), inFlight)

	// Restart over the same data directory. The user's token from before
	// the crash still works: the issuer's signing keys survived too.
	srv = startServer(t, serverBin, dataDir)
	conn = dial(t, srv.grpcAddr, dataDir, staticCache(t, userTok))
	accounts = iamv1.NewServiceAccountServiceClient(conn)
	keys = iamv1.NewKeyServiceClient(conn)
	accessKeys = iamv1.NewAccessKeyServiceClient(conn)

	listed := map[string]string{} // ID → name
	for page := ""; ; {
		resp, err := accounts.List(ctx, &iamv1.ServiceAccountServiceListRequest{PageSize: 1000, PageToken: page})
		if err != nil {
			t.Fatalf("ServiceAccountService.List after restart: %v", err)
		}
		for _, sa := range resp.GetServiceAccounts() {
			listed[sa.GetId()] = sa.GetName()
		}
		if page = resp.GetNextPageToken(); page == "" {
			break
		}
	}
	unacked := 0
	for id := range listed {
		if _, ok := acks.accounts[id]; !ok && listed[id] != demo.DemoServiceAccountName {
			unacked++ // committed, but the answer never arrived: allowed
		}
	}
	t.Logf("after restart: %d service accounts listed, %d of them committed without an acknowledgement", len(listed), unacked)

	for _, id := range slices.Sorted(maps.Keys(acks.accounts)) {
		want := acks.accounts[id]
		if got, ok := listed[id]; !ok || got != want.name {
			t.Errorf("service account %s (%s) acknowledged, after restart listed as %q (present %v)", id, want.name, got, ok)
			continue
		}
		if _, err := accounts.Get(ctx, &iamv1.ServiceAccountServiceGetRequest{ServiceAccountId: id}); err != nil {
			t.Errorf("ServiceAccountService.Get %s after restart: %v", id, err)
		}
		kl, err := keys.List(ctx, &iamv1.KeyServiceListRequest{ServiceAccountId: id})
		if err != nil {
			t.Fatalf("KeyService.List %s after restart: %v", id, err)
		}
		var gotKeys []string
		for _, k := range kl.GetKeys() {
			gotKeys = append(gotKeys, k.GetId())
		}
		for keyID, keyFile := range want.keys {
			if !slices.Contains(gotKeys, keyID) {
				t.Errorf("key %s of %s acknowledged, missing after restart", keyID, id)
				continue
			}
			// The stored public key still verifies the private one's JWT.
			src, err := grpcauth.ServiceAccountKeySourceFromBytes(keyFile, &grpcauth.ExchangeOptions{
				Endpoint: srv.grpcAddr, TLSConfig: serverTLS(t, dataDir),
			})
			if err != nil {
				t.Fatal(err)
			}
			_, err = src.Token(ctx)
			src.Close()
			if err != nil {
				t.Errorf("key %s of %s: exchange after restart: %v", keyID, id, err)
			}
		}
		al, err := accessKeys.List(ctx, &iamv1.AccessKeyServiceListRequest{ServiceAccountId: id})
		if err != nil {
			t.Fatalf("AccessKeyService.List %s after restart: %v", id, err)
		}
		var gotAccessKeys []string
		for _, k := range al.GetAccessKeys() {
			gotAccessKeys = append(gotAccessKeys, k.GetKeyId())
		}
		for keyID, secret := range want.accessKeys {
			if !slices.Contains(gotAccessKeys, keyID) {
				t.Errorf("access key %s of %s acknowledged, missing after restart", keyID, id)
				continue
			}
			// The secret, sealed under the data key, still signs calls.
			creds, err := grpcauth.NewAccessKeyCredentials(keyID, secret)
			if err != nil {
				t.Fatal(err)
			}
			akConn := dial(t, srv.grpcAddr, dataDir, nil, grpcauth.WithAccessKey(creds))
			_, err = demov1.NewStorageServiceClient(akConn).ListObjects(ctx, &demov1.ListObjectsRequest{Bucket: "crash"})
			akConn.Close()
			if err != nil {
				t.Errorf("access key %s of %s: StorageService call after restart: %v", keyID, id, err)
			}
		}
	}
}
