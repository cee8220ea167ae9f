package tests

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// imapConn is a bare IMAP client over implicit TLS, for tests that watch
// the protocol line by line.
type imapConn struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	n    int
}

func dialIMAPS(t *testing.T, addr string) *imapConn {
	t.Helper()
	conn := dialTLS(t, addr)
	c := &imapConn{t: t, conn: conn, r: bufio.NewReader(conn)}
	if g := c.line(); !strings.HasPrefix(g, "* OK ") {
		t.Fatalf("greeting %q", g)
	}
	return c
}

// dialTLS connects to a listener with implicit TLS (the test's
// self-signed certificate), closed when the test ends.
func dialTLS(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("dial %s over TLS: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// line reads one line (literals are not expected in these tests).
func (c *imapConn) line() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (after %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// send writes a raw line.
func (c *imapConn) send(s string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(s + "\r\n")); err != nil {
		c.t.Fatal(err)
	}
}

// cmd runs a command and returns its untagged lines; the tagged status
// must start with want ("OK", "NO", "BAD").
func (c *imapConn) cmd(command, want string) []string {
	c.t.Helper()
	c.n++
	tag := fmt.Sprintf("t%d", c.n)
	c.send(tag + " " + command)
	var untagged []string
	for {
		l := c.line()
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			if !strings.HasPrefix(rest, want) {
				c.t.Fatalf("%s: %q, want %s (untagged %q)", command, rest, want, untagged)
			}
			return untagged
		}
		untagged = append(untagged, l)
	}
}

func has(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// idleOnEmptyInbox logs alice in over implicit TLS, selects her INBOX,
// which must be empty, and starts IDLE (command tag i1).
func idleOnEmptyInbox(t *testing.T, addr string) *imapConn {
	t.Helper()
	c := dialIMAPS(t, addr)
	c.cmd(`LOGIN alice@example.test secret-alice`, "OK")
	if sel := c.cmd("SELECT INBOX", "OK [READ-WRITE]"); !has(sel, "* 0 EXISTS") {
		t.Fatalf("SELECT of an empty INBOX: %q", sel)
	}
	c.send("i1 IDLE")
	if l := c.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	return c
}

// TestIMAPIdleSeesDelivery: a message delivered over SMTP reaches an IDLE
// session on INBOX as EXISTS, and flags and expunges by another session
// reach it as FETCH and EXPUNGE.
func TestIMAPIdleSeesDelivery(t *testing.T) {
	s := newServer(t, "", "[tls]\nself_signed = true\n")
	s.start()
	a := idleOnEmptyInbox(t, s.imapsAddr)
	c := s.dial()
	c.cmd("EHLO idle.example", "250 ")
	start := time.Now()
	c.sendMail("x@remote.example", []string{"alice@example.test"}, "Subject: wake up\r\n\r\nnow\r\n")
	if l := a.line(); l != "* 1 EXISTS" {
		t.Fatalf("while IDLE: %q, want * 1 EXISTS", l)
	}
	if l := a.line(); l != "* 1 RECENT" {
		t.Fatalf("while IDLE: %q, want * 1 RECENT (the message is new to this session)", l)
	}
	t.Logf("delivery to IDLE notice: %v (the 250 included)", time.Since(start).Round(time.Millisecond))
	a.send("DONE")
	if l := a.line(); !strings.HasPrefix(l, "i1 OK") {
		t.Fatalf("DONE: %q", l)
	}

	b := dialIMAPS(t, s.imapsAddr)
	b.cmd(`LOGIN alice@example.test secret-alice`, "OK")
	b.cmd("SELECT INBOX", "OK")
	b.cmd(`STORE 1 +FLAGS (\Deleted)`, "OK")
	if got := a.cmd("NOOP", "OK"); !has(got, `* 1 FETCH (UID 1 FLAGS (\Deleted \Recent))`) {
		t.Errorf("the other session's flag change: %q", got)
	}
	b.cmd("EXPUNGE", "OK")
	if got := a.cmd("NOOP", "OK"); !has(got, "* 1 EXPUNGE") {
		t.Errorf("the other session's expunge: %q", got)
	}
	// No EXPUNGE during FETCH by number (RFC 9051 7.5.1): it waits.
	c.sendMail("x@remote.example", []string{"alice@example.test"}, "Subject: two\r\n\r\nx\r\n")
	a.cmd("NOOP", "OK")
	b.cmd("NOOP", "OK")
	b.cmd(`STORE 1 +FLAGS (\Deleted)`, "OK")
	b.cmd("EXPUNGE", "OK")
	if got := a.cmd("FETCH 1 (FLAGS)", "OK"); has(got, "EXPUNGE") {
		t.Errorf("EXPUNGE sent while answering FETCH: %q", got)
	}
	if got := a.cmd("UID FETCH 1:* (FLAGS)", "OK"); !has(got, "* 1 EXPUNGE") {
		t.Errorf("the expunge held back is not sent with the next UID command: %q", got)
	}
	a.cmd("LOGOUT", "OK")
}

// TestIMAPErrors: wrong commands get BAD with a sentence, a literal over the
// limit NO [TOOBIG], and the session goes on.
func TestIMAPErrors(t *testing.T) {
	s := newServer(t, "", "[tls]\nself_signed = true\n")
	s.start()
	c := dialIMAPS(t, s.imapsAddr)
	c.cmd("FROB", "BAD Unknown command FROB")
	c.cmd("SELECT INBOX", "BAD SELECT is not allowed before logging in")
	c.cmd(`LOGIN alice@example.test wrong`, "NO [AUTHENTICATIONFAILED]")
	c.send("t9 LOGIN {999999}")
	if l := c.line(); !strings.HasPrefix(l, "t9 NO [TOOBIG]") {
		t.Fatalf("a literal too large: %q", l)
	}
	c.cmd(`LOGIN alice@example.test secret-alice`, "OK")
	c.cmd("SELECT Nowhere", "NO [NONEXISTENT]")
	c.cmd("SELECT INBOX", "OK")
	c.cmd("FETCH 5 (FLAGS)", "BAD Message number 5 does not exist")
	c.cmd("FETCH 1:* (FROB)", "BAD Unknown FETCH item FROB")
	c.cmd(`COPY 1:* Archive`, "BAD Message number") // no messages to number
	c.cmd(`UID COPY 1:* Archive`, "OK")             // UIDs: an empty set copies nothing
	c.cmd(`CREATE INBOX`, "NO [ALREADYEXISTS]")
	c.cmd(`DELETE INBOX`, "NO [CANNOT]")
	c.cmd("LOGOUT", "OK")
}

// TestIMAPSearchResult: SEARCH RETURN (SAVE) keeps the result for "$"
// (RFC 5182), and ESEARCH answers MIN, MAX, COUNT and ALL (RFC 4731).
func TestIMAPSearchResult(t *testing.T) {
	s := newServer(t, "", "[tls]\nself_signed = true\n")
	s.start()
	c := dialIMAPS(t, s.imapsAddr)
	c.cmd(`LOGIN alice@example.test secret-alice`, "OK")
	for i := range 4 {
		c.cmd(fmt.Sprintf("APPEND INBOX {%d+}\r\nSubject: m%d\r\n\r\nx\r\n", len(fmt.Sprintf("Subject: m%d\r\n\r\nx\r\n", i)), i), "OK [APPENDUID")
	}
	c.cmd("SELECT INBOX", "OK")
	c.cmd(`STORE 2,4 +FLAGS (\Flagged)`, "OK")
	if got := c.cmd("SEARCH RETURN (SAVE) FLAGGED", "OK"); len(got) != 0 {
		t.Errorf("SAVE alone answered %q", got)
	}
	if got := c.cmd("FETCH $ (UID)", "OK"); !has(got, "* 2 FETCH (UID 2)") || !has(got, "* 4 FETCH (UID 4)") || len(got) != 2 {
		t.Errorf("FETCH $: %q", got)
	}
	if got := c.cmd("UID SEARCH RETURN (MIN MAX COUNT ALL) UNFLAGGED", "OK"); !has(got, `* ESEARCH (TAG "t`) || !has(got, "UID MIN 1 MAX 3 COUNT 2 ALL 1,3") {
		t.Errorf("ESEARCH: %q", got)
	}
	if got := c.cmd("SEARCH NOT $", "OK"); !has(got, "* SEARCH 1 3") {
		t.Errorf("SEARCH NOT $: %q", got)
	}
}

// TestIMAPQresync: a client that knew a mailbox at some MODSEQ gets back,
// on SELECT with QRESYNC, the UIDs expunged since (VANISHED (EARLIER)) and
// the messages changed since; CONDSTORE's UNCHANGEDSINCE refuses a change
// over another's (MODIFIED); with QRESYNC on, expunges come as VANISHED
// (RFC 7162).
func TestIMAPQresync(t *testing.T) {
	s := newServer(t, "", "[tls]\nself_signed = true\n")
	s.start()
	a := dialIMAPS(t, s.imapsAddr)
	a.cmd(`LOGIN alice@example.test secret-alice`, "OK")
	for i := range 5 {
		body := fmt.Sprintf("Subject: m%d\r\n\r\nx\r\n", i)
		a.cmd(fmt.Sprintf("APPEND INBOX {%d+}\r\n%s", len(body), body), "OK")
	}
	sel := a.cmd("SELECT INBOX (CONDSTORE)", "OK")
	var validity, highest string
	for _, l := range sel {
		fmt.Sscanf(l, "* OK [UIDVALIDITY %s", &validity)
		fmt.Sscanf(l, "* OK [HIGHESTMODSEQ %s", &highest)
	}
	validity, highest = strings.TrimSuffix(validity, "]"), strings.TrimSuffix(highest, "]")
	if validity == "" || highest == "" {
		t.Fatalf("SELECT (CONDSTORE): %q", sel)
	}
	a.cmd("LOGOUT", "OK")

	// Meanwhile another client deletes 2 and flags 4.
	b := dialIMAPS(t, s.imapsAddr)
	b.cmd(`LOGIN alice@example.test secret-alice`, "OK")
	b.cmd("SELECT INBOX", "OK")
	b.cmd(`STORE 2 +FLAGS.SILENT (\Deleted)`, "OK")
	b.cmd("EXPUNGE", "OK")
	b.cmd(`UID STORE 4 +FLAGS (\Flagged)`, "OK")

	c := dialIMAPS(t, s.imapsAddr)
	c.cmd(`LOGIN alice@example.test secret-alice`, "OK")
	c.cmd("ENABLE QRESYNC", "OK")
	got := c.cmd(fmt.Sprintf("SELECT INBOX (QRESYNC (%s %s 1:5))", validity, highest), "OK")
	if !has(got, "* VANISHED (EARLIER) 2") || !has(got, `FETCH (UID 4 FLAGS (\Flagged`) {
		t.Errorf("SELECT with QRESYNC: %q", got)
	}
	if has(got, "UID 1 ") || has(got, "UID 3 ") {
		t.Errorf("unchanged messages were sent again: %q", got)
	}
	// UNCHANGEDSINCE below message 4's MODSEQ: refused for it alone.
	got = c.cmd(fmt.Sprintf(`UID STORE 1,4 (UNCHANGEDSINCE %s) +FLAGS (\Seen)`, highest), "OK [MODIFIED 4]")
	if !has(got, "UID 1 FLAGS") || has(got, "UID 4 FLAGS") {
		t.Errorf("STORE UNCHANGEDSINCE: %q", got)
	}
	b.cmd(`UID STORE 5 +FLAGS.SILENT (\Deleted)`, "OK")
	b.cmd("EXPUNGE", "OK")
	if got := c.cmd("NOOP", "OK"); !has(got, "* VANISHED 5") || has(got, "EXPUNGE") {
		t.Errorf("an expunge under QRESYNC: %q", got)
	}
	if got := c.cmd(fmt.Sprintf("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %s VANISHED)", highest), "OK"); !has(got, "* VANISHED (EARLIER) 2,5") || !has(got, "MODSEQ (") {
		t.Errorf("UID FETCH CHANGEDSINCE VANISHED: %q", got)
	}
}

// TestIMAPFetchLarge: a message larger than FETCH reads whole is sent
// section by section from the store: BODY[], TEXT, a partial range and
// HEADER.FIELDS come out as the stored message has them.
func TestIMAPFetchLarge(t *testing.T) {
	s := newServer(t, "", "[tls]\nself_signed = true\n")
	s.start()
	var body strings.Builder
	for i := 0; body.Len() < 2<<20; i++ {
		fmt.Fprintf(&body, "line %d of a large message\r\n", i)
	}
	c := s.dial()
	c.cmd("EHLO large.example", "250 ")
	c.sendMail("x@remote.example", []string{"alice@example.test"}, "From: x@remote.example\r\nSubject: large\r\n\r\n"+body.String())
	stored := s.message("alice@example.test", s.mailbox("alice@example.test")[0].ID)
	conn := dialIMAPS(t, s.imapsAddr)
	conn.cmd(`LOGIN alice@example.test secret-alice`, "OK")
	conn.cmd("EXAMINE INBOX", "OK")
	fetch := func(item string) string {
		t.Helper()
		conn.send("f FETCH 1 (" + item + ")")
		head := conn.line()
		open := strings.LastIndexByte(head, '{')
		n, err := strconv.Atoi(strings.TrimSuffix(head[open+1:], "}"))
		if open < 0 || err != nil {
			t.Fatalf("FETCH %s: %q", item, head)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(conn.r, buf); err != nil {
			t.Fatal(err)
		}
		for l := conn.line(); !strings.HasPrefix(l, "f OK"); l = conn.line() {
		}
		return string(buf)
	}
	if got := fetch("BODY.PEEK[]"); got != stored {
		t.Errorf("BODY[]: %d octets, want the stored %d", len(got), len(stored))
	}
	_, text, _ := strings.Cut(stored, "\r\n\r\n")
	if got := fetch("BODY.PEEK[TEXT]"); got != text {
		t.Errorf("BODY[TEXT]: %d octets, want %d", len(got), len(text))
	}
	if got := fetch("BODY.PEEK[TEXT]<100000.300>"); got != text[100000:100300] {
		t.Errorf("BODY[TEXT]<100000.300> = %q", got)
	}
	if got := fetch("BODY.PEEK[HEADER.FIELDS (SUBJECT)]"); got != "Subject: large\r\n\r\n" {
		t.Errorf("HEADER.FIELDS = %q", got)
	}
}

// TestIMAPIdleSeesCLIImport: mail imported by the CLI while the server
// runs (another process) reaches a session IDLE on INBOX.
func TestIMAPIdleSeesCLIImport(t *testing.T) {
	s := newServer(t, "", "[tls]\nself_signed = true\n")
	s.start()
	a := dialIMAPS(t, s.imapsAddr)
	a.cmd(`LOGIN alice@example.test secret-alice`, "OK")
	a.cmd("SELECT INBOX", "OK")
	a.send("i1 IDLE")
	if l := a.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	mbox := filepath.Join(t.TempDir(), "in.mbox")
	os.WriteFile(mbox, []byte("From a@b Sat Mar 24 23:00:00 2007\nSubject: imported\n\nx\n"), 0o600)
	s.cli("mailbox", "import", "alice@example.test", mbox)
	if l := a.line(); l != "* 1 EXISTS" {
		t.Fatalf("while IDLE: %q, want * 1 EXISTS", l)
	}
	a.send("DONE")
}

// TestIMAPQuotaAndSpecialUse: GETQUOTAROOT and GETQUOTA show the user's
// quota (RFC 9208) and SETQUOTA is refused; CREATE with USE makes a
// special-use mailbox (RFC 6154 CREATE-SPECIAL-USE).
func TestIMAPQuotaAndSpecialUse(t *testing.T) {
	s := newServer(t, "", "[tls]\nself_signed = true\n")
	s.cliStdin("Lantern-quartz-quota-7\n", "user", "add", "carol@example.test", "--password-stdin", "--quota", "1MiB")
	s.start()
	c := dialIMAPS(t, s.imapsAddr)
	c.cmd(`LOGIN carol@example.test Lantern-quartz-quota-7`, "OK")
	body := "Subject: q\r\n\r\n" + strings.Repeat("x", 5000) + "\r\n"
	c.cmd(fmt.Sprintf("APPEND INBOX {%d+}\r\n%s", len(body), body), "OK")
	got := c.cmd("GETQUOTAROOT INBOX", "OK")
	if !has(got, `* QUOTAROOT INBOX ""`) || !has(got, `* QUOTA "" (STORAGE 5 1024)`) {
		t.Errorf("GETQUOTAROOT: %q", got)
	}
	if got := c.cmd(`GETQUOTA ""`, "OK"); !has(got, `(STORAGE 5 1024)`) {
		t.Errorf("GETQUOTA: %q", got)
	}
	c.cmd(`SETQUOTA "" (STORAGE 99999)`, "NO [NOPERM]")
	c.cmd(`CREATE Invoices (USE (\Archive))`, "OK")
	if got := c.cmd(`LIST "" Invoices`, "OK"); !has(got, `\Archive`) {
		t.Errorf("the special-use mailbox: %q", got)
	}
	c.cmd(`CREATE Other (USE (\Inbox))`, "NO [USEATTR]")
}

// TestIMAPRev2: a client that enables IMAP4rev2 (RFC 9051) gets no
// \Recent, the mailbox's LIST in SELECT, ESEARCH for SEARCH, UTF-8 mailbox
// names, and [CLOSED] when it selects another mailbox.
func TestIMAPRev2(t *testing.T) {
	s := newServer(t, "", "[tls]\nself_signed = true\n")
	s.start()
	c := dialIMAPS(t, s.imapsAddr)
	c.cmd(`LOGIN alice@example.test secret-alice`, "OK")
	if got := c.cmd("ENABLE IMAP4rev2", "OK"); !has(got, "* ENABLED IMAP4rev2") {
		t.Fatalf("ENABLE: %q", got)
	}
	c.cmd("APPEND INBOX {20+}\r\nSubject: rev2\r\n\r\nx\r\n", "OK")
	sel := c.cmd("SELECT INBOX", "OK [READ-WRITE]")
	if !has(sel, `* LIST () "/" INBOX`) || has(sel, "RECENT") {
		t.Errorf("SELECT: %q", sel)
	}
	if got := c.cmd("FETCH 1 (FLAGS)", "OK"); has(got, `\Recent`) {
		t.Errorf("FETCH: %q", got)
	}
	if got := c.cmd("SEARCH ALL", "OK"); !has(got, `* ESEARCH (TAG "`) || !has(got, "ALL 1") {
		t.Errorf("SEARCH: %q", got)
	}
	c.cmd(`CREATE "Entwürfe"`, "OK")
	if got := c.cmd(`LIST "" "Entw*"`, "OK"); !has(got, `"/" "Entwürfe"`) && !has(got, `"/" Entwürfe`) {
		t.Errorf("LIST of a UTF-8 name: %q", got)
	}
	if got := c.cmd(`SELECT "Entwürfe"`, "OK"); !has(got, "* OK [CLOSED]") {
		t.Errorf("SELECT of another mailbox: %q", got)
	}
}
