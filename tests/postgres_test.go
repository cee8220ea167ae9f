package tests

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"mailroom/internal/store/postgres/pgtest"
)

// pgShared is one PostgreSQL for the tests of this binary that need one,
// started at the first and stopped when they are done (TestMain).
var (
	pgOnce   sync.Once
	pgShared *pgtest.Server
	pgErr    error
)

// postgresURL returns the URL of a new, empty database of the tests'
// PostgreSQL, started on first use.
func postgresURL(t *testing.T) string {
	t.Helper()
	pgOnce.Do(func() { pgShared, pgErr = pgtest.Start(pgtest.Options{}) })
	if pgErr != nil {
		t.Fatal(pgErr)
	}
	name, err := pgShared.CreateDB(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	return pgShared.URL(name)
}

// TestPostgresTwoNodes: two Mailroom nodes share one PostgreSQL store:
// users made through one are known to the other; mail delivered over SMTP
// to node A reaches an IMAP session IDLE on node B within a second, and
// its flags changed on B are seen on A.
func TestPostgresTwoNodes(t *testing.T) {
	url := postgresURL(t)
	store := fmt.Sprintf("[store]\nurl = %q\n[tls]\nself_signed = true\n", url)
	a := newServer(t, "", store) // makes the domain and the users, in PostgreSQL
	a.start()
	b := &server{t: t, dir: t.TempDir(), addr: freeAddr(t), subAddr: freeAddr(t), tlsAddr: freeAddr(t), imapAddr: freeAddr(t), imapsAddr: freeAddr(t),
		pop3Addr: freeAddr(t), pop3sAddr: freeAddr(t)}
	b.config = b.dir + "/mailroom.toml"
	b.writeConfig("", store)
	t.Cleanup(b.stop)
	b.start()
	if users := b.cli("user", "list"); !strings.Contains(users, "alice@example.test") {
		t.Fatalf("node B does not know the users made through node A:\n%s", users)
	}

	idle := dialIMAPS(t, b.imapsAddr)
	idle.cmd(`LOGIN alice@example.test secret-alice`, "OK")
	if sel := idle.cmd("SELECT INBOX", "OK [READ-WRITE]"); !has(sel, "* 0 EXISTS") {
		t.Fatalf("SELECT on node B: %q", sel)
	}
	idle.send("i1 IDLE")
	if l := idle.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	c := a.dial()
	c.cmd("EHLO pg.example", "250 ")
	start := time.Now()
	if r := c.sendMail("x@remote.example", []string{"alice@example.test"}, "Subject: across nodes\r\n\r\nhello\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("delivery to node A: %q", r)
	}
	if l := idle.line(); l != "* 1 EXISTS" {
		t.Fatalf("IDLE on node B: %q, want * 1 EXISTS", l)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("node B's IDLE heard of node A's delivery after %v, want within a second", d)
	}
	t.Logf("delivery on node A to IDLE notice on node B: %v", time.Since(start).Round(time.Millisecond))
	idle.line() // * 1 RECENT
	idle.send("DONE")
	if l := idle.line(); !strings.HasPrefix(l, "i1 OK") {
		t.Fatalf("DONE: %q", l)
	}
	idle.cmd(`STORE 1 +FLAGS (\Flagged)`, "OK")
	onA := dialIMAPS(t, a.imapsAddr)
	onA.cmd(`LOGIN alice@example.test secret-alice`, "OK")
	onA.cmd("SELECT INBOX", "OK")
	if got := onA.cmd("FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])", "OK"); !strings.Contains(strings.Join(got, "\n"), `\Flagged`) {
		t.Errorf("node A's view of the message flagged on node B: %q", got)
	}
}

// embeddedOnly skips a test of the embedded store itself (its files, its
// database) when the black-box tests run on PostgreSQL.
func embeddedOnly(t *testing.T, why string) {
	t.Helper()
	if onPostgres {
		t.Skipf("on PostgreSQL: %s", why)
	}
}
