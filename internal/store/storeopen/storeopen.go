// Package storeopen opens the store that the configuration names. The
// server and the CLI open their store here and nowhere else, so that
// choosing another backend is a matter of configuration.
package storeopen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"mailroom/internal/config"
	"mailroom/internal/store"
	"mailroom/internal/store/postgres"
	"mailroom/internal/store/sqlite"
)

// Open opens the store of cfg ([store] url; data_dir for the embedded one)
// for the server.
func Open(ctx context.Context, cfg *config.Config) (store.Store, error) {
	return open(ctx, cfg, false)
}

// OpenTool opens the store for a tool beside a running server (the CLI):
// the changes it makes to mail wake the server's IMAP sessions.
func OpenTool(ctx context.Context, cfg *config.Config) (store.Store, error) {
	return open(ctx, cfg, true)
}

func open(ctx context.Context, cfg *config.Config, tool bool) (store.Store, error) {
	switch u := cfg.Store.URL; {
	case u == "" || u == "sqlite:":
		return sqlite.Open(ctx, cfg.DataDir, sqlite.Options{DefaultQuota: int64(cfg.Mailbox.Quota), AnnounceMail: tool})
	case strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://"):
		// Changes a tool makes are heard by every node (LISTEN/NOTIFY).
		node, err := nodeName(cfg.DataDir)
		if err != nil && !tool {
			return nil, err
		}
		return postgres.Open(ctx, u, postgres.Options{DefaultQuota: int64(cfg.Mailbox.Quota), Node: node})
	}
	return nil, fmt.Errorf("store.url: %q is not a store this mailroom knows", cfg.Store.URL)
}

// OpenURL opens the store a URL names, for a tool (mailroom store copy):
// "sqlite:DIR" the embedded store in the data directory DIR, which must
// hold one ("sqlite:" the configuration's data_dir), "postgres://..." a
// shared store.
func OpenURL(ctx context.Context, url string, cfg *config.Config) (store.Store, error) {
	if dir, ok := strings.CutPrefix(url, "sqlite:"); ok {
		if dir == "" {
			dir = cfg.DataDir
		}
		if _, err := os.Stat(filepath.Join(dir, "mailroom.db")); err != nil {
			return nil, fmt.Errorf("no embedded store in %s (no mailroom.db there): name the data directory of the installation, as sqlite:/var/lib/mailroom", dir)
		}
		return sqlite.Open(ctx, dir, sqlite.Options{DefaultQuota: int64(cfg.Mailbox.Quota), AnnounceMail: true})
	}
	c := *cfg
	c.Store.URL = url
	return open(ctx, &c, true)
}

// nodeName is this node's name in a shared store, kept in data_dir/node so
// that it outlives a restart: the queue claims a node held when it died
// are its own again when it starts, and released at once (a tool reads
// it, or none).
func nodeName(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "node")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return "", fmt.Errorf("the node's name in %s: %w", path, err)
	}
	b := make([]byte, 8)
	rand.Read(b)
	name := hex.EncodeToString(b)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if errors.Is(err, os.ErrExist) {
		return nodeName(dataDir) // made meanwhile by another process
	}
	if err != nil {
		return "", fmt.Errorf("the node's name in %s: %w", path, err)
	}
	defer f.Close()
	if _, err := f.WriteString(name + "\n"); err != nil {
		return "", fmt.Errorf("the node's name in %s: %w", path, err)
	}
	return name, f.Sync()
}

// Apply passes the settings of a reloaded configuration that a running
// store takes (the default quota).
func Apply(st store.Store, cfg *config.Config) {
	if q, ok := st.(interface{ SetDefaultQuota(int64) }); ok {
		q.SetDefaultQuota(int64(cfg.Mailbox.Quota))
	}
}

// OrphanSweeper is a store that keeps message bodies in files of its own
// and can remove those a crash left without their index entry.
type OrphanSweeper interface {
	RemoveOrphanBlobs(ctx context.Context, minAge time.Duration) (int, error)
}
