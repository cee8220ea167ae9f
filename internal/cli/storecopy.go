package cli

import (
	"fmt"
	"net/url"

	"github.com/spf13/cobra"

	"mailroom/internal/store"
	"mailroom/internal/store/storecopy"
	"mailroom/internal/store/storeopen"
)

func (a *app) storeCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "store", Short: "Move the store to another backend"}
	cmd.AddCommand(a.storeCopyCommand())
	return cmd
}

func (a *app) storeCopyCommand() *cobra.Command {
	var from, to string
	cmd := &cobra.Command{Use: "copy --to postgres://...", Short: "Copy the whole store into an empty PostgreSQL database, resumable, verified at the end",
		Long: `Copies everything the store holds (domains, users and their passwords, mailboxes with their UIDVALIDITY,
UIDs, MODSEQs and flags, message bodies, the queue, suppressions, DKIM keys, reports) into the PostgreSQL database
--to names, which must be empty (a new database) or hold a copy begun earlier: an interrupted copy goes on where it
stopped when run again. At the end every table is compared on both sides, its rows counted and checksummed.

Stop the server first: mail it accepts during the copy is not copied (the comparison then fails). Then set
[store] url to the database and start the nodes. --from is the configured store unless given ("sqlite:DIR" for
the embedded store in data directory DIR).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg, err := a.config()
			if err != nil {
				return err
			}
			if from == "" {
				if from = cfg.Store.URL; from == "" {
					from = "sqlite:" + cfg.DataDir
				}
			}
			if to == "" {
				return fmt.Errorf("store copy: say where to with --to postgres://USER@HOST/DATABASE (an empty database)")
			}
			if !isPostgres(to) {
				return fmt.Errorf("store copy: --to %s: the copy goes into PostgreSQL (postgres://...); to move an embedded store to another machine, use mailroom backup and restore", redact(to))
			}
			src, err := storeopen.OpenURL(ctx, from, cfg)
			if err != nil {
				return fmt.Errorf("store copy: --from: %w", err)
			}
			defer src.Close()
			dst, err := storeopen.OpenURL(ctx, to, cfg)
			if err != nil {
				return fmt.Errorf("store copy: --to: %w", err)
			}
			defer dst.Close()
			exp, ok1 := src.(store.Exporter)
			imp, ok2 := dst.(storecopy.Destination)
			if !ok1 || !ok2 {
				return fmt.Errorf("store copy: this Mailroom cannot copy from %s to %s", redact(from), redact(to))
			}
			res, err := storecopy.Copy(ctx, exp, imp, storecopy.Options{
				Progress: a.progressBar(),
				Table: func(name string, rows int64) {
					fmt.Fprintf(a.stdout, "%-18s %d rows copied\n", name, rows)
				},
			})
			if err != nil {
				return fmt.Errorf("store copy: %w", err)
			}
			var rows int64
			for _, s := range res.Tables {
				rows += s.Rows
			}
			resumed := ""
			if res.Resumed {
				resumed = fmt.Sprintf(" (went on with a copy begun earlier: %d rows this time)", res.Copied)
			}
			fmt.Fprintf(a.stdout, "copied %d rows in %d tables%s; verified: every table's rows and checksums match.\nNow set [store] url to the --to URL and start the nodes.\n",
				rows, len(res.Tables), resumed)
			return nil
		}}
	cmd.Flags().StringVar(&from, "from", "", `the store to copy: "sqlite:DIR" or a postgres:// URL (default: the configured store)`)
	cmd.Flags().StringVar(&to, "to", "", "the PostgreSQL database to copy into: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
	return cmd
}

func isPostgres(u string) bool {
	p, err := url.Parse(u)
	return err == nil && (p.Scheme == "postgres" || p.Scheme == "postgresql")
}

// redact hides a URL's password.
func redact(u string) string {
	if p, err := url.Parse(u); err == nil {
		return p.Redacted()
	}
	return u
}
