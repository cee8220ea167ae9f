package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A backup is a directory holding mailroom.db (a consistent snapshot made
// with VACUUM INTO), blobs/ (every large body the snapshot names), the
// server's secret, and manifest.json (what is there, with checksums), which
// is written last: a directory without it is not a finished backup.
const (
	manifestName = "manifest.json"
	backupLock   = "backup.lock"
)

// Manifest describes a backup.
type Manifest struct {
	Created  time.Time         `json:"created"`
	Schema   int               `json:"schema"`
	Messages int               `json:"messages"` // rows in messages
	Copies   int               `json:"copies"`   // rows in mailbox_messages
	Queued   int               `json:"queued"`   // rows in queue
	DB       string            `json:"db_sha256"`
	Blobs    map[string]string `json:"blobs"` // name -> sha256
}

// blobGuard is held (shared) by a process removing body files and
// (exclusive) by a backup: while a backup runs, no body it may need is
// removed; the hourly orphan sweep removes what was skipped.
type blobGuard struct{ f *os.File }

func lockBlobs(dataDir string, how int) (*blobGuard, error) {
	f, err := os.OpenFile(filepath.Join(dataDir, backupLock), os.O_RDONLY|os.O_CREATE|syscall.O_NOFOLLOW, 0o640)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, err
	}
	return &blobGuard{f}, nil
}

func (g *blobGuard) release() {
	if g.f != nil {
		unix.Flock(int(g.f.Fd()), unix.LOCK_UN)
		g.f.Close()
	}
}

// blobRemovalAllowed takes the shared hold for removing body files; it
// reports false only while a backup holds them. Any other failure to lock
// (the lock file unreadable to this user) is logged, and removal goes on
// without the hold rather than never.
func (s *Store) blobRemovalAllowed() (*blobGuard, bool) {
	g, err := lockBlobs(s.dir, unix.LOCK_SH|unix.LOCK_NB)
	switch {
	case err == nil:
		return g, true
	case errors.Is(err, unix.EWOULDBLOCK):
		return nil, false
	}
	slog.Warn("store: cannot take the backup lock; removing message files without it (a backup running now may miss some)",
		"err", err, "file", filepath.Join(s.dir, backupLock))
	return &blobGuard{}, true
}

// Backup writes a consistent copy of the store to dir (which must not
// exist or be empty) while the server runs: the database as of one moment,
// and every body file that moment needs. progress, if not nil, is told of
// the body files copied.
func (s *Store) Backup(ctx context.Context, dir string, progress func(done, total int)) (*Manifest, error) {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("backup: %s is not empty: give a new directory", dir)
	}
	if err := os.MkdirAll(filepath.Join(dir, "blobs"), 0o700); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	guard, err := lockBlobs(s.dir, unix.LOCK_EX)
	if err != nil {
		return nil, fmt.Errorf("backup: hold body files: %w", err)
	}
	defer guard.release()
	dbPath := filepath.Join(dir, "mailroom.db")
	if _, err := s.reads.db.ExecContext(ctx, "VACUUM INTO ?", dbPath); err != nil {
		return nil, fmt.Errorf("backup: snapshot the database: %w", err)
	}
	m, files, err := describeSnapshot(ctx, dbPath)
	if err != nil {
		return nil, err
	}
	for i, name := range files {
		sum, err := copyFile(filepath.Join(s.dir, "blobs", name), filepath.Join(dir, "blobs", name))
		if err != nil {
			return nil, fmt.Errorf("backup: body file %s: %w", name, err)
		}
		m.Blobs[name] = sum
		if progress != nil {
			progress(i+1, len(files))
		}
	}
	for _, extra := range []string{"secret"} {
		if _, err := copyFile(filepath.Join(s.dir, extra), filepath.Join(dir, extra)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("backup: %s: %w", extra, err)
		}
	}
	if m.DB, err = fileSum(dbPath); err != nil {
		return nil, err
	}
	if err := syncDirs(dir, filepath.Join(dir, "blobs")); err != nil {
		return nil, err
	}
	if err := writeManifest(dir, m); err != nil {
		return nil, err
	}
	return m, nil
}

