// Package export writes a user's mail in formats other tools read: Maildir
// (as mutt, Dovecot and notmuch use it) and mbox (the mboxrd variant, where
// "From " lines in bodies are quoted with '>').
package export

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"mailroom/internal/store"
)

// Progress is told how many messages are done out of how many.
type Progress func(done, total int)

// Result says what an export did.
type Result struct {
	Written int // messages written now
	Kept    int // messages an earlier export had written already
}

// Maildir writes the user's INBOX into dir as a Maildir (cur, new, tmp),
// with LF line ends as Maildir readers (mutt, Dovecot, notmuch) expect.
// Unread messages go to new; read ones to cur with their IMAP flags as
// Maildir info ("2,S" for \Seen). Each file is written to tmp and renamed,
// as the Maildir convention requires. It is incremental: a message an earlier export wrote
// (its file name carries the UID and UIDVALIDITY) is not written again,
// only renamed when its flags changed.
func Maildir(ctx context.Context, st store.Mailboxes, userID int64, dir string, progress Progress) (Result, error) {
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return Result{}, fmt.Errorf("export: %w", err)
		}
	}
	status, err := st.MailboxStatus(ctx, userID, store.Inbox)
	if err != nil {
		return Result{}, fmt.Errorf("export: %w", err)
	}
	existing, err := maildirFiles(dir)
	if err != nil {
		return Result{}, err
	}
	host, _ := os.Hostname()
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	var res Result
	err = each(ctx, st, userID, 0, progress, func(mi store.MessageInfo, open opener) error {
		base := fmt.Sprintf("%d.M%dQ%dV%d.%s", mi.Date.Unix(), mi.Date.Nanosecond()/1000, mi.UID, status.UIDValidity, host)
		// An unread message goes to new (no info), so that readers show it
		// as new; a read one to cur with its flags.
		final := filepath.Join(dir, "new", base)
		if slices.Contains(mi.Flags, `\Seen`) {
			final = filepath.Join(dir, "cur", base+":2,"+maildirFlags(mi.Flags))
		}
		if old, ok := existing[base]; ok {
			res.Kept++
			if old != final {
				return os.Rename(old, final)
			}
			return nil
		}
		rc, _, err := open()
		if err != nil {
			return err
		}
		defer rc.Close()
		tmp := filepath.Join(dir, "tmp", base)
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		w := bufio.NewWriter(f)
		err = writeLF(w, rc, false)
		if err = errors.Join(err, w.Flush(), f.Close()); err != nil {
			os.Remove(tmp)
			return err
		}
		os.Chtimes(tmp, mi.Date, mi.Date)
		res.Written++
		return os.Rename(tmp, final)
	})
	return res, err
}

// maildirFiles maps the base names (without the ":2,..." info) of the
// messages in a Maildir's cur and new to their paths.
func maildirFiles(dir string) (map[string]string, error) {
	out := map[string]string{}
	for _, sub := range []string{"cur", "new"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		for _, e := range entries {
			base, _, _ := strings.Cut(e.Name(), ":")
			out[base] = filepath.Join(dir, sub, e.Name())
		}
	}
	return out, nil
}

// maildirFlags maps IMAP flags to Maildir info letters, in ASCII order.
func maildirFlags(flags []string) string {
	letters := map[string]byte{`\Draft`: 'D', `\Flagged`: 'F', `\Answered`: 'R', `\Seen`: 'S', `\Deleted`: 'T'}
	var out []byte
	for _, l := range []byte("DFRST") {
		for _, f := range flags {
			if letters[f] == l {
				out = append(out, l)
			}
		}
	}
	return string(out)
}

// mboxState is what an mbox export remembers beside the file (PATH.state),
// so that the next export appends only newer messages.
type mboxState struct {
	UIDValidity uint32 `json:"uidvalidity"`
	LastUID     uint32 `json:"last_uid"`
	Size        int64  `json:"size"` // the file's size when written: another change means start over
	Messages    int    `json:"messages"`
}

