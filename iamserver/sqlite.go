package iamserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/iamtoken/iamtoken-go/interceptors"
)

// SQLiteStore is a Store in an SQLite database file (modernc.org/sqlite:
// pure Go, no cgo). It is the default for a single-host issuer.
//
// # Durability
//
// The database runs in WAL mode with synchronous=FULL: every commit is
// fsynced to the write-ahead log before it returns, so a committed write
// survives a process crash and a power loss. (synchronous=NORMAL would
// survive a process crash but may lose the last commits on power loss; the
// issuer's writes are rare management calls, so the extra fsync costs
// nothing that matters.)
//
// # Secrets at rest
//
// Access-key secrets and private signing keys are encrypted with AES-256-GCM
// under a data key that the caller keeps outside the database file (see
// LoadDataKeyFile). A copy of the database alone reveals no secret.
type SQLiteStore struct {
	db     *sql.DB
	sealer *sealer

	// lastUse remembers when RecordAccessKeyUse last wrote each key, so that
	// calls within LastUsedResolution of it cost no statement at all. Only
	// keys that verified are recorded, so it holds real keys; it is cleared
	// when it reaches maxLastUse entries (deleted keys would linger).
	lastUseMu sync.Mutex
	lastUse   map[string]time.Time // guarded by lastUseMu
}

const maxLastUse = 1 << 16

var _ Store = (*SQLiteStore)(nil)

// migrations are applied in order, each in its own transaction, and
// recorded in schema_migrations; a released migration is never edited.
var migrations = []string{
	1: `
CREATE TABLE service_accounts (
	id          TEXT PRIMARY KEY,
	name        TEXT NOT NULL,
	description TEXT NOT NULL,
	created_by  TEXT NOT NULL,
	created_at  INTEGER NOT NULL,
	UNIQUE (created_by, name)
);
CREATE INDEX service_accounts_created_by ON service_accounts (created_by, id);
CREATE TABLE authorized_keys (
	id                 TEXT PRIMARY KEY,
	service_account_id TEXT NOT NULL REFERENCES service_accounts (id) ON DELETE CASCADE,
	description        TEXT NOT NULL,
	algorithm          TEXT NOT NULL,
	public_key         TEXT NOT NULL,
	created_at         INTEGER NOT NULL
);
CREATE INDEX authorized_keys_service_account ON authorized_keys (service_account_id, id);
CREATE TABLE access_keys (
	id                 TEXT PRIMARY KEY,
	key_id             TEXT NOT NULL UNIQUE,
	service_account_id TEXT NOT NULL REFERENCES service_accounts (id) ON DELETE CASCADE,
	description        TEXT NOT NULL,
	secret             BLOB NOT NULL, -- AES-GCM sealed
	created_at         INTEGER NOT NULL
);
CREATE INDEX access_keys_service_account ON access_keys (service_account_id, id);
CREATE TABLE signing_keys (
	id          TEXT PRIMARY KEY,
	algorithm   TEXT NOT NULL,
	private_key BLOB NOT NULL, -- AES-GCM sealed PKCS #8
	created_at  INTEGER NOT NULL,
	retired_at  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE revocations (
	token_id   TEXT PRIMARY KEY,
	expires_at INTEGER NOT NULL
);
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value BLOB NOT NULL
);`,
	2: `
ALTER TABLE access_keys ADD COLUMN last_used_at INTEGER NOT NULL DEFAULT 0;`,
}

// dataKeyCheck is sealed into meta on creation, so that opening the
// database with another data key fails at once rather than at the first
// secret read.
const dataKeyCheck = "iamtoken-go data key check"