// describeSnapshot counts a snapshot's rows and lists the body files it
// names.
func describeSnapshot(ctx context.Context, dbPath string) (*Manifest, []string, error) {
	snap, err := openPlain(dbPath)
	if err != nil {
		return nil, nil, err
	}
	defer snap.Close()
	m := &Manifest{Created: time.Now().UTC(), Blobs: map[string]string{}}
	for _, q := range []struct {
		sql string
		dst *int
	}{
		{"PRAGMA user_version", &m.Schema},
		{"SELECT count(*) FROM messages", &m.Messages},
		{"SELECT count(*) FROM mailbox_messages", &m.Copies},
		{"SELECT count(*) FROM queue", &m.Queued},
	} {
		if err := snap.QueryRowContext(ctx, q.sql).Scan(q.dst); err != nil {
			return nil, nil, fmt.Errorf("backup: read the snapshot: %w", err)
		}
	}
	rows, err := snap.QueryContext(ctx, "SELECT body_file FROM messages WHERE body_file IS NOT NULL")
	if err != nil {
		return nil, nil, fmt.Errorf("backup: read the snapshot: %w", err)
	}
	defer rows.Close()
	var files []string
	for rows.Next() {
		var f string
		if err := rows.Scan(&f); err != nil {
			return nil, nil, err
		}
		files = append(files, f)
	}
	return m, files, rows.Err()
}

// Restore checks the backup in from against its manifest and copies it into
// dataDir, which must hold no store yet. The server must not be running on
// dataDir.
func Restore(ctx context.Context, from, dataDir string, progress func(done, total int)) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(from, manifestName))
	if err != nil {
		return nil, fmt.Errorf("restore: %s is not a finished backup (no %s): %w", from, manifestName, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("restore: %s: %w", manifestName, err)
	}
	if m.Schema > len(migrations) {
		return nil, fmt.Errorf("restore: the backup has schema version %d, newer than this mailroom (%d): restore it with a newer mailroom", m.Schema, len(migrations))
	}
	if _, err := os.Stat(filepath.Join(dataDir, "mailroom.db")); err == nil {
		return nil, fmt.Errorf("restore: %s already holds a store: restore into a new data directory (--data DIR), or move the old one away first", dataDir)
	}
	if sum, err := fileSum(filepath.Join(from, "mailroom.db")); err != nil || sum != m.DB {
		return nil, fmt.Errorf("restore: the backup's database does not match its manifest (damaged or incomplete backup)")
	}
	for name := range m.Blobs {
		if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
			return nil, fmt.Errorf("restore: the manifest names a body file %q outside blobs/: not a backup made by mailroom", name)
		}
	}
	if err := os.MkdirAll(filepath.Join(dataDir, "blobs"), 0o750); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	// What this restore copied goes again if it fails, so that it can be
	// run again.
	var copied []string
	ok := false
	defer func() {
		if !ok {
			for _, f := range copied {
				os.Remove(f)
			}
		}
	}()
	done := 0
	for name, want := range m.Blobs {
		dst := filepath.Join(dataDir, "blobs", name)
		sum, err := copyFile(filepath.Join(from, "blobs", name), dst)
		if err == nil {
			copied = append(copied, dst)
		}
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("restore: %s is already in %s: restore into a new data directory", name, filepath.Join(dataDir, "blobs"))
		}
		if err != nil || sum != want {
			return nil, fmt.Errorf("restore: body file %s is damaged or missing in the backup (%v)", name, err)
		}
		done++
		if progress != nil {
			progress(done, len(m.Blobs))
		}
	}
	secret := filepath.Join(dataDir, "secret")
	if _, err := os.Stat(secret); err != nil {
		if _, err := copyFile(filepath.Join(from, "secret"), secret); err == nil {
			copied = append(copied, secret)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("restore: secret: %w", err)
		}
	}
	// The database last: until it is in place the directory holds no store.
	tmp := filepath.Join(dataDir, "mailroom.db.restoring")
	os.Remove(tmp) // left by a restore that failed
	if _, err := copyFile(filepath.Join(from, "mailroom.db"), tmp); err != nil {
		return nil, fmt.Errorf("restore: database: %w", err)
	}
	copied = append(copied, tmp)
	if err := os.Rename(tmp, filepath.Join(dataDir, "mailroom.db")); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if err := syncDirs(dataDir, filepath.Join(dataDir, "blobs")); err != nil {
		return nil, err
	}
	ok = true
	return &m, nil
}

// copyFile copies src to dst (made anew, 0600), fsyncs it, and returns the
// SHA-256 of what was copied.
func copyFile(src, dst string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(out, h), in)
	if err = errors.Join(err, out.Sync(), out.Close()); err != nil {
		os.Remove(dst)
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func fileSum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func writeManifest(dir string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, manifestName+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	_, err = f.Write(b)
	if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, manifestName)); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return syncDirs(dir)
}

// syncDirs fsyncs directories, so that the files made in them are found
// after a crash.
func syncDirs(dirs ...string) error {
	for _, d := range dirs {
		if err := syncDir(d); err != nil {
			return fmt.Errorf("sync %s: %w", d, err)
		}
	}
	return nil
}

// openPlain opens a database file read-only, outside any Store (a
// snapshot).
func openPlain(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}
