package demo

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func startServer(t *testing.T, dir string, logs io.Writer) *Server {
	t.Helper()
	if logs == nil {
		logs = io.Discard
	}
	s, err := Start(t.Context(), Config{DataDir: dir, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestWalkthroughInProcess(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	s := startServer(t, dir, &logs)
	defer s.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := RunClient(ctx, ClientConfig{Addr: s.GRPCAddr(), CAFile: s.CAFile(), KeyFile: s.KeyFile(), Out: &out}); err != nil {
		t.Fatalf("RunClient: %v\noutput:\n%s", err, out.String())
	}
	for _, want := range []string{
		"WatchInstances (server stream): WATCH_EVENT_TYPE_",
		"UploadObject numbers.txt (client stream, 3 chunks): 24 bytes",
		"IAM token → StorageService refused: Unauthenticated: ",
		"access key → ComputeService refused: Unauthenticated: ",
		"Token cache: 1 fetch(es)",
		"All steps behaved as expected.",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(logs.String(), "code=OK") {
		t.Errorf("server logged no accepted call:\n%s", logs.String())
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, nil)
	saID := s.ServiceAccountID
	keyFile, err := os.ReadFile(s.KeyFile())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = startServer(t, dir, nil)
	defer s.Close()
	if s.ServiceAccountID != saID {
		t.Errorf("after restart service account = %s, want %s", s.ServiceAccountID, saID)
	}
	again, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil || !bytes.Equal(again, keyFile) {
		t.Errorf("key file changed across restart (err %v)", err)
	}
	// The key made on the first start still gets a token.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := RunClient(ctx, ClientConfig{Addr: s.GRPCAddr(), CAFile: s.CAFile(), KeyFile: s.KeyFile(), Out: &out}); err != nil {
		t.Fatalf("RunClient after restart: %v\n%s", err, out.String())
	}
}
