// Package mailimport moves mail from another server into Mailroom: it reads
// an mbox file or a Maildir tree (Maildir++ folders, as Dovecot keeps them,
// or nested ones, as mbsync writes them) with their flags and dates, and
// appends what the user's mailboxes do not have yet, so that an import can
// run again after an interruption.
package mailimport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"mailroom/internal/message"
	"mailroom/internal/store"
)

// Message is one message found on disk.
type Message struct {
	Flags []string
	Date  time.Time
	// Data is the message with CRLF line ends.
	Data []byte
}

// Folder is one folder found on disk, by its Mailroom name.
type Folder struct {
	Name  string
	count int
	read  func(fn func(Message) error) error
}

// Count is how many messages the folder has.
func (f *Folder) Count() int { return f.count }

// MaxMessage is the largest message imported; larger ones are reported and
// skipped.
const MaxMessage = 64 << 20

// Scan finds the folders of a path: an mbox file (one folder, named
// target), or a Maildir tree whose root is INBOX.
func Scan(path, target string) ([]*Folder, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		f := &Folder{Name: target, read: func(fn func(Message) error) error { return readMbox(path, fn) }}
		if err := f.read(func(Message) error { f.count++; return nil }); err != nil {
			return nil, err
		}
		return []*Folder{f}, nil
	}
	if !isMaildir(path) {
		return nil, fmt.Errorf("%s is neither an mbox file nor a Maildir (a directory with cur, new and tmp)", path)
	}
	var out []*Folder
	add := func(dir, name string) error {
		f := &Folder{Name: name, read: func(fn func(Message) error) error { return readMaildir(dir, fn) }}
		for _, sub := range []string{"cur", "new"} {
			entries, err := os.ReadDir(filepath.Join(dir, sub))
			if err != nil {
				return err
			}
			for _, e := range entries {
				if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
					f.count++
				}
			}
		}
		out = append(out, f)
		return nil
	}
	if err := add(path, store.Inbox); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		n := e.Name()
		dir := filepath.Join(path, n)
		switch {
		case !e.IsDir() || n == "cur" || n == "new" || n == "tmp":
		case strings.HasPrefix(n, "."):
			// Maildir++ (Dovecot's layout): ".Archive.2024" is Archive/2024.
			if isMaildir(dir) {
				if err := add(dir, strings.ReplaceAll(strings.TrimPrefix(n, "."), ".", store.Separator)); err != nil {
					return nil, err
				}
			}
		default:
			// Nested folders (mbsync's SubFolders Verbatim).
			if err := walkNested(dir, n, add); err != nil {
				return nil, err
			}
		}
	}
	slices.SortFunc(out, func(a, b *Folder) int {
		switch {
		case a.Name == store.Inbox:
			return -1
		case b.Name == store.Inbox:
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// walkNested adds a nested Maildir folder and those below it.
func walkNested(dir, name string, add func(dir, name string) error) error {
	if isMaildir(dir) {
		if err := add(dir, name); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		n := e.Name()
		if !e.IsDir() || n == "cur" || n == "new" || n == "tmp" || strings.HasPrefix(n, ".") {
			continue
		}
		if err := walkNested(filepath.Join(dir, n), name+store.Separator+n, add); err != nil {
			return err
		}
	}
	return nil
}

func isMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}

// crlf turns bare LF line ends into CRLF.
func crlf(b []byte) []byte {
	if !bytes.Contains(b, []byte("\n")) {
		return b
	}
	out := make([]byte, 0, len(b)+len(b)/40)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// readMaildir reads the messages of one Maildir folder: flags from the
// ":2," info of the file name (RFC-less but universal: D draft, F
// flagged, R replied, S seen, T trashed), dates from the file's time.
func readMaildir(dir string, fn func(Message) error) error {
	for _, sub := range []string{"cur", "new"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			return err
		}
		for _, e := range entries {
			if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			path := filepath.Join(dir, sub, e.Name())
			info, err := e.Info()
			if err != nil {
				return err
			}
			if info.Size() > MaxMessage {
				return fmt.Errorf("%s: %d octets is larger than %d", path, info.Size(), MaxMessage)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			m := Message{Date: info.ModTime(), Data: crlf(data)}
			if _, fl, ok := strings.Cut(e.Name(), ":2,"); ok {
				for _, c := range fl {
					switch c {
					case 'D':
						m.Flags = append(m.Flags, store.FlagDraft)
					case 'F':
						m.Flags = append(m.Flags, store.FlagFlagged)
					case 'R':
						m.Flags = append(m.Flags, store.FlagAnswered)
					case 'S':
						m.Flags = append(m.Flags, store.FlagSeen)
					case 'T':
						m.Flags = append(m.Flags, store.FlagDeleted)
					}
				}
			}
			if err := fn(m); err != nil {
				return err
			}
		}
	}
	return nil
}

// readMbox reads an mbox file (mboxrd and mboxo alike): messages begin at
// "From " lines, ">From " lines lose one '>', and the Status and X-Status
// fields mutt and Dovecot write give the flags.
func readMbox(path string, fn func(Message) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	var cur *Message
	var body bytes.Buffer
	flush := func() error {
		if cur == nil {
			return nil
		}
		data := body.Bytes()
		data = bytes.TrimSuffix(data, []byte("\n")) // the blank line before the next "From "
		cur.Data = crlf(append([]byte(nil), data...))
		cur.Flags = mboxFlags(cur.Data)
		err := fn(*cur)
		body.Reset()
		return err
	}
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			switch {
			case bytes.HasPrefix(line, []byte("From ")):
				if err := flush(); err != nil {
					return err
				}
				cur = &Message{Date: mboxDate(string(line))}
			case cur == nil:
				return fmt.Errorf("%s does not start with a \"From \" line: not an mbox file", path)
			default:
				if q := bytes.TrimLeft(line, ">"); len(q) < len(line) && bytes.HasPrefix(q, []byte("From ")) {
					line = line[1:]
				}
				if body.Len()+len(line) > MaxMessage {
					return fmt.Errorf("%s: a message is larger than %d octets", path, MaxMessage)
				}
				body.Write(line)
			}
		}
		if errors.Is(err, io.EOF) {
			return flush()
		}
		if err != nil {
			return err
		}
	}
}

// mboxDate reads the date of a "From " line, or returns now.
func mboxDate(line string) time.Time {
	f := strings.Fields(line)
	if len(f) >= 7 {
		s := strings.Join(f[2:], " ")
		for _, layout := range []string{"Mon Jan _2 15:04:05 2006 -0700", "Mon Jan _2 15:04:05 2006", "Mon Jan _2 15:04:05 MST 2006"} {
			if t, err := time.Parse(layout, s); err == nil {
				return t
			}
		}
	}
	return time.Now()
}

// mboxFlags reads the Status and X-Status fields of a message's header.
func mboxFlags(msg []byte) []string {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	}
	var flags []string
	for line := range bytes.Lines(msg[:end]) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		v := string(bytes.TrimSpace(value))
		switch strings.ToLower(string(name)) {
		case "status":
			if strings.Contains(v, "R") {
				flags = append(flags, store.FlagSeen)
			}
		case "x-status":
			for c, f := range map[rune]string{'A': store.FlagAnswered, 'F': store.FlagFlagged, 'D': store.FlagDeleted, 'T': store.FlagDraft} {
				if strings.ContainsRune(v, c) {
					flags = append(flags, f)
				}
			}
		}
	}
	slices.Sort(flags)
	return flags
}