// OpenSQLite opens (creating if needed) the database at path and migrates it
// to the current schema. dataKey (DataKeySize bytes) encrypts secrets at
// rest; it must be the same on every open.
func OpenSQLite(ctx context.Context, path string, dataKey []byte) (*SQLiteStore, error) {
	sl, err := newSealer(dataKey)
	if err != nil {
		return nil, err
	}
	if path == "" {
		return nil, errors.New("iamserver: empty database path")
	}
	// Create the file owner-only: SQLite gives its -wal and -shm files the
	// database file's permissions. Nothing in it is a secret in the clear,
	// but account metadata is nobody else's business either.
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		f.Close()
	} else if !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("iamserver: create %s: %w", path, err)
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "busy_timeout(10000)")
	// A write transaction takes the write lock when it begins, so two
	// writers never deadlock upgrading read locks.
	q.Set("_txlock", "immediate")
	// The path goes into a URI: escape it, so that '%', '?' or '#' in a
	// directory name are not read as escapes, a query or a fragment.
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("iamserver: open %s: %w", path, err)
	}
	s := &SQLiteStore{db: db, sealer: sl}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.checkDataKey(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *SQLiteStore) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("iamserver: migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("iamserver: migrate: %w", err)
	}
	var version int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&version); err != nil {
		return fmt.Errorf("iamserver: migrate: %w", err)
	}
	if version > len(migrations)-1 {
		// A newer binary migrated it: refuse rather than misread its data.
		return fmt.Errorf("iamserver: database schema version %d is newer than this binary's %d", version, len(migrations)-1)
	}
	for v := version + 1; v < len(migrations); v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("iamserver: migration %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, v, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("iamserver: migration %d: %w", v, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("iamserver: migrate: %w", err)
	}
	return nil
}

func (s *SQLiteStore) checkDataKey(ctx context.Context) error {
	const aad = "meta:data_key_check"
	var sealed []byte
	err := s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'data_key_check'`).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		sealed, err = s.sealer.seal([]byte(dataKeyCheck), aad)
		if err != nil {
			return err
		}
		// OR IGNORE: another process opening the same file may have won.
		if _, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO meta (key, value) VALUES ('data_key_check', ?)`, sealed); err != nil {
			return fmt.Errorf("iamserver: data key check: %w", err)
		}
		return s.checkDataKey(ctx)
	}
	if err != nil {
		return fmt.Errorf("iamserver: data key check: %w", err)
	}
	if got, err := s.sealer.open(sealed, aad); err != nil || string(got) != dataKeyCheck {
		return errors.New("iamserver: the data key does not match this database")
	}
	return nil
}

// Close closes the database.
func (s *SQLiteStore) Close() error { return s.db.Close() }

// SchemaVersion answers the latest migration applied.
func (s *SQLiteStore) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// writeErr maps constraint violations to the Store's errors.
func writeErr(err error, what string) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("iamserver: %s: %w", what, ErrAlreadyExists)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return fmt.Errorf("iamserver: %s: service account: %w", what, ErrNotFound)
		}
	}
	return fmt.Errorf("iamserver: %s: %w", what, err)
}

func readErr(err error, what, id string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("iamserver: %s %s: %w", what, id, ErrNotFound)
	}
	return fmt.Errorf("iamserver: %s %s: %w", what, id, err)
}

