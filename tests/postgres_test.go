package tests

import (
	"crypto/tls"
	"fmt"
	"net"
	netsmtp "net/smtp"
	"net/textproto"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
	from := func(s *server, src string) *client { return submissionFrom(t, s, src) }
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

// TestPostgresRestart: PostgreSQL killed under two nodes while four
// clients send to them: mail gets a temporary refusal (4xx) while it is
// down, never a 250 for mail not stored nor a permanent refusal; once it
// is back both nodes reconnect by themselves and take mail again, and
// every message acknowledged is there, once.
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
	tables := fmt.Sprintf("[store]\nurl = %q\n", pg.URL(db))
	a := newServer(t, "", tables)
	a.start()
	nodes := []*server{a, secondNode(t, tables)}
	var (
		mu          sync.Mutex
		acked       = map[string]bool{}
		temporary   int
		sinceReturn = map[int]int{} // per client, messages acknowledged since PostgreSQL came back
		back        bool
		stop        = make(chan struct{})
		wg          sync.WaitGroup
	)
	for i := range 4 {
		node := nodes[i%2]
		wg.Go(func() {
			for n := 0; n < 2000; n++ { // bounded: stopped long before
				select {
				case <-stop:
					return
				default:
				}
				subject := fmt.Sprintf("c%d-%d", i, n)
				r := deliverOne(node, subject)
				mu.Lock()
				switch {
				case strings.HasPrefix(r, "250 "):
					acked[subject] = true
					if back {
						sinceReturn[i]++
					}
				case strings.HasPrefix(r, "4"):
					temporary++
				default:
					t.Errorf("client %d: %q, want 250 or a temporary refusal", i, r)
				}
				mu.Unlock()
				if !strings.HasPrefix(r, "250 ") {
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	defer func() { // on a failure too: the clients end before the nodes do
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	until(t, a, "the clients' first messages acknowledged", func() bool { return count() >= 20 })
	pg.Kill()
	time.Sleep(1500 * time.Millisecond) // the clients meet a store that is down
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	back = true
	mu.Unlock()
	until(t, a, "every client's mail acknowledged again, by both nodes", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i := range 4 {
			if sinceReturn[i] < 3 {
				return false
			}
		}
		return true
	})
	close(stop)
	wg.Wait()
	if temporary == 0 {
		t.Error("no temporary refusal while PostgreSQL was down")
	}
	got := map[string]int{}
	for _, m := range a.mailbox("alice@example.test") {
		got[m.Subject]++
	}
	for subject := range acked {
		if got[subject] != 1 {
			t.Errorf("acknowledged message %s stored %d times", subject, got[subject])
		}
	}
	t.Logf("%d messages acknowledged, %d temporary refusals while PostgreSQL was down, %d stored", len(acked), temporary, len(got))
}

// deliverOne sends alice a message on port 25 and returns the reply that
// ended the attempt: 250 after the data, or the refusal of a command. It
// may run outside the test's goroutine: a broken connection is an "error:"
// reply, never a t.Fatal.
func deliverOne(s *server, subject string) string {
	conn, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		return "error: " + err.Error()
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	tc := textproto.NewConn(conn)
	for _, step := range []struct {
		cmd  string
		want int
	}{{"", 220}, {"EHLO pg.example", 250}, {"MAIL FROM:<x@remote.example>", 250}, {"RCPT TO:<alice@example.test>", 250}, {"DATA", 354},
		{"Subject: " + subject + "\r\n\r\nx\r\n.", 250}} {
		if step.cmd != "" {
			if err := tc.PrintfLine("%s", step.cmd); err != nil {
				return "error: " + err.Error()
			}
		}
		code, msg, err := tc.ReadResponse(step.want)
		if err != nil {
			if code == 0 {
				return "error: " + err.Error()
			}
			return fmt.Sprintf("%d %s", code, msg)
		}
		if step.want == 250 && strings.HasPrefix(step.cmd, "Subject: ") {
			return fmt.Sprintf("%d %s", code, msg)
		}
	}
	return "error: no reply"
}

// TestPostgresFailover: a node's URL names a primary and its synchronous
// standby (target_session_attrs=read-write). The primary is killed; until
// the standby is promoted mail gets a temporary refusal; then the node
// takes mail on the new primary by itself, and every message acknowledged
// before or after the failover is there (docs/postgresql.md).
func TestPostgresFailover(t *testing.T) {
	ctx := t.Context()
	primary, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Stop()
	db, err := primary.CreateDB(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	standby, err := pgtest.StartStandby(primary)
	if err != nil {
		t.Fatal(err)
	}
	defer standby.Stop()
	admin, err := pgx.Connect(ctx, primary.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"ALTER SYSTEM SET synchronous_standby_names = '*'", "SELECT pg_reload_conf()"} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var state string
	for deadline := time.Now().Add(20 * time.Second); state != "sync" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		admin.QueryRow(ctx, "SELECT coalesce(max(sync_state), '') FROM pg_stat_replication").Scan(&state)
	}
	admin.Close(ctx)
	if state != "sync" {
		t.Fatalf("the standby is not a synchronous one: %q", state)
	}
	url := fmt.Sprintf("postgres://mailroom@127.0.0.1:%d,127.0.0.1:%d/%s?sslmode=disable&target_session_attrs=read-write", primary.Port, standby.Port, db)
	s := newServer(t, "", fmt.Sprintf("[store]\nurl = %q\n", url))
	s.start()
	var acked []string
	send := func(subject string) string {
		r := deliverOne(s, subject)
		if strings.HasPrefix(r, "250 ") {
			acked = append(acked, subject)
		}
		return r
	}
	for i := range 5 {
		if r := send(fmt.Sprintf("before %d", i)); !strings.HasPrefix(r, "250 ") {
			t.Fatalf("before the failover: %q", r)
		}
	}
	primary.Kill()
	if r := send("no primary"); !strings.HasPrefix(r, "4") {
		t.Errorf("with no primary: %q, want a temporary refusal (4xx)", r)
	}
	if err := standby.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var r string
	for deadline := start.Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if r = send("after"); strings.HasPrefix(r, "250 ") {
			break
		}
	}
	if !strings.HasPrefix(r, "250 ") {
		t.Fatalf("after the promotion: %q\n%s", r, s.logs())
	}
	t.Logf("mail taken %v after the promotion", time.Since(start).Round(100*time.Millisecond))
	var got []string
	for _, m := range s.mailbox("alice@example.test") {
		got = append(got, m.Subject)
	}
	if !reflect.DeepEqual(got, acked) {
		t.Errorf("alice has %q; acknowledged were %q", got, acked)
	}
}

// TestPostgresThreeNodesKill9: three nodes on one PostgreSQL relay mail
// to a slow next hop, submitted to all three at once by nine clients; one
// node is killed while clients are still submitting to it and its
// deliveries are under way. Every message any node acknowledged reaches
// the next hop: the others take the dead node's claimed entries once their
// lease (2 s here) has run out, and its unclaimed ones at once. Only
// messages the dead node had under way may go twice (those whose data the
// hop had when it died: any node claims any entry, so they may have been
// accepted by another), and none three times.
func TestPostgresThreeNodesKill9(t *testing.T) {
	hop := startHop(t, "127.0.0.113", func(n int, line string) string {
		if line == "." {
			time.Sleep(time.Second) // a slow next hop: deliveries stay under way
		}
		return hopDefault(line)
	})
	zone := dnstest.Start(t, map[string][]string{"far.test. MX": {"10 mx.far.test."}, "mx.far.test. A": {"127.0.0.113"}})
	tables := fmt.Sprintf("[store]\nurl = %q\n[dns]\nresolver = %q\n[outbound]\nport = %d\n[queue]\nretry_intervals = [\"1s\"]\nclaim_lease = \"2s\"\n",
		postgresURL(t), zone.Addr, hop.port)
	a := newServer(t, "", tables)
	a.start()
	nodes := []*server{a, secondNode(t, tables), secondNode(t, tables)}
	const senders, per = 3, 8 // per node, and messages per sender
	var (
		mu    sync.Mutex
		acked = map[string]bool{} // "node-sender-n" of each message a node answered 250
		wg    sync.WaitGroup
	)
	for i, node := range nodes {
		for j := range senders {
			wg.Go(func() {
				for n := range per {
					id := fmt.Sprintf("%d-%d-%d", i, j, n)
					err := sendVia(node.subAddr, "alice@example.test", "secret-alice", fmt.Sprintf("r%s@far.test", id),
						fmt.Sprintf("From: alice@example.test\r\nSubject: m%s\r\n\r\nmessage %s\r\n", id, id))
					if err != nil {
						if i != 0 {
							t.Errorf("message %s to a live node: %v", id, err)
						}
						t.Logf("message %s to node A: %v", id, err)
						return // node A is gone
					}
					mu.Lock()
					acked[id] = true
					mu.Unlock()
				}
			})
		}
	}
	// Node A dies while clients submit to it and its deliveries are under way.
	waitFor(t, a, hop, "node A's deliveries under way, a third of its messages acknowledged", func() bool {
		mu.Lock()
		n := 0
		for id := range acked {
			if strings.HasPrefix(id, "0-") {
				n++
			}
		}
		mu.Unlock()
		return n >= senders*per/3 && len(hop.messagesWith("message 0-")) > 0
	})
	a.kill()
	// What the hop had when node A died: the only messages that may go
	// twice are among them (node A had sent their data and died before
	// the reply), whichever node accepted them, as any node claims any
	// entry.
	atKill := map[string]bool{}
	for _, m := range hop.messagesWith("message ") {
		_, id, _ := strings.Cut(m, "\r\n\r\nmessage ")
		atKill[strings.TrimSpace(id)] = true
	}
	wg.Wait()
	start := time.Now()
	waitFor(t, nodes[1], hop, "every acknowledged message delivered (the queue empty)", func() bool { return len(nodes[1].queue()) == 0 })
	t.Logf("every message delivered %v after the last submission (node A killed before)", time.Since(start).Round(100*time.Millisecond))
	fromA, dup := 0, 0
	for id := range acked {
		c := len(hop.messagesWith("message " + id + "\r\n"))
		switch {
		case c == 0:
			t.Errorf("acknowledged message %s never reached the next hop", id)
		case c > 2 || c == 2 && !atKill[id]:
			t.Errorf("message %s went %d times", id, c)
		case c == 2:
			dup++
		}
		if strings.HasPrefix(id, "0-") {
			fromA++
		}
	}
	if fromA == 0 || fromA == senders*per || len(acked) != fromA+2*senders*per {
		t.Errorf("%d messages acknowledged, %d by node A: node A should have died in the middle of its clients' submissions", len(acked), fromA)
	}
	if dup > 20 {
		t.Errorf("%d messages went twice: more than node A can have under way to one destination (max_per_destination, 20)", dup)
	}
	t.Logf("%d messages acknowledged, %d by node A; %d went twice (their data was at the hop, unanswered, when node A died)", len(acked), fromA, dup)
}

// sendVia submits one message over STARTTLS with AUTH PLAIN, returning
// any error (a test's node may die under it).
func sendVia(addr, user, pass, to, body string) error {
	c, err := netsmtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
		return err
	}
	host, _, _ := strings.Cut(addr, ":")
	if err := c.Auth(netsmtp.PlainAuth("", user, pass, host)); err != nil {
		return err
	}
	if err := c.Mail(user); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(body)); err != nil {
		return err
	}
	if err := w.Close(); err != nil { // the 250 (or not) after the data
		return err
	}
	c.Quit() // acknowledged: what follows does not matter
	return nil
}
