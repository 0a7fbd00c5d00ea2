package demo

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/iamtoken/iamtoken-go/internal/devpki"
)

// Names of the files the demo keeps in its data directory.
const (
	CAFile         = "ca.pem"
	serverCertFile = "server.pem"
	serverKeyFile  = "server-key.pem"
)

// LoadOrCreateCerts returns the demo server's TLS certificate, creating a test
// CA and a server certificate for localhost, 127.0.0.1 and ::1 in dir the
// first time. Clients trust dir/ca.pem.
func LoadOrCreateCerts(dir string) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, serverCertFile), filepath.Join(dir, serverKeyFile)
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err == nil {
		return cert, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return tls.Certificate{}, fmt.Errorf("demo: loading the server certificate: %w", err)
	}
	if err := createCerts(dir); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(certPath, keyPath)
}

func createCerts(dir string) error {
	b, err := devpki.Issue(365 * 24 * time.Hour)
	if err != nil {
		return err
	}
	// The key is written before the certificate, so that a start interrupted
	// in between creates both again next time.
	if err := writeFile(filepath.Join(dir, CAFile), b.CAPEM, 0o644); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, serverKeyFile), b.KeyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, serverCertFile), b.CertPEM, 0o644)
}

// writeFile writes data to a temporary file, syncs it and renames it into
// place, so a crash leaves either the old file or the new one.
func writeFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("demo: writing %s: %w", filepath.Base(path), err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("demo: writing %s: %w", filepath.Base(path), err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// CertPool reads dir/ca.pem into a pool for clients.
func CertPool(caFile string) (*x509.CertPool, error) {
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("demo: reading the CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("demo: %s holds no PEM certificate", caFile)
	}
	return pool, nil
}