// deleteOne runs a DELETE and reports ErrNotFound when it hit no row.
func (s *SQLiteStore) deleteOne(ctx context.Context, query, what, id string) error {
	res, err := s.db.ExecContext(ctx, query, id)
	if err != nil {
		return fmt.Errorf("iamserver: delete %s %s: %w", what, id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("iamserver: %s %s: %w", what, id, ErrNotFound)
	}
	return nil
}

func limitOf(p Page) int {
	if p.Limit <= 0 {
		return -1 // SQLite: no limit
	}
	return p.Limit
}

// CreateServiceAccount implements Store.
func (s *SQLiteStore) CreateServiceAccount(ctx context.Context, sa *ServiceAccount) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO service_accounts (id, name, description, created_by, created_at) VALUES (?, ?, ?, ?, ?)`,
		sa.ID, sa.Name, sa.Description, sa.CreatedBy, unixNano(sa.CreatedAt))
	if err != nil {
		return writeErr(err, "service account")
	}
	return nil
}

type scanner interface{ Scan(dest ...any) error }

func scanServiceAccount(r scanner) (*ServiceAccount, error) {
	var sa ServiceAccount
	var created int64
	if err := r.Scan(&sa.ID, &sa.Name, &sa.Description, &sa.CreatedBy, &created); err != nil {
		return nil, err
	}
	sa.CreatedAt = fromUnixNano(created)
	return &sa, nil
}

// GetServiceAccount implements Store.
func (s *SQLiteStore) GetServiceAccount(ctx context.Context, id string) (*ServiceAccount, error) {
	sa, err := scanServiceAccount(s.db.QueryRowContext(ctx,
		`SELECT id, name, description, created_by, created_at FROM service_accounts WHERE id = ?`, id))
	if err != nil {
		return nil, readErr(err, "service account", id)
	}
	return sa, nil
}

// list runs a listing query and scans every row.
func list[T any](ctx context.Context, db *sql.DB, scan func(scanner) (*T, error), query string, args ...any) ([]*T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("iamserver: list: %w", err)
	}
	defer rows.Close()
	var out []*T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("iamserver: list: %w", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("iamserver: list: %w", err)
	}
	return out, nil
}

// ListServiceAccounts implements Store.
func (s *SQLiteStore) ListServiceAccounts(ctx context.Context, createdBy string, p Page) ([]*ServiceAccount, error) {
	return list(ctx, s.db, scanServiceAccount,
		`SELECT id, name, description, created_by, created_at FROM service_accounts
		 WHERE created_by = ? AND id > ? ORDER BY id LIMIT ?`, createdBy, p.After, limitOf(p))
}

// DeleteServiceAccount implements Store.
func (s *SQLiteStore) DeleteServiceAccount(ctx context.Context, id string) error {
	// ON DELETE CASCADE removes its keys and access keys in the same
	// statement, hence the same transaction.
	return s.deleteOne(ctx, `DELETE FROM service_accounts WHERE id = ?`, "service account", id)
}

// CreateAuthorizedKey implements Store.
func (s *SQLiteStore) CreateAuthorizedKey(ctx context.Context, k *AuthorizedKey) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO authorized_keys (id, service_account_id, description, algorithm, public_key, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		k.ID, k.ServiceAccountID, k.Description, k.Algorithm, k.PublicKeyPEM, unixNano(k.CreatedAt))
	if err != nil {
		return writeErr(err, "key")
	}
	return nil
}

func scanAuthorizedKey(r scanner) (*AuthorizedKey, error) {
	var k AuthorizedKey
	var created int64
	if err := r.Scan(&k.ID, &k.ServiceAccountID, &k.Description, &k.Algorithm, &k.PublicKeyPEM, &created); err != nil {
		return nil, err
	}
	k.CreatedAt = fromUnixNano(created)
	return &k, nil
}

// GetAuthorizedKey implements Store.
func (s *SQLiteStore) GetAuthorizedKey(ctx context.Context, id string) (*AuthorizedKey, error) {
	k, err := scanAuthorizedKey(s.db.QueryRowContext(ctx,
		`SELECT id, service_account_id, description, algorithm, public_key, created_at FROM authorized_keys WHERE id = ?`, id))
	if err != nil {
		return nil, readErr(err, "key", id)
	}
	return k, nil
}

// ListAuthorizedKeys implements Store.
func (s *SQLiteStore) ListAuthorizedKeys(ctx context.Context, serviceAccountID string, p Page) ([]*AuthorizedKey, error) {
	return list(ctx, s.db, scanAuthorizedKey,
		`SELECT id, service_account_id, description, algorithm, public_key, created_at FROM authorized_keys
		 WHERE service_account_id = ? AND id > ? ORDER BY id LIMIT ?`, serviceAccountID, p.After, limitOf(p))
}

// DeleteAuthorizedKey implements Store.
func (s *SQLiteStore) DeleteAuthorizedKey(ctx context.Context, id string) error {
	return s.deleteOne(ctx, `DELETE FROM authorized_keys WHERE id = ?`, "key", id)
}

func accessKeyAAD(id string) string { return "access_keys:" + id }

// CreateAccessKey implements Store.
func (s *SQLiteStore) CreateAccessKey(ctx context.Context, k *AccessKeyRecord) error {
	sealed, err := s.sealer.seal(k.Secret, accessKeyAAD(k.ID))
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx,
		`INSERT INTO access_keys (id, key_id, service_account_id, description, secret, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		k.ID, k.KeyID, k.ServiceAccountID, k.Description, sealed, unixNano(k.CreatedAt))
	if err != nil {
		return writeErr(err, "access key")
	}
	return nil
}

