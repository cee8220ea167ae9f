package mailimport

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"mailroom/internal/store"
	"mailroom/internal/store/sqlite"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o700)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func maildir(t *testing.T, dir string) {
	t.Helper()
	for _, sub := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o700)
	}
}

// A Maildir tree as Dovecot keeps it (Maildir++) and one as mbsync writes
// it (nested) give the same folders, with flags and dates.
func TestScanMaildir(t *testing.T) {
	for _, layout := range []string{"maildir++", "nested"} {
		t.Run(layout, func(t *testing.T) {
			root := t.TempDir()
			maildir(t, root)
			sent, arch := filepath.Join(root, ".Sent"), filepath.Join(root, ".Archive.2024")
			if layout == "nested" {
				sent, arch = filepath.Join(root, "Sent"), filepath.Join(root, "Archive", "2024")
			}
			maildir(t, sent)
			maildir(t, arch)
			writeFile(t, filepath.Join(root, "new", "1.host"), "Subject: new one\n\nbody\n")
			writeFile(t, filepath.Join(root, "cur", "2.host:2,FS"), "Subject: read and flagged\n\nbody\n")
			writeFile(t, filepath.Join(sent, "cur", "3.host:2,RS"), "Subject: sent\n\nbody\n")
			writeFile(t, filepath.Join(arch, "cur", "4.host:2,S"), "Subject: old\n\nbody\n")
			when := time.Date(2019, 3, 4, 5, 6, 7, 0, time.UTC)
			os.Chtimes(filepath.Join(arch, "cur", "4.host:2,S"), when, when)
			folders, err := Scan(root, store.Inbox)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, f := range folders {
				names = append(names, f.Name)
			}
			if want := []string{"INBOX", "Archive/2024", "Sent"}; !slices.Equal(names, want) {
				t.Fatalf("folders %v, want %v", names, want)
			}
			var inbox []Message
			folders[0].read(func(m Message) error { inbox = append(inbox, m); return nil })
			if len(inbox) != 2 || folders[0].Count() != 2 {
				t.Fatalf("INBOX has %d messages (count %d)", len(inbox), folders[0].Count())
			}
			for _, m := range inbox {
				if strings.Contains(string(m.Data), "\n") && !strings.Contains(string(m.Data), "\r\n") {
					t.Errorf("bare LF kept: %q", m.Data)
				}
				if strings.Contains(string(m.Data), "read and flagged") && !slices.Equal(m.Flags, []string{store.FlagFlagged, store.FlagSeen}) {
					t.Errorf("flags %v", m.Flags)
				}
				if strings.Contains(string(m.Data), "new one") && len(m.Flags) != 0 {
					t.Errorf("a message in new/ has flags %v", m.Flags)
				}
			}
			folders[1].read(func(m Message) error {
				if !m.Date.Equal(when) {
					t.Errorf("date %v, want the file's %v", m.Date, when)
				}
				return nil
			})
		})
	}
}

func TestScanMbox(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mbox")
	writeFile(t, path, "From a@b Sat Mar 24 23:00:00 2007\nSubject: one\nStatus: RO\nX-Status: AF\n\n>From the quoted line\n>>From twice\n\nFrom c@d Sun Mar 25 10:00:00 2007 +0200\nSubject: two\n\nbody two\n")
	folders, err := Scan(path, "Old")
	if err != nil {
		t.Fatal(err)
	}
	if len(folders) != 1 || folders[0].Name != "Old" || folders[0].Count() != 2 {
		t.Fatalf("folders %+v", folders)
	}
	var msgs []Message
	folders[0].read(func(m Message) error { msgs = append(msgs, m); return nil })
	if got := string(msgs[0].Data); !strings.Contains(got, "\r\nFrom the quoted line\r\n>From twice\r\n") || strings.HasSuffix(got, "\r\n\r\n") {
		t.Errorf("first message %q", got)
	}
	if !slices.Equal(msgs[0].Flags, []string{store.FlagAnswered, store.FlagFlagged, store.FlagSeen}) {
		t.Errorf("flags %v", msgs[0].Flags)
	}
	if want := time.Date(2007, 3, 25, 10, 0, 0, 0, time.FixedZone("", 2*3600)); !msgs[1].Date.Equal(want) {
		t.Errorf("date %v, want %v", msgs[1].Date, want)
	}
	if _, err := Scan(filepath.Join(t.TempDir()), "x"); err == nil {
		t.Error("an empty directory was taken for a Maildir")
	}
}

// Importing twice imports once.
func TestImportTwice(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.AddDomain(ctx, store.Domain{Name: "a.example"})
	u, err := st.AddUser(ctx, store.User{Address: "alice@a.example", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	maildir(t, root)
	maildir(t, filepath.Join(root, ".Work"))
	writeFile(t, filepath.Join(root, "cur", "1:2,S"), "Message-ID: <1@x>\nSubject: a\n\nx\n")
	writeFile(t, filepath.Join(root, "cur", "2:2,"), "Subject: no id\n\ny\n")
	writeFile(t, filepath.Join(root, ".Work", "new", "3"), "Message-ID: <3@x>\nSubject: c\n\nz\n")
	for round, want := range []Result{{Folders: 2, Imported: 3}, {Folders: 2, Skipped: 3}} {
		folders, err := Scan(root, store.Inbox)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Import(ctx, st, u.ID, folders, nil)
		if err != nil || res != want {
			t.Errorf("round %d: %+v, %v; want %+v", round+1, res, err, want)
		}
	}
	s, err := st.MailboxState(ctx, u.ID, "Work")
	if err != nil || len(s.States) != 1 {
		t.Errorf("Work: %+v, %v", s, err)
	}
	in, _ := st.MailboxState(ctx, u.ID, store.Inbox)
	if len(in.States) != 2 || !slices.Contains(in.States[0].Flags, store.FlagSeen) {
		t.Errorf("INBOX: %+v", in.States)
	}
}
