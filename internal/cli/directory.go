package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"mailroom/internal/config"
	"mailroom/internal/daemon"
	"mailroom/internal/dkim"
	"mailroom/internal/password"
	"mailroom/internal/smtp"
	"mailroom/internal/store"
)

// normalizeAddress checks an address given on the command line and returns
// its canonical form: lower case local part and domain.
func normalizeAddress(s string) (string, error) {
	a, err := smtp.ParseMailbox(s)
	if err != nil || a.IsLiteral() {
		return "", fmt.Errorf("%q is not a mail address: write it like user@example.com", s)
	}
	return strings.ToLower(a.Local) + "@" + a.Domain, nil
}

func normalizeDomain(s string) (string, error) {
	d, err := smtp.NormalizeDomain(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a domain name: write it like example.com", s)
	}
	return d, nil
}

// optionalDomain is the DOMAIN of "list [DOMAIN]", or "" for all.
func optionalDomain(args []string) (string, error) {
	if len(args) == 0 {
		return "", nil
	}
	return normalizeDomain(args[0])
}

func (a *app) domainCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "domain", Short: "Manage the domains Mailroom receives mail for"}
	var catchAll string
	add := &cobra.Command{Use: "add DOMAIN", Short: "Add a local domain", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := normalizeDomain(args[0])
			if err != nil {
				return err
			}
			if catchAll != "" {
				if catchAll, err = normalizeAddress(catchAll); err != nil {
					return err
				}
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				if err := st.AddDomain(ctx, store.Domain{Name: d, CatchAll: catchAll}); err != nil {
					return explain(err, "add domain")
				}
				fmt.Fprintf(a.stdout, "added domain %s\n", d)
				now := time.Now()
				keys, err := dkim.AddKeys(ctx, st, d, now, now)
				if err != nil {
					return fmt.Errorf("the domain was added, its DKIM keys were not (%w): make them with 'mailroom dkim rotate %s'", err, d)
				}
				for _, k := range keys {
					fmt.Fprintf(a.stdout, "made DKIM key %s (%s)\n", k.Selector, k.Algorithm)
				}
				fmt.Fprintf(a.stdout, "next: publish its DNS records: 'mailroom domain records %s' prints them\n", d)
				if catchAll == "" {
					// RFC 5321 4.5.1: every domain needs a postmaster.
					fmt.Fprintf(a.stdout, "next: add users with 'mailroom user add NAME@%s', and a postmaster with 'mailroom alias add postmaster@%s YOU@%s'\n", d, d, d)
				}
				return nil
			})
		}}
	add.Flags().StringVar(&catchAll, "catch-all", "", "local address that receives mail for unknown users of the domain")
	var asJSON bool
	list := &cobra.Command{Use: "list", Short: "List local domains", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				ds, err := st.Domains(ctx)
				if err != nil {
					return err
				}
				return printList(a, asJSON, ds, "DOMAIN\tCATCH-ALL", func(d store.Domain) []string {
					return []string{d.Name, dash(d.CatchAll)}
				})
			})
		}}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	del := &cobra.Command{Use: "del DOMAIN", Aliases: []string{"delete", "rm"}, Short: "Delete a domain without users or aliases", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := normalizeDomain(args[0])
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				if err := st.DeleteDomain(ctx, d); err != nil {
					return explain(err, "delete domain")
				}
				fmt.Fprintf(a.stdout, "deleted domain %s\n", d)
				return nil
			})
		}}
	cmd.AddCommand(add, list, del, a.recordsCommand())
	return cmd
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// forgetDevPassword removes the development user's generated password,
// kept in the data directory until it is changed.
func (a *app) forgetDevPassword() {
	if cfg, err := a.config(); err == nil {
		os.Remove(filepath.Join(cfg.DataDir, daemon.DevPasswordFile))
	}
}

// passwordFlags are the ways a command gets a new password.
type passwordFlags struct {
	stdin    bool // --password-stdin
	generate bool // --generate
}

func (f *passwordFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.stdin, "password-stdin", false, "read the password from the first line of standard input")
	cmd.Flags().BoolVar(&f.generate, "generate", false, "make a strong random password and print it once")
}

