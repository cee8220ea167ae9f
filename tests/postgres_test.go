package tests

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"mailroom/internal/dns/dnstest"
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

// secondNode starts another node on the same configuration tables as a
// (its store among them), with its own addresses and data directory.
func secondNode(t *testing.T, tables string) *server {
	t.Helper()
	b := &server{t: t, dir: t.TempDir(), addr: freeAddr(t), subAddr: freeAddr(t), tlsAddr: freeAddr(t), imapAddr: freeAddr(t), imapsAddr: freeAddr(t),
		pop3Addr: freeAddr(t), pop3sAddr: freeAddr(t)}
	b.config = b.dir + "/mailroom.toml"
	b.writeConfig("", tables)
	t.Cleanup(b.stop)
	b.start()
	return b
}

// TestPostgresSendingLimits: a user's sending limit holds across nodes:
// with three messages an hour allowed, two sent through node A and one
// through node B leave none, on either.
func TestPostgresSendingLimits(t *testing.T) {
	tables := fmt.Sprintf("[store]\nurl = %q\n[submission]\nmax_messages_per_hour = 3\n", postgresURL(t))
	a := newServer(t, "", tables)
	a.start()
	b := secondNode(t, tables)
	for i, node := range []*server{a, a, b} {
		c := loggedIn(t, node)
		if r := c.sendMail("alice@example.test", []string{"bob@example.test"}, fmt.Sprintf("Subject: %d\r\n\r\nx\r\n", i)); !strings.HasPrefix(r, "250 ") {
			t.Fatalf("message %d: %q", i+1, r)
		}
	}
	for _, node := range []*server{a, b} {
		c := loggedIn(t, node)
		if r := c.cmd("MAIL FROM:<alice@example.test>", "450 "); !strings.Contains(r, "4.7.1 Sending limit reached: 3 messages in the past hour") {
			t.Errorf("a fourth message: %q", r)
		}
	}
}

// TestPostgresLoginLimits: the login limits hold across nodes: failed
// logins from one address, two on node A and two on node B, ban it on
// both under a limit of four, for the right password too, while another
// address logs in.
func TestPostgresLoginLimits(t *testing.T) {
	tables := fmt.Sprintf("[store]\nurl = %q\n[auth]\nmax_failures = 4\nmax_failures_per_account = 10\nban_time = \"1m\"\nfailure_delay = \"10ms\"\n", postgresURL(t))
	a := newServer(t, "", tables)
	a.start()
	b := secondNode(t, tables)
	from := func(s *server, src string) *client {
		c := s.dialFrom(t, s.subAddr, src)
		c.expect("220 ")
		c.cmd("EHLO brute.example", "250 ")
		c.startTLSInsecure()
		c.cmd("EHLO brute.example", "250 ")
		return c
	}
	for i, node := range []*server{a, a, b, b} {
		from(node, "127.0.0.5").cmd("AUTH PLAIN "+plainAuth("bob@example.test", fmt.Sprintf("guess%d", i)), "535 5.7.8")
	}
	for _, node := range []*server{a, b} {
		from(node, "127.0.0.5").cmd("AUTH PLAIN "+plainAuth("alice@example.test", "secret-alice"), "421 4.7.0 mx.example.test Too many failed logins from your address")
		from(node, "127.0.0.6").cmd("AUTH PLAIN "+plainAuth("alice@example.test", "secret-alice"), "235 ")
	}
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
	b := secondNode(t, store)
	if users := b.cli("user", "list"); !strings.Contains(users, "alice@example.test") {
		t.Fatalf("node B does not know the users made through node A:\n%s", users)
	}

	idle := idleOnEmptyInbox(t, b.imapsAddr)
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

// TestPostgresRestart: PostgreSQL killed under a running node: mail gets a
// temporary refusal (4xx) while it is down, never a 250 for mail not
// stored; once it is back the node reconnects by itself, takes mail
// again, and every message it acknowledged is there.
func TestPostgresRestart(t *testing.T) {
	pg, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	db, err := pg.CreateDB(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, "", fmt.Sprintf("[store]\nurl = %q\n", pg.URL(db)))
	s.start()
	acked := 0
	send := func(subject string) string {
		t.Helper()
		c := s.dial()
		defer c.conn.Close()
		c.cmd("EHLO pg.example", "250 ")
		c.send("MAIL FROM:<x@remote.example>\r\n")
		if r := c.reply(); !strings.HasPrefix(r, "250 ") {
			return r
		}
		c.send("RCPT TO:<alice@example.test>\r\n")
		if r := c.reply(); !strings.HasPrefix(r, "250 ") {
			return r
		}
		c.send("DATA\r\n")
		if r := c.reply(); !strings.HasPrefix(r, "354 ") {
			return r
		}
		c.send("Subject: " + subject + "\r\n\r\nx\r\n.\r\n")
		r := c.reply()
		if strings.HasPrefix(r, "250 ") {
			acked++
		}
		return r
	}
	if r := send("before"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("before the restart: %q", r)
	}
	pg.Kill()
	r0 := send("while down")
	t.Logf("while PostgreSQL is down: %s", r0)
	if r := r0; !strings.HasPrefix(r, "4") {
		t.Errorf("while PostgreSQL is down: %q, want a temporary refusal (4xx)", r)
	}
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	var r string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if r = send("after"); strings.HasPrefix(r, "250 ") {
			break
		}
	}
	if !strings.HasPrefix(r, "250 ") {
		t.Fatalf("after PostgreSQL came back: %q\n%s", r, s.logs())
	}
	if n := len(s.mailbox("alice@example.test")); n != acked {
		t.Errorf("alice has %d messages; %d were acknowledged", n, acked)
	}
}

