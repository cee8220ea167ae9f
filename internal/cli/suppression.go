package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"mailroom/internal/store"
)

// suppressionCommand is "mailroom suppression": addresses that bounced
// for good and are not tried again for a while.
func (a *app) suppressionCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "suppression", Short: "Addresses that failed for good and are not mailed again for a while"}
	var asJSON bool
	list := &cobra.Command{Use: "list", Short: "List suppressed addresses", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				ss, err := st.SuppressionList(ctx)
				if err != nil {
					return err
				}
				return printList(a, asJSON, ss, "ADDRESS\tUNTIL\tREASON", func(s store.Suppression) []string {
					return []string{s.Address, s.Until.Local().Format(time.DateTime), clip(s.Reason, 60)}
				})
			})
		}}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	del := &cobra.Command{Use: "del ADDRESS", Aliases: []string{"delete", "rm"}, Short: "Let mail to an address through again", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := normalizeAddress(args[0])
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				if err := st.Unsuppress(ctx, addr); err != nil {
					return explain(err, "suppression del")
				}
				fmt.Fprintf(a.stdout, "%s is no longer suppressed\n", addr)
				return nil
			})
		}}
	cmd.AddCommand(list, del)
	return cmd
}
