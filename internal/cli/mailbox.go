package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"mailroom/internal/export"
	"mailroom/internal/mailimport"
	"mailroom/internal/store"
)

// listedMessage is one row of "mailbox list --json" (a public contract).
type listedMessage struct {
	ID      uint32    `json:"id"`
	Date    time.Time `json:"date"`
	From    string    `json:"from"`
	Subject string    `json:"subject"`
	Size    int64     `json:"size"`
}

func (a *app) lookupUser(ctx context.Context, st store.Store, arg string) (store.User, error) {
	addr, err := normalizeAddress(arg)
	if err != nil {
		return store.User{}, err
	}
	u, err := st.User(ctx, addr)
	if err != nil {
		return u, fmt.Errorf("%s is not a user: see 'mailroom user list'", addr)
	}
	return u, nil
}

func (a *app) mailboxCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "mailbox", Short: "Look at users' mail"}
	var asJSON bool
	var folder string
	list := &cobra.Command{Use: "list ADDRESS", Short: "List the messages in a user's INBOX (or --folder)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				u, err := a.lookupUser(ctx, st, args[0])
				if err != nil {
					return err
				}
				msgs, err := st.Messages(ctx, u.ID, folder)
				if err != nil {
					return explain(err, "mailbox list")
				}
				out := []listedMessage{}
				for _, m := range msgs {
					out = append(out, listedMessage{ID: m.UID, Date: m.Date.UTC().Truncate(time.Second), From: m.From, Subject: m.Subject, Size: m.Size})
				}
				return printList(a, asJSON, out, "ID\tDATE\tFROM\tSUBJECT\tSIZE", func(m listedMessage) []string {
					return []string{strconv.FormatUint(uint64(m.ID), 10), m.Date.Local().Format("2006-01-02 15:04"),
						clip(m.From, 30), clip(m.Subject, 50), strconv.FormatInt(m.Size, 10)}
				})
			})
		}}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	list.Flags().StringVar(&folder, "folder", store.Inbox, "the folder to list ('mailbox folders ADDRESS' lists them)")
	cat := &cobra.Command{Use: "cat ADDRESS ID", Short: "Print a message exactly as stored", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[1], 10, 32)
			if err != nil {
				return fmt.Errorf("%q is not a message ID: take one from 'mailroom mailbox list %s'", args[1], args[0])
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				u, err := a.lookupUser(ctx, st, args[0])
				if err != nil {
					return err
				}
				rc, _, err := st.OpenMessage(ctx, u.ID, folder, uint32(id))
				if err != nil {
					return explain(err, "mailbox cat")
				}
				defer rc.Close()
				_, err = io.Copy(a.stdout, rc)
				return err
			})
		}}
	cat.Flags().StringVar(&folder, "folder", store.Inbox, "the folder the message is in")
	cmd.AddCommand(list, cat, a.mailboxDeleteCommand(), a.mailboxFoldersCommand(), a.mailboxImportCommand())
	return cmd
}

// listedFolder is one row of "mailbox folders --json" (a public contract).
type listedFolder struct {
	Name       string `json:"name"`
	SpecialUse string `json:"special_use,omitempty"`
	Messages   int    `json:"messages"`
	Unseen     int    `json:"unseen"`
	Size       int64  `json:"size"`
	Subscribed bool   `json:"subscribed"`
}