// scanAccessKey scans a row; with withSecret it opens the sealed secret.
func (s *SQLiteStore) scanAccessKey(withSecret bool) func(scanner) (*AccessKeyRecord, error) {
	return func(r scanner) (*AccessKeyRecord, error) {
		var k AccessKeyRecord
		var created, lastUsed int64
		var sealed []byte
		if err := r.Scan(&k.ID, &k.KeyID, &k.ServiceAccountID, &k.Description, &sealed, &created, &lastUsed); err != nil {
			return nil, err
		}
		k.CreatedAt = fromUnixNano(created)
		if lastUsed != 0 {
			k.LastUsedAt = fromUnixNano(lastUsed)
		}
		if withSecret {
			secret, err := s.sealer.open(sealed, accessKeyAAD(k.ID))
			if err != nil {
				return nil, err
			}
			k.Secret = secret
		}
		return &k, nil
	}
}

const accessKeyColumns = `id, key_id, service_account_id, description, secret, created_at, last_used_at`

// GetAccessKey implements Store.
func (s *SQLiteStore) GetAccessKey(ctx context.Context, id string) (*AccessKeyRecord, error) {
	k, err := s.scanAccessKey(true)(s.db.QueryRowContext(ctx,
		`SELECT `+accessKeyColumns+` FROM access_keys WHERE id = ?`, id))
	if err != nil {
		return nil, readErr(err, "access key", id)
	}
	return k, nil
}

// ListAccessKeys implements Store.
func (s *SQLiteStore) ListAccessKeys(ctx context.Context, serviceAccountID string, p Page) ([]*AccessKeyRecord, error) {
	return list(ctx, s.db, s.scanAccessKey(false),
		`SELECT `+accessKeyColumns+` FROM access_keys
		 WHERE service_account_id = ? AND id > ? ORDER BY id LIMIT ?`, serviceAccountID, p.After, limitOf(p))
}

// DeleteAccessKey implements Store.
func (s *SQLiteStore) DeleteAccessKey(ctx context.Context, id string) error {
	return s.deleteOne(ctx, `DELETE FROM access_keys WHERE id = ?`, "access key", id)
}

// RecordAccessKeyUse implements Store. The condition in the UPDATE keeps a
// key in steady use to one write per LastUsedResolution.
func (s *SQLiteStore) RecordAccessKeyUse(ctx context.Context, keyID string, at time.Time) error {
	s.lastUseMu.Lock()
	if prev, ok := s.lastUse[keyID]; ok && at.Sub(prev) < LastUsedResolution {
		s.lastUseMu.Unlock()
		return nil
	}
	if s.lastUse == nil || len(s.lastUse) >= maxLastUse {
		s.lastUse = make(map[string]time.Time)
	}
	s.lastUse[keyID] = at
	s.lastUseMu.Unlock()
	_, err := s.db.ExecContext(ctx, `UPDATE access_keys SET last_used_at = ? WHERE key_id = ? AND last_used_at <= ?`,
		unixNano(at), keyID, unixNano(at.Add(-LastUsedResolution)))
	if err != nil {
		return fmt.Errorf("iamserver: record access key use: %w", err)
	}
	return nil
}

