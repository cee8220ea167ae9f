// Package storeopen opens the store that the configuration names. The
// server and the CLI open their store here and nowhere else, so that
// choosing another backend is a matter of configuration.
package storeopen

import (
	"context"
	"fmt"
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
		return postgres.Open(ctx, u, postgres.Options{DefaultQuota: int64(cfg.Mailbox.Quota)})
	}
	return nil, fmt.Errorf("store.url: %q is not a store this mailroom knows", cfg.Store.URL)
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
