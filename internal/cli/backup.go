package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"mailroom/internal/store"
	"mailroom/internal/store/sqlite"
)

// backuper is a store that can copy itself while in use.
type backuper interface {
	Backup(ctx context.Context, dir string, progress func(done, total int)) (*sqlite.Manifest, error)
}

func (a *app) backupCommand() *cobra.Command {
	return &cobra.Command{Use: "backup DIR", Short: "Copy the store (database, message files, secret) to a new directory; safe while the server runs",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				b, ok := st.(backuper)
				if !ok {
					return fmt.Errorf("mailroom backup copies the embedded store; a PostgreSQL store is backed up with PostgreSQL's own tools: pg_dump for a copy, pg_basebackup with WAL archiving for point-in-time recovery")
				}
				m, err := b.Backup(ctx, args[0], a.progressBar())
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "backed up %d messages (%d mailbox copies, %d queue entries, %d message files) to %s\n",
					m.Messages, m.Copies, m.Queued, len(m.Blobs), args[0])
				return nil
			})
		}}
}

func (a *app) restoreCommand() *cobra.Command {
	return &cobra.Command{Use: "restore BACKUP", Short: "Check a backup and copy it into the data directory, which must hold no store yet (stop the server first)",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			m, err := sqlite.Restore(cmd.Context(), args[0], cfg.DataDir, a.progressBar())
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "restored %d messages (%d mailbox copies, %d queue entries, %d message files) of %s into %s; start the server on it\n",
				m.Messages, m.Copies, m.Queued, len(m.Blobs), m.Created.Format("2006-01-02 15:04:05 UTC"), cfg.DataDir)
			return nil
		}}
}