// LookupAccessKey implements interceptors.AccessKeyStore.
func (s *SQLiteStore) LookupAccessKey(ctx context.Context, keyID string) (*interceptors.AccessKey, error) {
	k, err := s.scanAccessKey(true)(s.db.QueryRowContext(ctx,
		`SELECT `+accessKeyColumns+` FROM access_keys WHERE key_id = ?`, keyID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, interceptors.ErrAccessKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("iamserver: look up access key: %w", err)
	}
	return &interceptors.AccessKey{KeyID: k.KeyID, Secret: k.Secret, ServiceAccountID: k.ServiceAccountID, Active: true}, nil
}

func signingKeyAAD(id string) string { return "signing_keys:" + id }

// RotateSigningKey implements Store.
func (s *SQLiteStore) RotateSigningKey(ctx context.Context, next *SigningKey) error {
	sealed, err := s.sealer.seal(next.PrivateKey, signingKeyAAD(next.ID))
	if err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("iamserver: rotate signing key: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE signing_keys SET retired_at = ? WHERE retired_at = 0`, unixNano(next.CreatedAt)); err != nil {
		return fmt.Errorf("iamserver: rotate signing key: %w", err)
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO signing_keys (id, algorithm, private_key, created_at, retired_at) VALUES (?, ?, ?, ?, 0)`,
		next.ID, next.Algorithm, sealed, unixNano(next.CreatedAt)); err != nil {
		return writeErr(err, "signing key")
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("iamserver: rotate signing key: %w", err)
	}
	return nil
}

// SigningKeys implements Store.
func (s *SQLiteStore) SigningKeys(ctx context.Context) ([]*SigningKey, error) {
	keys, err := list(ctx, s.db, func(r scanner) (*SigningKey, error) {
		var k SigningKey
		var created, retired int64
		var sealed []byte
		if err := r.Scan(&k.ID, &k.Algorithm, &sealed, &created, &retired); err != nil {
			return nil, err
		}
		priv, err := s.sealer.open(sealed, signingKeyAAD(k.ID))
		if err != nil {
			return nil, err
		}
		k.PrivateKey, k.CreatedAt, k.RetiredAt = priv, fromUnixNano(created), fromUnixNano(retired)
		return &k, nil
	}, `SELECT id, algorithm, private_key, created_at, retired_at FROM signing_keys`)
	if err != nil {
		return nil, err
	}
	sortSigningKeys(keys)
	return keys, nil
}

// DeleteSigningKeysRetiredBefore implements Store.
func (s *SQLiteStore) DeleteSigningKeysRetiredBefore(ctx context.Context, t time.Time) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM signing_keys WHERE retired_at != 0 AND retired_at < ?`, unixNano(t)); err != nil {
		return fmt.Errorf("iamserver: delete signing keys: %w", err)
	}
	return nil
}

// Revoke implements Store.
func (s *SQLiteStore) Revoke(ctx context.Context, tokenID string, expiresAt time.Time) error {
	if _, err := s.db.ExecContext(ctx,
		`INSERT INTO revocations (token_id, expires_at) VALUES (?, ?) ON CONFLICT (token_id) DO NOTHING`,
		tokenID, unixNano(expiresAt)); err != nil {
		return fmt.Errorf("iamserver: revoke: %w", err)
	}
	return nil
}

// IsRevoked implements interceptors.RevocationList.
func (s *SQLiteStore) IsRevoked(ctx context.Context, tokenID string) (bool, error) {
	var one int
	err := s.db.QueryRowContext(ctx, `SELECT 1 FROM revocations WHERE token_id = ?`, tokenID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("iamserver: revocation list: %w", err)
	}
	return true, nil
}

// DeleteRevocationsExpiredBefore implements Store.
func (s *SQLiteStore) DeleteRevocationsExpiredBefore(ctx context.Context, t time.Time) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM revocations WHERE expires_at < ?`, unixNano(t)); err != nil {
		return fmt.Errorf("iamserver: delete revocations: %w", err)
	}
	return nil
}