// readPassword takes the password from stdin (--password-stdin), from a
// prompt on a terminal, or makes one up (--generate, or when there is no
// terminal) and prints it. A password given is checked for strength
// against the user's address.
func (a *app) readPassword(f passwordFlags, addr string) (pw string, generated bool, err error) {
	if f.generate && f.stdin {
		return "", false, errors.New("--generate and --password-stdin exclude each other: choose one")
	}
	if f.generate {
		return daemon.RandomPassword(), true, nil
	}
	if f.stdin {
		line, _ := bufio.NewReader(a.stdin).ReadString('\n')
		pw = strings.TrimRight(line, "\r\n")
		if pw == "" {
			return "", false, errors.New("no password on standard input: pipe it in, e.g. echo 'secret' | mailroom user add ... --password-stdin")
		}
		return pw, false, password.CheckStrength(pw, addr)
	}
	if f, ok := a.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(a.stderr, "Password (empty to generate one): ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return "", false, err
		}
		if len(b) > 0 {
			if err := password.CheckStrength(string(b), addr); err != nil {
				return "", false, err
			}
			fmt.Fprint(a.stderr, "Repeat password: ")
			b2, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(a.stderr)
			if err != nil {
				return "", false, err
			}
			if string(b) != string(b2) {
				return "", false, errors.New("the passwords differ: run the command again")
			}
			return string(b), false, nil
		}
	}
	return daemon.RandomPassword(), true, nil
}

// only when the configuration turns CRAM-MD5 on.
func (a *app) secrets(pw string) (store.Secrets, error) {
	cfg, err := a.config()
	if err != nil {
		return store.Secrets{}, err
	}
	hash, scramV, cram, err := password.Derive(pw, cfg.Submission.CRAMMD5)
	return store.Secrets{Hash: hash, SCRAMSHA256: scramV, CRAMMD5: cram}, err
}

func (a *app) userCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage users (mailboxes that can log in)"}
	cmd.AddCommand(a.userAddCommand(), a.userImportCommand(), a.userListCommand(), a.userDelCommand(), a.userPasswdCommand(), a.userSetCommand(), a.appPasswordCommand(), a.sendAsCommand())
	return cmd
}

func (a *app) userAddCommand() *cobra.Command {
	var pwf passwordFlags
	var quota string
	add := &cobra.Command{Use: "add ADDRESS", Short: "Add a user with an INBOX", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := normalizeAddress(args[0])
			if err != nil {
				return err
			}
			var q config.Size
			if quota != "" {
				if err := q.UnmarshalText([]byte(quota)); err != nil {
					return fmt.Errorf("--quota: %v", err)
				}
			}
			pw, generated, err := a.readPassword(pwf, addr)
			if err != nil {
				return err
			}
			sec, err := a.secrets(pw)
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				_, err := st.AddUser(ctx, store.User{Address: addr, PasswordHash: sec.Hash, SCRAMSHA256: sec.SCRAMSHA256, CRAMMD5: sec.CRAMMD5, QuotaBytes: int64(q)})
				if errors.Is(err, store.ErrNotFound) {
					_, domain, _ := strings.Cut(addr, "@")
					return fmt.Errorf("add user: %s is not a local domain: add it first with 'mailroom domain add %s'", domain, domain)
				}
				if err != nil {
					return explain(err, "add user")
				}
				fmt.Fprintf(a.stdout, "added user %s\n", addr)
				if generated {
					fmt.Fprintf(a.stdout, "password (shown once): %s\n", pw)
				}
				return nil
			})
		}}
	pwf.add(add)
	add.Flags().StringVar(&quota, "quota", "", `mailbox quota such as "2GiB" (default: mailbox.quota)`)
	return add
}

func (a *app) userListCommand() *cobra.Command {
	var asJSON bool
	list := &cobra.Command{Use: "list [DOMAIN]", Short: "List users", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			domain, err := optionalDomain(args)
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				us, err := st.Users(ctx, domain)
				if err != nil {
					return err
				}
				return printList(a, asJSON, us, "ADDRESS\tUSED BYTES\tQUOTA", func(u store.User) []string {
					q := "default"
					if u.QuotaBytes > 0 {
						b, _ := config.Size(u.QuotaBytes).MarshalText()
						q = string(b)
					}
					return []string{u.Address, strconv.FormatInt(u.UsedBytes, 10), q}
				})
			})
		}}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return list
}