// TestPostgresThreeNodesKill9: three nodes on one PostgreSQL relay mail
// to a slow next hop; one is killed with deliveries under way. Every
// message any node acknowledged reaches the next hop: the others take the
// dead node's claimed entries once their lease (2 s here) has run out,
// and its unclaimed ones at once. Only the dead node's messages may go
// twice (those whose data the hop had when it died), and none three times.
func TestPostgresThreeNodesKill9(t *testing.T) {
	hop := startHop(t, "127.0.0.113", func(n int, line string) string {
		if line == "." {
			time.Sleep(1500 * time.Millisecond) // a slow next hop: deliveries stay under way
		}
		return hopDefault(line)
	})
	zone := dnstest.Start(t, map[string][]string{"far.test. MX": {"10 mx.far.test."}, "mx.far.test. A": {"127.0.0.113"}})
	tables := fmt.Sprintf("[store]\nurl = %q\n[dns]\nresolver = %q\n[outbound]\nport = %d\n[queue]\nretry_intervals = [\"1s\"]\nclaim_lease = \"2s\"\n",
		postgresURL(t), zone.Addr, hop.port)
	a := newServer(t, "", tables)
	a.start()
	nodes := []*server{a, secondNode(t, tables), secondNode(t, tables)}
	const per = 8
	for i, node := range nodes {
		for j := range per {
			submit(t, node, []string{fmt.Sprintf("r%d-%d@far.test", i, j)}, fmt.Sprintf("From: alice@example.test\r\nSubject: m%d-%d\r\n\r\nmessage %d-%d\r\n", i, j, i, j))
		}
	}
	// Node A dies while its deliveries are under way.
	waitFor(t, a, hop, "node A's deliveries under way", func() bool { return len(hop.messagesWith("message 0-")) > 0 })
	a.kill()
	copies := func() map[string]int {
		n := map[string]int{}
		for i := range nodes {
			for j := range per {
				n[fmt.Sprintf("%d-%d", i, j)] = len(hop.messagesWith(fmt.Sprintf("message %d-%d\r\n", i, j)))
			}
		}
		return n
	}
	start := time.Now()
	waitFor(t, nodes[1], hop, "every acknowledged message delivered (the queue empty)", func() bool { return len(nodes[1].queue()) == 0 })
	t.Logf("every message delivered %v after node A died", time.Since(start).Round(100*time.Millisecond))
	dup := 0
	for k, c := range copies() {
		switch {
		case c == 0:
			t.Errorf("message %s never reached the next hop", k)
		case c > 2 || c == 2 && !strings.HasPrefix(k, "0-"):
			t.Errorf("message %s went %d times", k, c)
		case c == 2:
			dup++
		}
	}
	t.Logf("%d of node A's %d messages went twice (their data was at the hop, unanswered, when it died)", dup, per)
}
