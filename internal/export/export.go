// Package export writes a user's mail in formats other tools read: Maildir
// (as mutt, Dovecot and notmuch use it) and mbox (the mboxrd variant, where
// "From " lines in bodies are quoted with '>').
package export

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"mailroom/internal/store"
)

// Progress is told how many messages are done out of how many.
type Progress func(done, total int)

// Maildir writes every message of the user's INBOX into dir as a Maildir
// (cur, new, tmp). Messages go to cur with their IMAP flags as Maildir
// info ("2,S" for \Seen); each file is written to tmp and renamed, as the
// Maildir convention requires.
func Maildir(ctx context.Context, st store.Mailboxes, userID int64, dir string, progress Progress) (int, error) {
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return 0, fmt.Errorf("export: %w", err)
		}
	}
	host, _ := os.Hostname()
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	return each(ctx, st, userID, progress, func(mi store.MessageInfo, r io.Reader) error {
		name := fmt.Sprintf("%d.M%dQ%d.%s", mi.Date.Unix(), mi.Date.Nanosecond()/1000, mi.UID, host)
		tmp := filepath.Join(dir, "tmp", name)
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, r); err != nil {
			f.Close()
			os.Remove(tmp)
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		os.Chtimes(tmp, mi.Date, mi.Date)
		return os.Rename(tmp, filepath.Join(dir, "cur", name+":2,"+maildirFlags(mi.Flags)))
	})
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

// Mbox writes every message of the user's INBOX to one mboxrd file.
func Mbox(ctx context.Context, st store.Mailboxes, userID int64, path string, progress Progress) (int, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, fmt.Errorf("export: %w", err)
	}
	w := bufio.NewWriter(f)
	n, err := each(ctx, st, userID, progress, func(mi store.MessageInfo, r io.Reader) error {
		return writeMboxMessage(w, mi, r)
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// writeMboxMessage writes one message: the "From " separator line with
// the envelope sender and date, the message with CRLF turned into LF and
// ">"-quoted "From " lines, and a blank line.
func writeMboxMessage(w *bufio.Writer, mi store.MessageInfo, r io.Reader) error {
	sender := "MAILER-DAEMON"
	if s := envelopeSender(mi.Envelope); s != "" {
		sender = s
	}
	fmt.Fprintf(w, "From %s %s\n", sender, mi.Date.UTC().Format(time.ANSIC))
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
			if isQuotedFrom(line) {
				w.WriteByte('>')
			}
			w.Write(line)
			w.WriteByte('\n')
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	return w.WriteByte('\n')
}

// isQuotedFrom reports whether line matches ^>*From  and needs one more '>'.
func isQuotedFrom(line []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(line, ">"), []byte("From "))
}

// envelopeSender returns the stored envelope's MAIL FROM, if it can stand
// in an mbox "From " line (no spaces).
func envelopeSender(envJSON string) string {
	var env store.Envelope
	if json.Unmarshal([]byte(envJSON), &env) != nil || strings.ContainsAny(env.MailFrom, " \t\r\n") {
		return ""
	}
	return env.MailFrom
}

// each calls fn with every INBOX message in UID order.
func each(ctx context.Context, st store.Mailboxes, userID int64, progress Progress, fn func(store.MessageInfo, io.Reader) error) (int, error) {
	msgs, err := st.Messages(ctx, userID, store.Inbox)
	if err != nil {
		return 0, fmt.Errorf("export: list messages: %w", err)
	}
	for i, m := range msgs {
		rc, mi, err := st.OpenMessage(ctx, userID, store.Inbox, m.UID)
		if err != nil {
			return i, fmt.Errorf("export: message %d: %w", m.UID, err)
		}
		err = fn(mi, rc)
		rc.Close()
		if err != nil {
			return i, fmt.Errorf("export: message %d: %w", m.UID, err)
		}
		if progress != nil {
			progress(i+1, len(msgs))
		}
	}
	return len(msgs), nil
}
