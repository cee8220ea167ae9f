package cli

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"mailroom/internal/store"
)

// queueCommand is "mailroom queue": look at and steer the outbound queue,
// while the server runs or not.
func (a *app) queueCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "queue", Short: "Look at and steer the outbound queue"}
	var asJSON bool
	list := &cobra.Command{Use: "list", Short: "List queued recipients", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				es, err := st.QueueEntries(ctx, "")
				if err != nil {
					return err
				}
				return a.printEntries(es, asJSON)
			})
		}}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	show := &cobra.Command{Use: "show ID", Short: "Show the recipients of one queued message", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				es, err := st.QueueEntries(ctx, args[0])
				if err != nil {
					return err
				}
				if len(es) == 0 {
					return fmt.Errorf("no queued message %s: see 'mailroom queue list'", args[0])
				}
				return a.printEntries(es, true)
			})
		}}
	var all bool
	retry := &cobra.Command{Use: "retry ID|--all", Short: "Try waiting recipients again now", Args: cobra.MaximumNArgs(1),
		RunE: a.queueAction(&all, "retried", func(ctx context.Context, st store.Store, id string) (int, error) { return st.RetryNow(ctx, id) })}
	retry.Flags().BoolVar(&all, "all", false, "every waiting recipient")
	hold := &cobra.Command{Use: "hold ID", Short: "Stop trying a queued message until released", Args: cobra.ExactArgs(1),
		RunE: a.queueAction(nil, "held", func(ctx context.Context, st store.Store, id string) (int, error) { return st.SetHeld(ctx, id, true) })}
	release := &cobra.Command{Use: "release ID", Short: "Try a held message again", Args: cobra.ExactArgs(1),
		RunE: a.queueAction(nil, "released", func(ctx context.Context, st store.Store, id string) (int, error) { return st.SetHeld(ctx, id, false) })}
	del := &cobra.Command{Use: "delete ID", Aliases: []string{"del", "rm"}, Short: "Remove a queued message without delivering or bouncing it", Args: cobra.ExactArgs(1),
		RunE: a.queueAction(nil, "deleted", func(ctx context.Context, st store.Store, id string) (int, error) { return st.DeleteQueued(ctx, id) })}
	stats := &cobra.Command{Use: "stats", Short: "Count queued recipients by state", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				n, err := st.QueueStats(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					return a.printJSON(map[string]int{"pending": n.Pending, "deferred": n.Deferred, "held": n.Held,
						"sending": n.Sending, "total": n.Total})
				}
				fmt.Fprintf(a.stdout, "pending %d, deferred %d, held %d, sending %d, total %d\n", n.Pending, n.Deferred, n.Held, n.Sending, n.Total)
				return nil
			})
		}}
	stats.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(list, show, retry, hold, release, del, stats)
	return cmd
}

// queueAction runs an action on one queue ID (or all with --all).
func (a *app) queueAction(all *bool, done string, fn func(context.Context, store.Store, string) (int, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		id := ""
		switch {
		case len(args) == 1:
			id = args[0]
		case all == nil || !*all:
			return fmt.Errorf("give a queue ID (see 'mailroom queue list') or --all")
		}
		return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
			n, err := fn(ctx, st, id)
			if err != nil {
				return err
			}
			if n == 0 && id != "" {
				return fmt.Errorf("no waiting recipient of %s: see 'mailroom queue list'", id)
			}
			fmt.Fprintf(a.stdout, "%s %d recipients\n", done, n)
			return nil
		})
	}
}

// queuedRow is one row of "queue list --json".
type queuedRow struct {
	QueueID     string    `json:"queue_id"`
	From        string    `json:"from"`
	To          string    `json:"to"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	LastError   string    `json:"last_error,omitempty"`
	Held        bool      `json:"held"`
	Active      bool      `json:"active"` // a delivery is under way
	Size        int64     `json:"size"`
}

func (a *app) printEntries(es []store.QueueEntry, asJSON bool) error {
	rows := []queuedRow{}
	for _, e := range es {
		rows = append(rows, queuedRow{e.QueueID, e.MailFrom, e.Recipient.Address, e.State, e.Attempts, e.NextAttempt.UTC().Truncate(time.Second), e.LastError, e.Held, e.Active, e.Size})
	}
	return printList(a, asJSON, rows, "QUEUE ID\tTO\tSTATE\tATTEMPTS\tNEXT ATTEMPT\tLAST ERROR", func(r queuedRow) []string {
		state, next := r.State, r.NextAttempt.Local().Format(time.DateTime)
		if r.Held {
			state += " (held)"
		}
		if r.Active {
			state, next = state+" (sending)", "now"
		}
		return []string{r.QueueID, r.To, state, strconv.Itoa(r.Attempts), next, clip(r.LastError, 50)}
	})
}
