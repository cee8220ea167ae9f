package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"mailroom/internal/store"
)

// messagesCommand is "mailroom messages": search the message log.
func (a *app) messagesCommand() *cobra.Command {
	var q store.MessageQuery
	var since time.Duration
	var asJSON bool
	cmd := &cobra.Command{Use: "messages", Short: "Search the message log: what was sent and received, and its status",
		Long: "Lists logged messages, newest first, with the status of their latest event; 'mailroom events QUEUE-ID'\nshows one message's timeline.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since > 0 {
				q.Since = time.Now().Add(-since)
			}
			if q.Status != "" && !validKind(q.Status) {
				return fmt.Errorf("--status %q is not an event kind: use one of %s", q.Status, strings.Join(store.EventKinds, ", "))
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				ms, err := st.LoggedMessages(ctx, q)
				if err != nil {
					return err
				}
				return printList(a, asJSON, ms, "CREATED\tQUEUE ID\tSTATUS\tFROM\tTO\tSUBJECT", func(m store.LoggedMessage) []string {
					return []string{m.Created.Local().Format(time.DateTime), m.QueueID, m.Status, m.Sender, strings.Join(m.Recipients, ","), m.Subject}
				})
			})
		}}
	f := cmd.Flags()
	f.StringVar(&q.Recipient, "to", "", "only messages to this recipient")
	f.StringVar(&q.Sender, "from", "", "only messages from this envelope sender")
	f.StringVar(&q.Subject, "subject", "", "only messages whose subject holds this text (any case)")
	f.StringVar(&q.Tag, "tag", "", "only messages with this tag")
	f.StringVar(&q.Status, "status", "", "only messages whose latest event is of this kind (delivered, deferred, bounced...)")
	f.StringVar(&q.Direction, "direction", "", "inbound or outbound")
	f.DurationVar(&since, "since", 0, "only messages of this last while (\"24h\")")
	f.IntVar(&q.Limit, "limit", 100, "at most this many (up to 1000)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// eventsCommand is "mailroom events": what happened to messages.
func (a *app) eventsCommand() *cobra.Command {
	var q store.EventQuery
	var since time.Duration
	var asJSON bool
	cmd := &cobra.Command{Use: "events [QUEUE-ID]", Short: "Show what happened to messages: accepted, delivered, deferred, bounced...",
		Long: "Lists events, newest first: of one message when a queue ID is given (see 'mailroom messages'), else of all.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				q.QueueID = args[0]
			}
			if since > 0 {
				q.Since = time.Now().Add(-since)
			}
			if q.Kind != "" && !validKind(q.Kind) {
				return fmt.Errorf("--kind %q is not an event kind: use one of %s", q.Kind, strings.Join(store.EventKinds, ", "))
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				es, err := st.Events(ctx, q)
				if err != nil {
					return err
				}
				if len(es) == 0 && q.QueueID != "" {
					return fmt.Errorf("no events of %s: see 'mailroom messages' for the queue IDs on record", q.QueueID)
				}
				return printList(a, asJSON, es, "TIME\tQUEUE ID\tEVENT\tRECIPIENT\tREMOTE\tDETAIL", func(e store.Event) []string {
					kind := e.Kind
					if e.Class != "" {
						kind += " (" + e.Class + ")"
					}
					return []string{e.Time.Local().Format(time.DateTime), e.QueueID, kind, e.Recipient, e.Remote, e.Detail}
				})
			})
		}}
	f := cmd.Flags()
	f.StringVar(&q.Recipient, "to", "", "only events of this recipient")
	f.StringVar(&q.Kind, "kind", "", "only events of this kind")
	f.DurationVar(&since, "since", 0, "only events of this last while (\"1h\")")
	f.IntVar(&q.Limit, "limit", 100, "at most this many (up to 1000)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func validKind(k string) bool { return slices.Contains(store.EventKinds, k) }
