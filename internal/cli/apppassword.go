package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"mailroom/internal/password"
	"mailroom/internal/store"
)

// appPasswordCommand is "mailroom user app-password": per-application
// secrets a user can give one mail client each and revoke alone.
func (a *app) appPasswordCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "app-password", Short: "Manage a user's application passwords (one per mail client, revocable)"}
	add := &cobra.Command{Use: "add ADDRESS NAME", Short: "Create an app password and print it once", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := normalizeAddress(args[0])
			if err != nil {
				return err
			}
			pw := password.NewApp()
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				err := st.AddAppPassword(ctx, addr, args[1], password.AppHash(pw))
				switch {
				case errors.Is(err, store.ErrExists):
					return fmt.Errorf("%s already has an app password named %q: pick another name, or revoke it with 'mailroom user app-password del %s %s'", addr, args[1], addr, args[1])
				case err != nil:
					return explain(err, "add app password")
				}
				fmt.Fprintf(a.stdout, "app password %q for %s (shown once; log in with it instead of the main password):\n%s\n", args[1], addr, pw)
				return nil
			})
		}}
	var asJSON bool
	list := &cobra.Command{Use: "list ADDRESS", Short: "List a user's app passwords", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := normalizeAddress(args[0])
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				ps, err := st.AppPasswords(ctx, addr)
				if err != nil {
					return explain(err, "list app passwords")
				}
				return printList(a, asJSON, ps, "NAME\tCREATED\tLAST USED", func(p store.AppPassword) []string {
					used := "never"
					if !p.LastUsed.IsZero() {
						used = p.LastUsed.Local().Format(time.DateTime)
					}
					return []string{p.Name, p.Created.Local().Format(time.DateTime), used}
				})
			})
		}}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	del := &cobra.Command{Use: "del ADDRESS NAME", Aliases: []string{"delete", "rm", "revoke"}, Short: "Revoke an app password", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := normalizeAddress(args[0])
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				if err := st.DeleteAppPassword(ctx, addr, args[1]); err != nil {
					return explain(err, "revoke app password")
				}
				fmt.Fprintf(a.stdout, "revoked app password %q of %s\n", args[1], addr)
				return nil
			})
		}}
	cmd.AddCommand(add, list, del)
	return cmd
}
