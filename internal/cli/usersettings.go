package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"mailroom/internal/store"
)

// userSetCommand is "mailroom user set": per-user policies.
func (a *app) userSetCommand() *cobra.Command {
	var us store.UserSettings
	cmd := &cobra.Command{Use: "set ADDRESS", Short: "Change a user's policies (only the flags given change)", Args: cobra.ExactArgs(1),
		Long: "Per-user policies. Sending limits of 0 mean the server's ([submission] in the configuration).",
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := normalizeAddress(args[0])
			if err != nil {
				return err
			}
			changed := false
			for _, n := range []string{"require-scram", "admin", "max-messages-per-hour", "max-messages-per-day", "max-recipients-per-hour", "max-recipients-per-day"} {
				changed = changed || cmd.Flags().Changed(n)
			}
			if !changed {
				return fmt.Errorf("nothing to change: give at least one flag, see 'mailroom user set --help'")
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				u, err := st.User(ctx, addr)
				if err != nil {
					return explain(err, "user set")
				}
				cur := u.Settings
				f := cmd.Flags()
				if f.Changed("require-scram") {
					cur.RequireSCRAM = us.RequireSCRAM
				}
				if f.Changed("admin") {
					cur.Admin = us.Admin
				}
				for name, dst := range map[string]*int{
					"max-messages-per-hour": &cur.MaxMessagesPerHour, "max-messages-per-day": &cur.MaxMessagesPerDay,
					"max-recipients-per-hour": &cur.MaxRecipientsPerHour, "max-recipients-per-day": &cur.MaxRecipientsPerDay,
				} {
					if f.Changed(name) {
						v, _ := f.GetInt(name)
						if v < 0 {
							return fmt.Errorf("--%s must be 0 (the server's limit) or more", name)
						}
						*dst = v
					}
				}
				if err := st.SetUserSettings(ctx, addr, cur); err != nil {
					return explain(err, "user set")
				}
				b, _ := json.Marshal(cur)
				fmt.Fprintf(a.stdout, "%s: %s\n", addr, b)
				return nil
			})
		}}
	f := cmd.Flags()
	f.BoolVar(&us.RequireSCRAM, "require-scram", false, "refuse the main password over PLAIN, LOGIN and CRAM-MD5 (534 5.7.9): SCRAM and app passwords only")
	f.BoolVar(&us.Admin, "admin", false, "the web dashboard shows this user every domain and lets them manage the server (--admin=false to take it back)")
	f.Int("max-messages-per-hour", 0, "sending limit for this user")
	f.Int("max-messages-per-day", 0, "sending limit for this user")
	f.Int("max-recipients-per-hour", 0, "sending limit for this user")
	f.Int("max-recipients-per-day", 0, "sending limit for this user")
	return cmd
}
