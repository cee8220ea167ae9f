package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestIMAPSelectLargeAfterChanges: SELECT of a large mailbox (whose state
// the server keeps between SELECTs) shows what other sessions changed in
// between: flags, expunges and new messages, as a session that never saw
// the mailbox before sees them.
func TestIMAPSelectLargeAfterChanges(t *testing.T) {
	const n = 1100 // above the size whose state the server keeps
	s := newServer(t, "", "[tls]\nself_signed = true\n")
	var mbox strings.Builder
	for i := range n {
		fmt.Fprintf(&mbox, "From sender@remote.example Mon Jan  1 00:00:00 2024\nFrom: sender@remote.example\nSubject: note %d\n\nnote %d\n\n", i, i)
	}
	path := filepath.Join(t.TempDir(), "big.mbox")
	if err := os.WriteFile(path, []byte(mbox.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	s.cli("mailbox", "import", "alice@example.test", path, "--folder", "Big")
	s.start()

	a := dialIMAPS(t, s.imapsAddr)
	a.cmd("LOGIN alice@example.test secret-alice", "OK")
	if sel := a.cmd("SELECT Big", "OK [READ-WRITE]"); !has(sel, fmt.Sprintf("* %d EXISTS", n)) {
		t.Fatalf("SELECT Big: %q", sel)
	}
	a.cmd("UNSELECT", "OK")

	b := dialIMAPS(t, s.imapsAddr)
	b.cmd("LOGIN alice@example.test secret-alice", "OK")
	b.cmd("SELECT Big", "OK")
	b.cmd("STORE 1,500,1100 +FLAGS (\\Flagged $Work)", "OK")
	b.cmd("STORE 2:4 +FLAGS.SILENT (\\Deleted)", "OK")
	b.cmd("EXPUNGE", "OK")
	b.cmd("APPEND Big (\\Seen) {19}\r\nSubject: late\r\n\r\nx", "OK")
	b.cmd("STORE 1 -FLAGS (\\Flagged)", "OK")

	state := func(c *imapConn) []string {
		t.Helper()
		out := withoutRecent(c.cmd("FETCH 1:* (UID FLAGS MODSEQ)", "OK"))
		slices.Sort(out)
		return out
	}
	sel := a.cmd("SELECT Big", "OK [READ-WRITE]")
	if !has(sel, fmt.Sprintf("* %d EXISTS", n-3+1)) || !has(sel, "$Work") {
		t.Fatalf("SELECT Big after changes: %q", sel)
	}
	got := state(a)
	fresh := dialIMAPS(t, s.imapsAddr)
	fresh.cmd("LOGIN alice@example.test secret-alice", "OK")
	fresh.cmd("EXAMINE Big", "OK [READ-ONLY]")
	if want := state(b); !slices.Equal(got, want) {
		t.Fatalf("SELECT after changes shows %d lines, the changing session %d; first difference: %q",
			len(got), len(want), firstDifference(got, want))
	}
	if want := state(fresh); !slices.Equal(got, want) {
		t.Fatalf("SELECT after changes and a new session differ: %q", firstDifference(got, want))
	}
	for _, l := range []string{"UID 1 FLAGS ($Work) MODSEQ", "UID 500 FLAGS (\\Flagged $Work) MODSEQ", "UID 1101 FLAGS (\\Seen) MODSEQ"} {
		if !has(got, l) {
			t.Errorf("no %q in the state after changes", l)
		}
	}
	if has(got, "(UID 2 ") || has(got, "(UID 4 ") {
		t.Error("expunged messages are still listed")
	}

	// After a restart the server preloads the state it saved at the first
	// SELECT (a snapshot in the store) with the changes since, here two
	// messages imported while it was stopped.
	s.stop()
	late := filepath.Join(t.TempDir(), "late.mbox")
	if err := os.WriteFile(late, []byte("From x@remote.example Mon Jan  1 00:00:00 2024\nSubject: late 1\n\n1\n\n"+
		"From x@remote.example Mon Jan  1 00:00:00 2024\nSubject: late 2\n\n2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.cli("mailbox", "import", "alice@example.test", late, "--folder", "Big")
	s.start()
	s.waitLog("preloaded the state of large mailboxes")
	if !strings.Contains(s.logs(), fmt.Sprintf("mailboxes=1 messages=%d", n-3+1+2)) {
		t.Errorf("the preload did not keep Big with the messages imported while stopped:\n%s", s.logs())
	}
	restarted := dialIMAPS(t, s.imapsAddr)
	restarted.cmd("LOGIN alice@example.test secret-alice", "OK")
	restarted.cmd("EXAMINE Big", "OK [READ-ONLY]")
	after := state(restarted)
	if len(after) != len(got)+2 {
		t.Fatalf("EXAMINE after a restart shows %d messages, want %d", len(after), len(got)+2)
	}
	for _, l := range got {
		if strings.Contains(l, " FETCH (") && !slices.Contains(after, l) {
			t.Fatalf("after a restart %q is gone", l)
		}
	}
	for _, uid := range []string{"(UID 1102 ", "(UID 1103 "} {
		if !has(after, uid) {
			t.Errorf("no %s after the restart: %q", uid, after[len(after)-3:])
		}
	}
}

// withoutRecent takes \Recent out of FETCH lines: it is one session's only.
func withoutRecent(lines []string) []string {
	r := strings.NewReplacer(` \Recent`, "", `\Recent `, "", `\Recent`, "")
	for i, l := range lines {
		lines[i] = r.Replace(l)
	}
	return lines
}

func firstDifference(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return a[i] + " <> " + b[i]
		}
	}
	return fmt.Sprintf("%d lines against %d", len(a), len(b))
}

// TestIMAPOwnStoreNotReadBack: a session that changed flags does not read
// its own change back, yet sees every change of another session, however
// their STOREs interleave, and announces its own only to the others.
func TestIMAPOwnStoreNotReadBack(t *testing.T) {
	s := newServer(t, "", "[tls]\nself_signed = true\n")
	s.start()
	c := s.dial()
	c.cmd("EHLO store.example", "250 ")
	for i := range 3 {
		c.sendMail("sender@remote.example", []string{"alice@example.test"}, fmt.Sprintf("Subject: %d\r\n\r\nx\r\n", i))
	}
	a := dialIMAPS(t, s.imapsAddr)
	b := dialIMAPS(t, s.imapsAddr)
	for _, x := range []*imapConn{a, b} {
		x.cmd("LOGIN alice@example.test secret-alice", "OK")
		x.cmd("ENABLE CONDSTORE", "OK")
		x.cmd("SELECT INBOX", "OK")
	}
	for i := range 20 {
		kw := fmt.Sprintf("$k%d", i)
		if out := a.cmd("STORE 1 +FLAGS.SILENT ("+kw+")", "OK"); has(out, kw) {
			t.Fatalf("STORE .SILENT answered with the flags: %q", out)
		}
		var seenByB []string
		if i%3 == 0 { // both change before either looks
			seenByB = b.cmd("STORE 2 +FLAGS.SILENT ("+kw+")", "OK")
		}
		if out := a.cmd("NOOP", "OK"); has(out, "* 1 FETCH") {
			t.Fatalf("round %d: the session was told of its own change: %q", i, out)
		} else if i%3 == 0 && !has(out, "* 2 FETCH") {
			t.Fatalf("round %d: the session was not told of the other's change: %q", i, out)
		}
		if out := append(seenByB, b.cmd("NOOP", "OK")...); !has(out, "* 1 FETCH") || !has(out, kw) {
			t.Fatalf("round %d: the other session was not told: %q", i, out)
		}
	}
	fa, fb := withoutRecent(a.cmd("FETCH 1:* (FLAGS MODSEQ)", "OK")), withoutRecent(b.cmd("FETCH 1:* (FLAGS MODSEQ)", "OK"))
	if !slices.Equal(fa, fb) {
		t.Fatalf("the sessions disagree:\n%q\n%q", fa, fb)
	}
}