func (a *app) userDelCommand() *cobra.Command {
	return &cobra.Command{Use: "del ADDRESS", Aliases: []string{"delete", "rm"}, Short: "Delete a user and all their mail", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := normalizeAddress(args[0])
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				if err := st.DeleteUser(ctx, addr); err != nil {
					return explain(err, "delete user")
				}
				fmt.Fprintf(a.stdout, "deleted user %s and their mail\n", addr)
				return nil
			})
		}}
}

func (a *app) userPasswdCommand() *cobra.Command {
	var pwf passwordFlags
	passwd := &cobra.Command{Use: "passwd ADDRESS", Short: "Set a user's password", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := normalizeAddress(args[0])
			if err != nil {
				return err
			}
			pw, generated, err := a.readPassword(pwf, addr)
			if err != nil {
				return err
			}
			sec, err := a.secrets(pw)
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				if err := st.SetPassword(ctx, addr, sec); err != nil {
					return explain(err, "set password")
				}
				// Signed in to the dashboard with the old password: no longer.
				if _, err := st.DeleteSessions(ctx, addr, time.Now().Add(24*time.Hour)); err != nil {
					return explain(err, "end the user's dashboard sessions")
				}
				fmt.Fprintf(a.stdout, "password of %s changed\n", addr)
				if addr == daemon.DevUser {
					a.forgetDevPassword()
				}
				if generated {
					fmt.Fprintf(a.stdout, "password (shown once): %s\n", pw)
				}
				return nil
			})
		}}
	pwf.add(passwd)
	return passwd
}

func (a *app) aliasCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "alias", Short: "Manage aliases (addresses that forward to local users)"}
	add := &cobra.Command{Use: "add ADDRESS TARGET...", Short: "Add an alias delivering to one or more local addresses", Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := normalizeAddress(args[0])
			if err != nil {
				return err
			}
			var targets []string
			for _, t := range args[1:] {
				n, err := normalizeAddress(t)
				if err != nil {
					return err
				}
				targets = append(targets, n)
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				var elsewhere []string
				for _, t := range targets {
					_, domain, _ := strings.Cut(t, "@")
					if _, err := st.Domain(ctx, domain); errors.Is(err, store.ErrNotFound) {
						elsewhere = append(elsewhere, t)
					}
				}
				err := st.AddAlias(ctx, store.Alias{Address: addr, Targets: targets})
				if errors.Is(err, store.ErrNotFound) {
					_, domain, _ := strings.Cut(addr, "@")
					return fmt.Errorf("add alias: %s is not a local domain: add it first with 'mailroom domain add %s'", domain, domain)
				}
				if err != nil {
					return explain(err, "add alias")
				}
				fmt.Fprintf(a.stdout, "added alias %s -> %s\n", addr, strings.Join(targets, ", "))
				if len(elsewhere) > 0 {
					fmt.Fprintf(a.stdout, "mail for %s is forwarded to %s with its envelope sender rewritten (SRS), so that SPF passes there; mail failing its author's DMARC policy of reject is not forwarded\n", addr, strings.Join(elsewhere, ", "))
				}
				return nil
			})
		}}
	var asJSON bool
	list := &cobra.Command{Use: "list [DOMAIN]", Short: "List aliases", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			domain, err := optionalDomain(args)
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				as, err := st.Aliases(ctx, domain)
				if err != nil {
					return err
				}
				return printList(a, asJSON, as, "ALIAS\tTARGETS", func(al store.Alias) []string {
					return []string{al.Address, strings.Join(al.Targets, ", ")}
				})
			})
		}}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	del := &cobra.Command{Use: "del ADDRESS", Aliases: []string{"delete", "rm"}, Short: "Delete an alias", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := normalizeAddress(args[0])
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				if err := st.DeleteAlias(ctx, addr); err != nil {
					return explain(err, "delete alias")
				}
				fmt.Fprintf(a.stdout, "deleted alias %s\n", addr)
				return nil
			})
		}}
	cmd.AddCommand(add, list, del)
	return cmd
}
