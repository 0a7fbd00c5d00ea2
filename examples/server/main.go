// Command server runs the iamtoken-go demo server: the issuer and management
// services, the demo ComputeService (IAM token) and StorageService (access key
// only), gRPC health and reflection on one TLS gRPC port, and the REST token
// exchange and JWKS on one HTTPS port.
//
// On first start it creates, in its data directory, a test CA and server
// certificate, a demo user with an OAuth token and a service account with an
// authorized key file, and logs where they are.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/iamtoken/iamtoken-go/examples/demo"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

func run() error {
	grpcAddr := flag.String("grpc-addr", "127.0.0.1:8443", "gRPC (TLS) listen address")
	httpAddr := flag.String("http-addr", "127.0.0.1:8080", "HTTPS listen address for the REST token exchange and JWKS")
	dataDir := flag.String("data-dir", defaultDataDir(), "directory for the CA, keys and the database")
	debug := flag.Bool("debug", false, "log at debug level")
	flag.Parse()

	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv, err := demo.Start(ctx, demo.Config{DataDir: *dataDir, GRPCAddr: *grpcAddr, HTTPAddr: *httpAddr, Logger: log})
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

func defaultDataDir() string {
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "iamtoken-demo")
	}
	return filepath.Join(os.TempDir(), "iamtoken-demo")
}
