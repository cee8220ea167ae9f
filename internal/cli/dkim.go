package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"mailroom/internal/dkim"
	"mailroom/internal/records"
	"mailroom/internal/store"
)

// withDomainKeys runs fn with an open store, a local domain (arg,
// normalized; an error naming what when there is no such domain) and its
// DKIM keys.
func (a *app) withDomainKeys(cmd *cobra.Command, arg, what string, fn func(ctx context.Context, st store.Store, d string, keys []store.DKIMKey) error) error {
	d, err := normalizeDomain(arg)
	if err != nil {
		return err
	}
	return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
		if _, err := st.Domain(ctx, d); err != nil {
			return explain(err, what)
		}
		keys, err := st.DKIMKeysOf(ctx, d)
		if err != nil {
			return err
		}
		return fn(ctx, st, d, keys)
	})
}

// recordsCommand is "domain records DOMAIN".
func (a *app) recordsCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{Use: "records DOMAIN", Short: "Print the DNS records a domain needs, for its zone file", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			return a.withDomainKeys(cmd, args[0], "domain records", func(ctx context.Context, st store.Store, d string, keys []store.DKIMKey) error {
				rs, err := records.For(records.FromConfig(cfg, d, keys, time.Now()))
				if err != nil {
					return err
				}
				if asJSON {
					return a.printJSON(rs)
				}
				if len(keys) == 0 {
					fmt.Fprintf(a.stdout, "; %s has no DKIM keys: make them with 'mailroom dkim rotate %s'\n", d, d)
				}
				fmt.Fprint(a.stdout, records.Zone(rs))
				return nil
			})
		}}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) dkimCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "dkim", Short: "Manage the domains' DKIM keys"}
	var asJSON bool
	keys := &cobra.Command{Use: "keys [DOMAIN]", Short: "List DKIM keys and what each is doing", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := optionalDomain(args)
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				ks, err := st.DKIMKeysOf(ctx, d)
				if err != nil {
					return err
				}
				type row struct {
					store.DKIMKey
					State dkim.State `json:"state"`
				}
				now := time.Now()
				var rows []row
				for _, dom := range domainsOf(ks) {
					states := dkim.States(dom, now)
					for i, k := range dom {
						rows = append(rows, row{k, states[i]})
					}
				}
				return printList(a, asJSON, rows, "DOMAIN\tSELECTOR\tALGORITHM\tSTATE\tSIGNS FROM\tRETIRES", func(r row) []string {
					retire := "-"
					if !r.RetireAt.IsZero() {
						retire = r.RetireAt.UTC().Format(time.DateTime)
					}
					return []string{r.Domain, r.Selector, r.Algorithm, string(r.State), r.SignFrom.UTC().Format(time.DateTime), retire}
				})
			})
		}}
	keys.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var wait, keep time.Duration
	rotate := &cobra.Command{Use: "rotate DOMAIN", Short: "Make new DKIM keys; they sign once published, the old ones retire after",
		Long: `Makes a new key per algorithm. They sign from --wait on (publish their records before that:
'mailroom domain records DOMAIN' prints them); the keys signing now retire --keep after that (their
records can go then). A domain without keys gets keys that sign at once.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withDomainKeys(cmd, args[0], "dkim rotate", func(ctx context.Context, st store.Store, d string, old []store.DKIMKey) error {
				now := time.Now()
				states := dkim.States(old, now)
				signing := 0
				for _, s := range states {
					if s == dkim.Signing {
						signing++
					}
				}
				from := now
				if signing > 0 {
					from = now.Add(wait)
				}
				made, err := dkim.AddKeys(ctx, st, d, now, from)
				if err != nil {
					return err
				}
				for i, k := range old {
					if states[i] == dkim.Signing || states[i] == dkim.Next || (states[i] == dkim.Old && k.RetireAt.IsZero()) {
						if err := st.RetireDKIMKey(ctx, d, k.Selector, from.Add(keep)); err != nil {
							return err
						}
					}
				}
				for _, k := range made {
					fmt.Fprintf(a.stdout, "made DKIM key %s (%s) for %s, signing from %s\n", k.Selector, k.Algorithm, d, k.SignFrom.UTC().Format(time.DateTime))
				}
				if signing > 0 {
					fmt.Fprintf(a.stdout, "the keys signing now retire at %s\n", from.Add(keep).UTC().Format(time.DateTime))
					fmt.Fprintf(a.stdout, "next: publish the new records before %s: 'mailroom domain records %s' prints them\n", from.UTC().Format(time.DateTime), d)
				} else {
					fmt.Fprintf(a.stdout, "next: publish their records: 'mailroom domain records %s' prints them\n", d)
				}
				return nil
			})
		}}
	rotate.Flags().DurationVar(&wait, "wait", 72*time.Hour, "how long before the new keys sign (time to publish their records)")
	rotate.Flags().DurationVar(&keep, "keep", 7*24*time.Hour, "how long the old keys stay published after that (mail in transit still verifies)")

	var force bool
	del := &cobra.Command{Use: "delete DOMAIN SELECTOR", Aliases: []string{"del", "rm"}, Short: "Forget a retired DKIM key", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withDomainKeys(cmd, args[0], "dkim delete", func(ctx context.Context, st store.Store, d string, ks []store.DKIMKey) error {
				states := dkim.States(ks, time.Now())
				for i, k := range ks {
					if k.Selector != args[1] {
						continue
					}
					if states[i] != dkim.Retired && !force {
						return fmt.Errorf("DKIM key %s of %s is %s, not retired: rotate first ('mailroom dkim rotate %s'), or give --force to stop signing with it now", k.Selector, d, states[i], d)
					}
					if err := st.DeleteDKIMKey(ctx, d, k.Selector); err != nil {
						return explain(err, "dkim delete")
					}
					fmt.Fprintf(a.stdout, "deleted DKIM key %s of %s; remove its record %s\n", k.Selector, d, dkim.Name(k))
					return nil
				}
				return explain(fmt.Errorf("DKIM selector %s of %s: %w", args[1], d, store.ErrNotFound), "dkim delete")
			})
		}}
	del.Flags().BoolVar(&force, "force", false, "delete a key that is not retired yet (a key that leaked)")
	cmd.AddCommand(keys, rotate, del)
	return cmd
}

// domainsOf groups keys listed by domain.
func domainsOf(ks []store.DKIMKey) [][]store.DKIMKey {
	var out [][]store.DKIMKey
	for i := 0; i < len(ks); {
		j := i
		for j < len(ks) && ks[j].Domain == ks[i].Domain {
			j++
		}
		out = append(out, ks[i:j])
		i = j
	}
	return out
}
