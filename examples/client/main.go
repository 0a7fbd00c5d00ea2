// Command client walks through iamtoken-go's whole flow: an IAM token from a
// service-account key (through the cache), ComputeService calls with it, an
// access key made with it, StorageService calls with the access key, each
// credential refused where it does not belong, and the cache's figures.
//
// With -addr it talks to a running demo server; with no address it starts one
// in-process on loopback, in a temporary data directory, so that
//
//	go run ./examples/client
//
// shows everything. It exits 0 only if every step behaved as expected.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/iamtoken/iamtoken-go/examples/demo"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "", "demo server's gRPC address; empty starts a server in-process")
	caFile := flag.String("ca-file", "", "CA certificate to trust (default: ca.pem in -data-dir)")
	keyFile := flag.String("key-file", "", "service account's authorized key file (default: the one in -data-dir)")
	dataDir := flag.String("data-dir", "", "the running server's data directory, to find -ca-file and -key-file")
	verbose := flag.Bool("v", false, "print the in-process server's logs")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	if *addr == "" {
		dir, err := os.MkdirTemp("", "iamtoken-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		var logs io.Writer = io.Discard
		if *verbose {
			logs = os.Stderr
		}
		srv, err := demo.Start(ctx, demo.Config{DataDir: dir, Logger: slog.New(slog.NewTextHandler(logs, nil))})
		if err != nil {
			return err
		}
		defer srv.Close()
		fmt.Printf("Started a demo server in-process on %s (data in %s)\n", srv.GRPCAddr(), dir)
		*addr, *caFile, *keyFile = srv.GRPCAddr(), srv.CAFile(), srv.KeyFile()
	}
	if *dataDir != "" {
		if *caFile == "" {
			*caFile = filepath.Join(*dataDir, demo.CAFile)
		}
		if *keyFile == "" {
			*keyFile = filepath.Join(*dataDir, demo.KeyFile)
		}
	}
	if *caFile == "" || *keyFile == "" {
		return fmt.Errorf("with -addr, give -data-dir (the server's) or both -ca-file and -key-file")
	}
	return demo.RunClient(ctx, demo.ClientConfig{Addr: *addr, CAFile: *caFile, KeyFile: *keyFile, Out: os.Stdout})
}