// Mbox writes the user's INBOX to one mboxrd file. It is incremental: when
// the file is as the last export left it, only newer messages are
// appended; otherwise it is written anew.
func Mbox(ctx context.Context, st store.Mailboxes, userID int64, path string, progress Progress) (Result, error) {
	status, err := st.MailboxStatus(ctx, userID, store.Inbox)
	if err != nil {
		return Result{}, fmt.Errorf("export: %w", err)
	}
	var state mboxState
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if b, err := os.ReadFile(path + ".state"); err == nil && json.Unmarshal(b, &state) == nil {
		fi, err := os.Stat(path)
		if err == nil && fi.Size() == state.Size && state.UIDValidity == status.UIDValidity {
			flags = os.O_WRONLY | os.O_APPEND
		} else {
			state = mboxState{}
		}
	}
	state.UIDValidity = status.UIDValidity
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return Result{}, fmt.Errorf("export: %w", err)
	}
	w := bufio.NewWriter(f)
	res := Result{Kept: state.Messages}
	err = each(ctx, st, userID, state.LastUID, progress, func(m store.MessageInfo, open opener) error {
		rc, mi, err := open()
		if err != nil {
			return err
		}
		defer rc.Close()
		if err := writeMboxMessage(w, mi, rc); err != nil {
			return err
		}
		res.Written++
		state.LastUID = m.UID
		return nil
	})
	err = errors.Join(err, w.Flush(), f.Sync())
	if fi, serr := f.Stat(); serr == nil {
		state.Size = fi.Size()
	}
	err = errors.Join(err, f.Close())
	state.Messages = res.Kept + res.Written
	if b, merr := json.Marshal(state); merr == nil {
		err = errors.Join(err, os.WriteFile(path+".state", b, 0o600))
	}
	return res, err
}

// writeMboxMessage writes one message: the "From " separator line with
// the envelope sender and date, the message with CRLF turned into LF and
// ">"-quoted "From " lines, and a blank line.
func writeMboxMessage(w *bufio.Writer, mi store.MessageInfo, r io.Reader) error {
	sender := "MAILER-DAEMON"
	if s := envelopeSender(mi.SMTPEnvelope); s != "" {
		sender = s
	}
	fmt.Fprintf(w, "From %s %s\n", sender, mi.Date.UTC().Format(time.ANSIC))
	if err := writeLF(w, r, true); err != nil {
		return err
	}
	return w.WriteByte('\n')
}

// writeLF copies a message with its CRLF line ends turned into LF, quoting
// "From " lines with one more '>' when quoteFrom (mboxrd).
func writeLF(w *bufio.Writer, r io.Reader, quoteFrom bool) error {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
			if quoteFrom && isQuotedFrom(line) {
				w.WriteByte('>')
			}
			w.Write(line)
			w.WriteByte('\n')
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// isQuotedFrom reports whether line matches ^>*From  and needs one more '>'.
func isQuotedFrom(line []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(line, ">"), []byte("From "))
}

// envelopeSender returns the stored envelope's MAIL FROM, if it can stand
// in an mbox "From " line (no spaces).
func envelopeSender(env store.SMTPEnvelope) string {
	if strings.ContainsAny(env.MailFrom, " \t\r\n") {
		return ""
	}
	return env.MailFrom
}

// opener opens a message, with all its details (the envelope too).
type opener func() (io.ReadCloser, store.MessageInfo, error)

// each calls fn with every INBOX message above UID after, in UID order;
// fn opens the message only if it needs it.
func each(ctx context.Context, st store.Mailboxes, userID int64, after uint32, progress Progress, fn func(store.MessageInfo, opener) error) error {
	msgs, err := st.Messages(ctx, userID, store.Inbox)
	if err != nil {
		return fmt.Errorf("export: list messages: %w", err)
	}
	for i, m := range msgs {
		if m.UID <= after {
			continue
		}
		open := func() (io.ReadCloser, store.MessageInfo, error) {
			return st.OpenMessage(ctx, userID, store.Inbox, m.UID)
		}
		if err := fn(m, open); err != nil {
			return fmt.Errorf("export: message %d: %w", m.UID, err)
		}
		if progress != nil {
			progress(i+1, len(msgs))
		}
	}
	return nil
}