// Target is what an import writes to.
type Target interface {
	Mailbox(ctx context.Context, userID int64, name string) (store.MailboxInfo, error)
	CreateMailbox(ctx context.Context, userID int64, name, specialUse string) (store.MailboxInfo, error)
	MailboxState(ctx context.Context, userID int64, mailbox string) (store.MailboxState, error)
	Summaries(ctx context.Context, userID int64, mailbox string, uids []uint32, fn func(store.MessageInfo) error) error
	Append(ctx context.Context, userID int64, mailbox string, msgs []store.AppendMessage) (store.AppendResult, error)
}

// Result counts what an import did.
type Result struct {
	Folders, Imported, Skipped int
}

// batch is how many messages one Append commits.
const batch = 200

// Import appends the folders' messages that the user's mailboxes do not
// have yet (the same Message-ID and size, or the same date, subject and
// size without one), creating the folders that are missing; progress is
// called after each message (done, total).
func Import(ctx context.Context, t Target, userID int64, folders []*Folder, progress func(done, total int)) (Result, error) {
	var res Result
	total := 0
	for _, f := range folders {
		total += f.count
	}
	done := 0
	for _, f := range folders {
		if _, err := t.Mailbox(ctx, userID, f.Name); errors.Is(err, store.ErrNotFound) {
			parts := strings.Split(f.Name, store.Separator)
			for i := 1; i <= len(parts); i++ {
				name := strings.Join(parts[:i], store.Separator)
				if _, err := t.CreateMailbox(ctx, userID, name, ""); err != nil && !errors.Is(err, store.ErrExists) {
					return res, fmt.Errorf("create %s: %w", name, err)
				}
			}
		} else if err != nil {
			return res, err
		}
		have, err := existing(ctx, t, userID, f.Name)
		if err != nil {
			return res, err
		}
		res.Folders++
		var pending []store.AppendMessage
		commit := func() error {
			if len(pending) == 0 {
				return nil
			}
			_, err := t.Append(ctx, userID, f.Name, pending)
			pending = pending[:0]
			return err
		}
		err = f.read(func(m Message) error {
			done++
			root := message.Parse(m.Data)
			k := key(root.Envelope, int64(len(m.Data)))
			if have[k] {
				res.Skipped++
			} else {
				have[k] = true
				res.Imported++
				am := store.AppendMessage{Body: bytes.NewReader(m.Data), Size: int64(len(m.Data)), Flags: m.Flags,
					InternalDate: m.Date, Summary: message.Encode(root, m.Data[:root.BodyStart])}
				if e := root.Envelope; e != nil {
					am.Subject = e.Subject
					if len(e.From) > 0 {
						am.From = e.From[0].String()
					}
				}
				pending = append(pending, am)
				if len(pending) >= batch {
					if err := commit(); err != nil {
						return err
					}
				}
			}
			if progress != nil {
				progress(done, total)
			}
			return nil
		})
		if err == nil {
			err = commit()
		}
		if err != nil {
			return res, fmt.Errorf("import into %s: %w", f.Name, err)
		}
	}
	return res, nil
}

// key identifies a message for the duplicate check.
func key(e *message.Envelope, size int64) string {
	if e == nil {
		return fmt.Sprintf("\x00%d", size)
	}
	if e.MessageID != "" {
		return fmt.Sprintf("%s\x00%d", e.MessageID, size)
	}
	return fmt.Sprintf("\x00%s\x00%s\x00%d", e.Date, e.Subject, size)
}

// existing returns the keys of the messages a mailbox has.
func existing(ctx context.Context, t Target, userID int64, name string) (map[string]bool, error) {
	st, err := t.MailboxState(ctx, userID, name)
	if err != nil {
		return nil, err
	}
	uids := make([]uint32, len(st.States))
	for i, m := range st.States {
		uids[i] = m.UID
	}
	have := map[string]bool{}
	err = t.Summaries(ctx, userID, name, uids, func(mi store.MessageInfo) error {
		root, _, ok := message.Decode(mi.Summary)
		if !ok {
			return nil // parsed at first FETCH; not known here
		}
		have[key(root.Envelope, mi.Size-int64(mi.PrefixSize))] = true
		return nil
	})
	return have, err
}
