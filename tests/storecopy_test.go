package tests

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// TestStoreCopyToPostgres: an installation on the embedded store, with
// mail, flags, a folder, an expunge, an app password and a deferred
// message, is copied with 'mailroom store copy' into PostgreSQL; a node
// started on the copy shows IMAP clients the same UIDVALIDITY, UIDs,
// MODSEQs and flags, takes the same passwords, and has the same queue.
func TestStoreCopyToPostgres(t *testing.T) {
	embeddedOnly(t, "copies an embedded store into PostgreSQL")
	py := requireTool(t, "python3")
	s := newServer(t, "", "[tls]\nself_signed = true\n")
	s.start()
	c := s.dial()
	c.cmd("EHLO copy.example", "250 ")
	for i := 1; i <= 4; i++ {
		if r := c.sendMail("x@remote.example", []string{"alice@example.test"}, fmt.Sprintf("Subject: message %d\r\n\r\nbody %d\r\n", i, i)); !strings.HasPrefix(r, "250 ") {
			t.Fatalf("delivery %d: %q", i, r)
		}
	}
	im := dialIMAPS(t, s.imapsAddr)
	im.cmd(`LOGIN alice@example.test secret-alice`, "OK")
	im.cmd("SELECT INBOX", "OK")
	im.cmd(`STORE 1 +FLAGS (\Seen $Work)`, "OK")
	im.cmd(`STORE 2 +FLAGS (\Deleted)`, "OK")
	im.cmd("EXPUNGE", "OK")
	im.cmd("CREATE Projects", "OK")
	im.cmd("COPY 1:2 Projects", "OK")
	im.cmd("LOGOUT", "OK")
	pw := lastLine(s.cli("user", "app-password", "add", "alice@example.test", "phone"))
	submitSubject(t, s, "someone@remote.example", "deferred") // no DNS here: it waits in the queue
	until(t, s, "the remote message deferred", func() bool { return queuedError(t, s) != "" })
	before := imapState(t, s.imapsAddr)
	queue := s.cli("queue", "list")
	s.stop()

	url := postgresURL(t)
	out := s.cli("store", "copy", "--to", url)
	if !strings.Contains(out, "verified: every table's rows and checksums match") || !strings.Contains(out, "mailbox_messages") {
		t.Fatalf("store copy said:\n%s", out)
	}
	if _, errOut, err := s.run("", "store", "copy", "--to", url); err == nil || !strings.Contains(errOut, "already holds users or mail") {
		t.Errorf("a second copy into the same database: %v %q", err, errOut)
	}
	if _, errOut, err := s.run("", "store", "copy", "--from", "sqlite:"+t.TempDir(), "--to", url); err == nil || !strings.Contains(errOut, "no embedded store in") {
		t.Errorf("a copy from a directory without a store: %v %q", err, errOut)
	}

	s.writeConfig("", fmt.Sprintf("[tls]\nself_signed = true\n[store]\nurl = %q\n", url))
	s.start()
	if after := imapState(t, s.imapsAddr); after != before {
		t.Errorf("IMAP before the copy:\n%s\nand on PostgreSQL:\n%s", before, after)
	}
	if q := s.cli("queue", "list"); q != queue {
		t.Errorf("queue before the copy:\n%s\nand on PostgreSQL:\n%s", queue, q)
	}
	host, port, _ := strings.Cut(s.subAddr, ":")
	if out, _ := exec.Command(py, "-c", pythonSubmit, host, port, "starttls", "alice@example.test", pw).CombinedOutput(); strings.TrimSpace(string(out)) != "sent" {
		t.Errorf("the app password on PostgreSQL: %s", out)
	}
}

// imapState is what an IMAP client knows of alice's mailboxes: each one's
// UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ, and each message's UID, flags,
// MODSEQ, size and subject.
func imapState(t *testing.T, addr string) string {
	t.Helper()
	c := dialIMAPS(t, addr)
	c.cmd(`LOGIN alice@example.test secret-alice`, "OK")
	var b strings.Builder
	for _, mb := range []string{"INBOX", "Projects"} {
		for _, l := range c.cmd("SELECT "+mb+" (CONDSTORE)", "OK") {
			if strings.Contains(l, "UIDVALIDITY") || strings.Contains(l, "UIDNEXT") || strings.Contains(l, "HIGHESTMODSEQ") || strings.HasSuffix(l, "EXISTS") {
				fmt.Fprintln(&b, mb, l)
			}
		}
		for _, l := range c.cmd("FETCH 1:* (UID FLAGS MODSEQ RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])", "OK") {
			// \Recent is the first session's only (RFC 3501 2.3.2).
			l = strings.NewReplacer(` \Recent`, "", `\Recent`, "").Replace(l)
			fmt.Fprintln(&b, mb, l)
		}
	}
	c.cmd("LOGOUT", "OK")
	return b.String()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
