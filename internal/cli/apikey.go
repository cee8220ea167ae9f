package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"mailroom/internal/apikey"
	"mailroom/internal/store"
)

// apiKeyCommand is "mailroom apikey": keys of the HTTP API.
func (a *app) apiKeyCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "apikey", Short: "Manage keys of the HTTP API (shown once, revocable, hashed at rest)"}
	var user, domain, scopes string
	var server bool
	var rate int
	add := &cobra.Command{Use: "add NAME (--user ADDRESS | --domain DOMAIN | --server) [--scope send,read,admin]",
		Short: "Create an API key and print it once", Args: cobra.ExactArgs(1),
		Long: "A user's key sends as that user (their addresses and sender grants) and reads their domain's log;\n" +
			"a domain's key sends as any address of the domain and reads its log; the server's key reads every\n" +
			"domain's and may have the admin scope (queue and suppression list).",
		RunE: func(cmd *cobra.Command, args []string) error {
			k := store.APIKey{Name: args[0], Scopes: strings.Split(scopes, ","), RatePerMinute: rate, Created: time.Now()}
			owners := 0
			if user != "" {
				addr, err := normalizeAddress(user)
				if err != nil {
					return err
				}
				k.Owner, owners = addr, owners+1
			}
			if domain != "" {
				d, err := normalizeDomain(domain)
				if err != nil {
					return err
				}
				k.Owner, owners = "@"+d, owners+1
			}
			if server {
				k.Owner, owners = "*", owners+1
			}
			if owners > 1 {
				return errors.New("give one owner: --user, --domain or --server")
			}
			if err := apikey.CheckKey(k); err != nil {
				return err
			}
			token, id, hash := apikey.New()
			k.ID = id
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				switch {
				case strings.HasPrefix(k.Owner, "@"):
					if _, err := st.Domain(ctx, k.Owner[1:]); err != nil {
						return explain(err, "find domain "+k.Owner[1:])
					}
				case k.Owner != "*":
					if _, err := st.User(ctx, k.Owner); err != nil {
						return explain(err, "find user "+k.Owner)
					}
				}
				if err := st.AddAPIKey(ctx, k, hash); err != nil {
					return explain(err, "add API key")
				}
				fmt.Fprintf(a.stdout, "API key %s %q of %s, scopes %s (shown once; send it as \"Authorization: Bearer KEY\"):\n%s\n",
					k.ID, k.Name, ownerName(k.Owner), strings.Join(k.Scopes, ","), token)
				return nil
			})
		}}
	f := add.Flags()
	f.StringVar(&user, "user", "", "the key sends as this user")
	f.StringVar(&domain, "domain", "", "the key sends as any address of this domain")
	f.BoolVar(&server, "server", false, "the server's key: every domain")
	f.StringVar(&scopes, "scope", "send", "scopes, comma-separated: send, read, admin")
	f.IntVar(&rate, "rate", 0, "requests per minute (0: [http] api_rate_per_minute)")
	var asJSON bool
	var owner string
	list := &cobra.Command{Use: "list", Short: "List API keys", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				ks, err := st.APIKeys(ctx, owner)
				if err != nil {
					return explain(err, "list API keys")
				}
				return printList(a, asJSON, ks, "ID\tNAME\tOWNER\tSCOPES\tCREATED\tLAST USED", func(k store.APIKey) []string {
					used := "never"
					if !k.LastUsed.IsZero() {
						used = k.LastUsed.Local().Format(time.DateTime)
					}
					return []string{k.ID, k.Name, ownerName(k.Owner), strings.Join(k.Scopes, ","), k.Created.Local().Format(time.DateTime), used}
				})
			})
		}}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	list.Flags().StringVar(&owner, "owner", "", "only the keys of this owner (an address, @domain, or * for the server's)")
	revoke := &cobra.Command{Use: "revoke ID", Aliases: []string{"del", "delete", "rm"}, Short: "Revoke an API key at once", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				if err := st.DeleteAPIKey(ctx, args[0]); err != nil {
					if errors.Is(err, store.ErrNotFound) {
						return fmt.Errorf("no API key %s: see 'mailroom apikey list'", args[0])
					}
					return explain(err, "revoke API key")
				}
				fmt.Fprintf(a.stdout, "revoked API key %s\n", args[0])
				return nil
			})
		}}
	cmd.AddCommand(add, list, revoke)
	return cmd
}

// ownerName says whose a key is.
func ownerName(owner string) string {
	switch {
	case owner == "*":
		return "the server"
	case strings.HasPrefix(owner, "@"):
		return "domain " + owner[1:]
	}
	return owner
}