func (a *app) mailboxFoldersCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{Use: "folders ADDRESS", Short: "List a user's folders (mailboxes) with their messages", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				u, err := a.lookupUser(ctx, st, args[0])
				if err != nil {
					return err
				}
				mbs, err := st.ListMailboxes(ctx, u.ID)
				if err != nil {
					return err
				}
				out := []listedFolder{}
				for _, mb := range mbs {
					status, err := st.MailboxStatus(ctx, u.ID, mb.Name)
					if err != nil {
						return err
					}
					out = append(out, listedFolder{Name: mb.Name, SpecialUse: mb.SpecialUse, Messages: status.Messages,
						Unseen: status.Unseen, Size: status.Size, Subscribed: mb.Subscribed})
				}
				return printList(a, asJSON, out, "FOLDER\tUSE\tMESSAGES\tUNSEEN\tSIZE\tSUBSCRIBED", func(f listedFolder) []string {
					sub := "no"
					if f.Subscribed {
						sub = "yes"
					}
					return []string{clip(f.Name, 40), f.SpecialUse, strconv.Itoa(f.Messages), strconv.Itoa(f.Unseen),
						strconv.FormatInt(f.Size, 10), sub}
				})
			})
		}}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) mailboxDeleteCommand() *cobra.Command {
	var all bool
	del := &cobra.Command{Use: "delete ADDRESS [ID...] [--all]", Short: "Delete messages from a user's INBOX for good (their space goes back to the quota)",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) > 1) {
				return fmt.Errorf("name the messages to delete (IDs from 'mailroom mailbox list %s') or give --all, not both", args[0])
			}
			var ids []uint32
			for _, arg := range args[1:] {
				id, err := strconv.ParseUint(arg, 10, 32)
				if err != nil || id == 0 {
					return fmt.Errorf("%q is not a message ID: take them from 'mailroom mailbox list %s'", arg, args[0])
				}
				ids = append(ids, uint32(id))
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				u, err := a.lookupUser(ctx, st, args[0])
				if err != nil {
					return err
				}
				if all {
					msgs, err := st.Messages(ctx, u.ID, store.Inbox)
					if err != nil {
						return err
					}
					for _, m := range msgs {
						ids = append(ids, m.UID)
					}
				}
				removed, err := st.Expunge(ctx, u.ID, store.Inbox, ids)
				if err != nil {
					return explain(err, "mailbox delete")
				}
				fmt.Fprintf(a.stdout, "deleted %d messages from %s\n", len(removed), u.Address)
				if missing := len(ids) - len(removed); missing > 0 && !all {
					return fmt.Errorf("%d of the IDs given are not in the INBOX of %s: see 'mailroom mailbox list %s'", missing, u.Address, u.Address)
				}
				return nil
			})
		}}
	del.Flags().BoolVar(&all, "all", false, "delete every message in the INBOX")
	return del
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func (a *app) exportCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{Use: "export ADDRESS DIR", Short: "Write a user's mail as a Maildir or an mbox file", Args: cobra.ExactArgs(2),
		Long: "Writes the user's INBOX as a Maildir in DIR (--format maildir, the default) or as DIR/INBOX.mbox (--format mbox).",
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "maildir" && format != "mbox" {
				return fmt.Errorf("--format %q: use maildir or mbox", format)
			}
			dir := args[1]
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				u, err := a.lookupUser(ctx, st, args[0])
				if err != nil {
					return err
				}
				progress := a.progressBar()
				var res export.Result
				target := dir
				if format == "maildir" {
					res, err = export.Maildir(ctx, st, u.ID, dir, progress)
				} else {
					if err := os.MkdirAll(dir, 0o700); err != nil {
						return err
					}
					target = dir + string(os.PathSeparator) + "INBOX.mbox"
					res, err = export.Mbox(ctx, st, u.ID, target, progress)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "exported %d messages of %s to %s (%s)", res.Written, u.Address, target, format)
				if res.Kept > 0 {
					fmt.Fprintf(a.stdout, "; %d already there from an earlier export", res.Kept)
				}
				fmt.Fprintln(a.stdout)
				return nil
			})
		}}
	cmd.Flags().StringVar(&format, "format", "maildir", "maildir or mbox")
	return cmd
}

// progressBar draws on stderr when it is a terminal, else does nothing.
func (a *app) progressBar() export.Progress {
	f, ok := a.stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return func(done, total int) {
		const width = 30
		filled := width * done / max(total, 1)
		fmt.Fprintf(f, "\r[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(" ", width-filled), done, total)
		if done == total {
			fmt.Fprintln(f)
		}
	}
}

func (a *app) mailboxImportCommand() *cobra.Command {
	var folder string
	cmd := &cobra.Command{Use: "import ADDRESS PATH", Short: "Import mail from an mbox file or a Maildir tree (folders, flags and dates kept)",
		Long: `Reads PATH, an mbox file or a Maildir directory (its folders as Dovecot keeps them, ".Sent",
".Archive.2024", or nested as mbsync writes them), and appends to the user's mailboxes every message they do
not have yet: the same Message-ID and size count as the same message, so an import can run again after an
interruption. Folders are created as needed; an mbox goes to INBOX unless --folder names another.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			folders, err := mailimport.Scan(args[1], folder)
			if err != nil {
				return fmt.Errorf("%w: give an mbox file or a Maildir directory", err)
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				u, err := a.lookupUser(ctx, st, args[0])
				if err != nil {
					return err
				}
				res, err := mailimport.Import(ctx, st, u.ID, folders, a.progressBar())
				if err != nil {
					return explain(err, "mailbox import")
				}
				fmt.Fprintf(a.stdout, "%d messages imported into %d folders, %d already there\n", res.Imported, res.Folders, res.Skipped)
				return nil
			})
		}}
	cmd.Flags().StringVar(&folder, "folder", store.Inbox, "the folder an mbox file goes to")
	return cmd
}
