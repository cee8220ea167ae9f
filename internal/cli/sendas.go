package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"mailroom/internal/store"
)

// normalizeGrant checks a send-as pattern: an address, "@domain" or "*".
func normalizeGrant(p string) (string, error) {
	switch {
	case p == "*":
		return p, nil
	case strings.HasPrefix(p, "@"):
		d, err := normalizeDomain(p[1:])
		return "@" + d, err
	}
	return normalizeAddress(p)
}

// sendAsCommand is "mailroom user send-as": addresses or domains an admin
// lets a user send as, beyond their own addresses and aliases.
func (a *app) sendAsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "send-as", Short: "Let a user send as other addresses or domains (submission sender rules)"}
	run := func(verb string, fn func(ctx context.Context, st store.Store, addr, pattern string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			addr, err := normalizeAddress(args[0])
			if err != nil {
				return err
			}
			pattern, err := normalizeGrant(args[1])
			if err != nil {
				return fmt.Errorf("%v (or give @domain for a whole domain, or * for any address)", err)
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				if err := fn(ctx, st, addr, pattern); err != nil {
					return explain(err, verb)
				}
				return nil
			})
		}
	}
	add := &cobra.Command{Use: "add ADDRESS PATTERN", Short: "Let ADDRESS send as PATTERN: an address, @domain, or *", Args: cobra.ExactArgs(2),
		RunE: run("grant", func(ctx context.Context, st store.Store, addr, pattern string) error {
			if err := st.AddSenderGrant(ctx, addr, pattern); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s may now send as %s\n", addr, pattern)
			return nil
		})}
	del := &cobra.Command{Use: "del ADDRESS PATTERN", Aliases: []string{"delete", "rm"}, Short: "Withdraw a grant", Args: cobra.ExactArgs(2),
		RunE: run("withdraw grant", func(ctx context.Context, st store.Store, addr, pattern string) error {
			if err := st.DeleteSenderGrant(ctx, addr, pattern); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s may no longer send as %s\n", addr, pattern)
			return nil
		})}
	var asJSON bool
	list := &cobra.Command{Use: "list ADDRESS", Short: "List what a user may send as besides their own addresses", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := normalizeAddress(args[0])
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				if _, err := st.User(ctx, addr); err != nil {
					return explain(err, "list grants")
				}
				gs, err := st.SenderGrants(ctx, addr)
				if err != nil {
					return err
				}
				if asJSON {
					return a.printJSON(nonNil(gs))
				}
				for _, g := range gs {
					fmt.Fprintln(a.stdout, g)
				}
				return nil
			})
		}}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(add, list, del)
	return cmd
}
