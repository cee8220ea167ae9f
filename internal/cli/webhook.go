package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"mailroom/internal/store"
	"mailroom/internal/webhook"
)

// webhookCommand is "mailroom webhook": endpoints that events are posted to.
func (a *app) webhookCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "webhook", Short: "Manage webhooks: URLs that events are posted to, signed"}
	var domain, events string
	var server bool
	add := &cobra.Command{Use: "add URL (--domain DOMAIN | --server) --events delivered,bounced,...", Short: "Add a webhook and print its signing secret once",
		Args: cobra.ExactArgs(1),
		Long: "Event kinds: " + strings.Join(store.EventKinds, ", ") + ", and inbound (mail received from outside, posted whole).\n" +
			"Each post is signed: Mailroom-Signature: t=UNIX,v1=HEX(HMAC-SHA256(secret, \"UNIX.\" + body)).",
		RunE: func(cmd *cobra.Command, args []string) error {
			h := store.Webhook{URL: args[0], Events: strings.Split(events, ","), Secrets: []string{webhook.NewSecret()}, Created: time.Now()}
			switch {
			case domain != "" && server:
				return errors.New("give one of --domain and --server")
			case domain != "":
				d, err := normalizeDomain(domain)
				if err != nil {
					return err
				}
				h.Owner = "@" + d
			case server:
				h.Owner = "*"
			default:
				return errors.New("whose events? give --domain DOMAIN, or --server for every domain's")
			}
			if err := webhook.Check(h); err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				if d, ok := strings.CutPrefix(h.Owner, "@"); ok {
					if _, err := st.Domain(ctx, d); err != nil {
						return explain(err, "find domain "+d)
					}
				}
				h, err := st.AddWebhook(ctx, h)
				if err != nil {
					return explain(err, "add webhook")
				}
				fmt.Fprintf(a.stdout, "webhook %d for %s, events %s; its signing secret (shown once):\n%s\n", h.ID, ownerName(h.Owner), strings.Join(h.Events, ","), h.Secrets[0])
				return nil
			})
		}}
	add.Flags().StringVar(&domain, "domain", "", "the events of this domain")
	add.Flags().BoolVar(&server, "server", false, "the events of every domain")
	add.Flags().StringVar(&events, "events", "delivered,deferred,bounced,expired,suppressed,complained", "event kinds, comma-separated")
	var asJSON bool
	list := &cobra.Command{Use: "list", Short: "List webhooks", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				hs, err := st.Webhooks(ctx, "")
				if err != nil {
					return explain(err, "list webhooks")
				}
				return printList(a, asJSON, hs, "ID\tOWNER\tURL\tEVENTS", func(h store.Webhook) []string {
					return []string{strconv.FormatInt(h.ID, 10), ownerName(h.Owner), h.URL, strings.Join(h.Events, ",")}
				})
			})
		}}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	withHook := func(use, short, done string, fn func(context.Context, store.Store, store.Webhook) error) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				id, err := strconv.ParseInt(args[0], 10, 64)
				if err != nil {
					return fmt.Errorf("%q is not a webhook ID: see 'mailroom webhook list'", args[0])
				}
				return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
					h, err := st.Webhook(ctx, id)
					if errors.Is(err, store.ErrNotFound) {
						return fmt.Errorf("no webhook %d: see 'mailroom webhook list'", id)
					}
					if err != nil {
						return explain(err, "read webhook")
					}
					if err := fn(ctx, st, h); err != nil {
						return err
					}
					if done != "" {
						fmt.Fprintf(a.stdout, done+"\n", id)
					}
					return nil
				})
			}}
	}
	del := withHook("del ID", "Delete a webhook and its deliveries", "deleted webhook %d", func(ctx context.Context, st store.Store, h store.Webhook) error {
		return explain(st.DeleteWebhook(ctx, h.ID), "delete webhook")
	})
	del.Aliases = []string{"delete", "rm"}
	rotate := withHook("rotate ID", "Make a new signing secret (the current one still signs until the next rotation)", "", func(ctx context.Context, st store.Store, h store.Webhook) error {
		secrets, secret := webhook.Rotate(h)
		if err := st.SetWebhookSecrets(ctx, h.ID, secrets); err != nil {
			return explain(err, "rotate the secret")
		}
		fmt.Fprintf(a.stdout, "webhook %d: the new signing secret (shown once; deliveries carry both signatures until the next rotation):\n%s\n", h.ID, secret)
		return nil
	})
	var state string
	deliveries := withHook("deliveries ID", "List a webhook's latest deliveries with their last answers", "", func(ctx context.Context, st store.Store, h store.Webhook) error {
		ds, err := st.HookDeliveries(ctx, h.ID, state, 100)
		if err != nil {
			return explain(err, "list deliveries")
		}
		return printList(a, asJSON, ds, "DELIVERY\tCREATED\tKIND\tRECIPIENT\tSTATE\tATTEMPTS\tLAST ANSWER", func(d store.HookDelivery) []string {
			last := d.LastError
			if last == "" && d.LastStatus != 0 {
				last = strconv.Itoa(d.LastStatus)
			}
			return []string{strconv.FormatInt(d.ID, 10), d.Created.Local().Format(time.DateTime), d.Kind, d.Event.Recipient, d.State, strconv.Itoa(d.Attempts), last}
		})
	})
	deliveries.Flags().StringVar(&state, "state", "", "only pending, delivered or failed ones")
	deliveries.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	retry := &cobra.Command{Use: "retry DELIVERY-ID", Short: "Post a pending or failed delivery again now", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("%q is not a delivery ID: see 'mailroom webhook deliveries ID'", args[0])
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				if err := st.RetryHookDelivery(ctx, id, time.Now()); err != nil {
					if errors.Is(err, store.ErrNotFound) {
						return fmt.Errorf("no delivery %d waiting or failed (a delivered one is not sent again): see 'mailroom webhook deliveries ID'", id)
					}
					return explain(err, "retry delivery")
				}
				fmt.Fprintf(a.stdout, "delivery %d is due now\n", id)
				return nil
			})
		}}
	cmd.AddCommand(add, list, del, rotate, deliveries, retry)
	return cmd
}
