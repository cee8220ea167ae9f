package tests

import (
	"bufio"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailroom/internal/dns/dnstest"
)

// waitMailbox waits until user has at least n messages on s.
func waitMailbox(t *testing.T, s *server, user string, n int, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(s.mailbox(user)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s:\n%s", what, s.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRelaySmartHost: with a smart host configured, mail for a domain
// that has no MX at all goes to the smart host's submission port over
// STARTTLS (its certificate checked against ca_file) with a login; wrong
// credentials keep the mail queued with a clear error.
func TestRelaySmartHost(t *testing.T) {
	// B: the smart host, a Mailroom whose submission port takes relay@b.test.
	b := newServer(t, "", "")
	b.cli("domain", "add", "b.test")
	b.cliStdin("relay-secret\n", "user", "add", "relay@b.test", "--password-stdin")
	b.cli("domain", "add", "nomx.test")
	b.cli("user", "add", "carol@nomx.test", "--generate")
	b.cli("user", "send-as", "add", "relay@b.test", "@example.test")
	b.start()
	ca := filepath.Join(b.dir, "data", "tls", "selfsigned-cert.pem")
	_, subPort, _ := strings.Cut(b.subAddr, ":")
	dnsAddr := dnstest.Start(t, map[string][]string{"mx.example.test. A": {"127.0.0.1"}}).Addr

	_, tlsPort, _ := strings.Cut(b.tlsAddr, ":")
	relay := func(password, port, mode string) *server {
		pwFile := filepath.Join(t.TempDir(), "pw")
		os.WriteFile(pwFile, []byte(password+"\n"), 0o600)
		a := newServer(t, "", fmt.Sprintf(`[dns]
resolver = %q
[queue]
retry_intervals = ["1s"]
[[outbound.relay]]
domains = ["*"]
host = "mx.example.test"
port = %s
tls = %q
ca_file = %q
username = "relay@b.test"
password_file = %q
`, dnsAddr, port, mode, ca, pwFile))
		a.start()
		return a
	}

	// Implicit TLS (port 465) as well as STARTTLS (587).
	implicit := relay("relay-secret", tlsPort, "implicit")
	c0 := loggedIn(t, implicit)
	if r := c0.sendMail("alice@example.test", []string{"carol@nomx.test"}, "From: alice@example.test\r\nSubject: over implicit TLS\r\n\r\nhello\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("submission: %q", r)
	}
	waitMailbox(t, b, "carol@nomx.test", 1, "delivery through the smart host's implicit TLS port")

	a := relay("relay-secret", subPort, "starttls")
	c := loggedIn(t, a)
	if r := c.sendMail("alice@example.test", []string{"carol@nomx.test"}, "From: alice@example.test\r\nSubject: via the smart host\r\n\r\nhello\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("submission: %q", r)
	}
	waitMailbox(t, b, "carol@nomx.test", 2, "delivery through the smart host")
	got := b.message("carol@nomx.test", b.mailbox("carol@nomx.test")[1].ID)
	if !strings.Contains(got, "with ESMTPSA") || !strings.Contains(got, "via the smart host") || !strings.Contains(got, "Return-Path: <alice@example.test>") {
		t.Errorf("carol's copy:\n%s", got)
	}
	if l := a.logLines("state=delivered", "to=carol@nomx.test", "remote=mx.example.test", "tls=\"TLS 1.3"); len(l) != 1 {
		t.Errorf("no delivery over TLS logged:\n%s", a.logs())
	}

	bad := relay("wrong", subPort, "starttls")
	c = loggedIn(t, bad)
	if r := c.sendMail("alice@example.test", []string{"carol@nomx.test"}, "From: alice@example.test\r\nSubject: stuck\r\n\r\nhello\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("submission: %q", r)
	}
	bad.waitLog("state=deferred")
	if l := bad.logLines("state=deferred", "the smart host refused our credentials", "535"); len(l) == 0 {
		t.Errorf("the deferral does not say the login failed:\n%s", bad.logs())
	}
	if n := len(bad.mailbox("alice@example.test")); n != 0 {
		t.Errorf("a login failure bounced (%d reports); it should wait for the admin to fix it", n)
	}
}

// TestRelayNotifySuccess: NOTIFY=SUCCESS gets a "delivered" report for a
// local mailbox and a "relayed" one for a next hop without DSN; a next
// hop with DSN gets the parameter and reports itself.
func TestRelayNotifySuccess(t *testing.T) {
	b, port := remoteServer(t, "127.0.0.91", "carol@dsn.test")
	b.start()
	dnsAddr := dnstest.Start(t, map[string][]string{
		"far.test. MX": {"10 mx.far.test."}, "mx.far.test. A": {"127.0.0.90"},
		"dsn.test. MX": {"10 mx.dsn.test."}, "mx.dsn.test. A": {"127.0.0.91"},
	}).Addr
	// Both next hops listen on one port number, on their own addresses.
	hop := startHopAt(t, fmt.Sprintf("127.0.0.90:%d", port), func(n int, line string) string { return hopDefault(line) })
	a := newServer(t, "", fmt.Sprintf("[dns]\nresolver = %q\n[outbound]\nport = %d\n[queue]\nretry_intervals = [\"1s\"]\n", dnsAddr, port))
	a.start()

	c := loggedIn(t, a)
	c.cmd("MAIL FROM:<alice@example.test> ENVID=trip-1", "250 ")
	c.cmd("RCPT TO:<bob@example.test> NOTIFY=SUCCESS", "250 ")
	c.cmd("RCPT TO:<dave@far.test> NOTIFY=SUCCESS,FAILURE", "250 ")
	c.cmd("RCPT TO:<carol@dsn.test> NOTIFY=SUCCESS ORCPT=rfc822;carol@dsn.test", "250 ")
	c.data("From: alice@example.test\r\nSubject: tell me\r\n\r\nsecret body\r\n")
	waitMailbox(t, a, "alice@example.test", 2, "two success reports")
	waitMailbox(t, b, "carol@dsn.test", 1, "delivery to dsn.test")
	time.Sleep(500 * time.Millisecond) // a third report would come now
	var delivered, relayed string
	for _, m := range a.mailbox("alice@example.test") {
		body := a.message("alice@example.test", m.ID)
		switch {
		case strings.Contains(body, "Action: delivered"):
			delivered = body
		case strings.Contains(body, "Action: relayed"):
			relayed = body
		default:
			t.Errorf("an unexpected report:\n%s", body)
		}
	}
	if strings.Contains(delivered, "smtp; 250") || !strings.Contains(delivered, "Diagnostic-Code: X-Mailroom; 2.0.0 delivered to the mailbox") {
		t.Errorf("a local delivery report claims an SMTP reply that never was:\n%s", delivered)
	}
	for _, want := range []string{"Final-Recipient: rfc822; bob@example.test", "Status: 2.0.0", "Original-Envelope-Id: trip-1", "Subject: tell me"} {
		if !strings.Contains(delivered, want) {
			t.Errorf("the delivered report lacks %q:\n%s", want, delivered)
		}
	}
	for _, want := range []string{"Final-Recipient: rfc822; dave@far.test", "Status: 2.0.0", "Remote-MTA: dns; mx.far.test", "Diagnostic-Code: smtp; 250 2.0.0 queued"} {
		if !strings.Contains(relayed, want) {
			t.Errorf("the relayed report lacks %q:\n%s", want, relayed)
		}
	}
	for _, r := range []string{delivered, relayed} {
		if strings.Contains(r, "secret body") || strings.Contains(r, "carol@dsn.test") {
			t.Errorf("a success report returns the body or names the DSN-capable hop's recipient:\n%s", r)
		}
	}
	if n := len(a.mailbox("alice@example.test")); n != 2 {
		t.Errorf("alice has %d reports, want 2", n)
	}
	if hop.count("NOTIFY=") != 0 {
		t.Errorf("DSN parameters went to a hop that does not offer DSN:\n%s", hop.dump())
	}
}

// TestRelayIPPool: mail from a sender domain in a pool leaves from the
// pool's address.
func TestRelayIPPool(t *testing.T) {
	b, port := remoteServer(t, "127.0.0.92", "carol@pool.test")
	b.start()
	dnsAddr := dnstest.Start(t, map[string][]string{"pool.test. MX": {"10 mx.pool.test."}, "mx.pool.test. A": {"127.0.0.92"}}).Addr
	a := newServer(t, "", fmt.Sprintf(`[dns]
resolver = %q
[outbound]
port = %d
[[outbound.pool]]
name = "dedicated"
addresses = ["127.0.0.93"]
senders = ["example.test"]
`, dnsAddr, port))
	a.start()
	c := loggedIn(t, a)
	if r := c.sendMail("alice@example.test", []string{"carol@pool.test"}, "From: alice@example.test\r\nSubject: pooled\r\n\r\nx\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("submission: %q", r)
	}
	waitMailbox(t, b, "carol@pool.test", 1, "delivery")
	got := b.message("carol@pool.test", b.mailbox("carol@pool.test")[0].ID)
	if !strings.Contains(got, "[127.0.0.93]") {
		t.Errorf("the message did not come from the pool's address 127.0.0.93:\n%s", got)
	}
}

// TestRelayKill9: a delivery confirmed with 250 is not made again after a
// crash; one cut short by kill -9 (data sent, no reply yet) is made again
// after the restart: at least once, never lost.
func TestRelayKill9(t *testing.T) {
	hang := make(chan struct{})
	var hop *fakeHop
	hop = startHop(t, "127.0.0.94", func(n int, line string) string {
		if line == "." && len(hop.messagesWith("second")) == 1 {
			select { // the first copy is never answered: the sender dies waiting
			case <-hang:
			case <-time.After(30 * time.Second):
			}
			return ""
		}
		return hopDefault(line)
	})
	a := relayVia(t, "127.0.0.94", hop, "", "")
	a.start()
	submit(t, a, []string{"carol@far.test"}, "From: alice@example.test\r\nSubject: first\r\n\r\nfirst\r\n")
	a.waitLog("state=delivered")
	submit(t, a, []string{"dave@far.test"}, "From: alice@example.test\r\nSubject: second\r\n\r\nsecond\r\n")
	waitFor(t, a, hop, "the second message's data", func() bool { return hop.count("RCPT TO:<dave@far.test>") > 0 && len(hop.messagesWith("second")) > 0 })
	a.kill()
	rows := a.queue()
	if len(rows) != 1 || rows[0].To != "dave@far.test" || !rows[0].Active {
		t.Fatalf("queue after the crash: %+v", rows)
	}
	close(hang)
	a.start()
	waitFor(t, a, hop, "the second message again", func() bool { return len(hop.messagesWith("second")) >= 2 })
	a.waitLog("state=delivered")
	time.Sleep(300 * time.Millisecond)
	if n := len(hop.messagesWith("first")); n != 1 {
		t.Errorf("the confirmed message went %d times", n)
	}
	if rows := a.queue(); len(rows) != 0 {
		t.Errorf("queue after the restart: %+v", rows)
	}
}

// TestRelayEightBitDowngrade: an 8-bit message for a next hop without
// 8BITMIME arrives as 7bit data (quoted-printable) that decodes to the
// original; one with 8-bit octets in a header field cannot be converted
// and bounces with 5.6.3.
func TestRelayEightBitDowngrade(t *testing.T) {
	hop := startHop(t, "127.0.0.95", func(n int, line string) string { return hopDefault(line) })
	a := relayVia(t, "127.0.0.95", hop, "", "")
	a.start()
	c := loggedIn(t, a)
	c.cmd("MAIL FROM:<alice@example.test> BODY=8BITMIME", "250 ")
	c.cmd("RCPT TO:<carol@far.test>", "250 ")
	c.data("From: alice@example.test\r\nSubject: greetings\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGrüße aus Köln\r\n")
	c.cmd("MAIL FROM:<alice@example.test> BODY=8BITMIME", "250 ")
	c.cmd("RCPT TO:<dave@far.test>", "250 ")
	c.data("From: alice@example.test\r\nSubject: Grüße\r\n\r\nx\r\n")
	waitFor(t, a, hop, "the converted message", func() bool { return len(hop.messagesWith("greetings")) > 0 })
	got := hop.messagesWith("greetings")[0]
	for i := 0; i < len(got); i++ {
		if got[i] >= 0x80 {
			t.Fatalf("8-bit octets reached a hop without 8BITMIME:\n%s", got)
		}
	}
	if !strings.Contains(got, "Content-Transfer-Encoding: quoted-printable") || !strings.Contains(got, "Gr=C3=BC=C3=9Fe aus K=C3=B6ln") {
		t.Errorf("not converted to quoted-printable:\n%s", got)
	}
	// The conversion broke the signatures made at submission: the copy
	// that left was signed anew, and dkimpy verifies it.
	if v := dkimpyCheck(t, a, "example.test", got); v != "a=ed25519-sha256 d=example.test ok\na=rsa-sha256 d=example.test ok" {
		t.Errorf("dkimpy on the converted copy:\n%s\n%s", v, got)
	}
	if hop.count("MAIL FROM:<alice@example.test> BODY=") != 0 {
		t.Errorf("BODY= went to a hop that does not offer 8BITMIME:\n%s", hop.dump())
	}
	waitMailbox(t, a, "alice@example.test", 1, "the bounce for the 8-bit header")
	bounce := a.message("alice@example.test", a.mailbox("alice@example.test")[0].ID)
	for _, want := range []string{"Final-Recipient: rfc822; dave@far.test", "Status: 5.6.3", "8-bit octets in a header field"} {
		if !strings.Contains(bounce, want) {
			t.Errorf("the bounce lacks %q:\n%s", want, bounce)
		}
	}
	if len(hop.messagesWith("Subject: Gr")) != 0 {
		t.Errorf("the message with an 8-bit header was sent:\n%s", hop.dump())
	}
}

// TestRelayEightBitDowngradeLarge: a message large enough to be stored in
// a file of its own is converted from that file (mapped, not read into
// memory) and arrives whole: its decoded text is what was sent.
func TestRelayEightBitDowngradeLarge(t *testing.T) {
	hop := startHop(t, "127.0.0.103", func(n int, line string) string { return hopDefault(line) })
	a := relayVia(t, "127.0.0.103", hop, "", "")
	a.start()
	var text strings.Builder
	for i := 0; text.Len() < 3<<20; i++ {
		fmt.Fprintf(&text, "Zeile %d: Grüße aus Köln, naïve café\r\n", i)
	}
	c := loggedIn(t, a)
	c.cmd("MAIL FROM:<alice@example.test> BODY=8BITMIME", "250 ")
	c.cmd("RCPT TO:<carol@far.test>", "250 ")
	c.data("From: alice@example.test\r\nSubject: large\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text.String())
	waitFor(t, a, hop, "the converted message", func() bool { return len(hop.messagesWith("Subject: large")) > 0 })
	got := hop.messagesWith("Subject: large")[0]
	for i := 0; i < len(got); i++ {
		if got[i] >= 0x80 {
			t.Fatalf("8-bit octets reached a hop without 8BITMIME at octet %d", i)
		}
	}
	_, body, ok := strings.Cut(got, "\r\n\r\n")
	if !ok || !strings.Contains(got, "Content-Transfer-Encoding: quoted-printable") {
		t.Fatalf("not converted to quoted-printable:\n%.500s", got)
	}
	decoded, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(body)))
	if err != nil {
		t.Fatalf("the converted body does not decode: %v", err)
	}
	if string(decoded) != text.String() {
		t.Errorf("the decoded body (%d octets) is not the text sent (%d octets)", len(decoded), text.Len())
	}
}

// TestRelayKill9Duplicates: killing the server again and again while it
// relays 300 messages (and takes local mail, so that recording outcomes
// waits its turn behind other commits) loses none, and sends again only
// transactions that were at risk at a kill: on a connection still open, the
// last one whose data the next hop had, when no next transaction had begun
// on that connection. A connection carries its next message only once the
// last one's 250 is on record, so there is at most one such transaction per
// connection. The figures are logged.
func TestRelayKill9Duplicates(t *testing.T) {
	var gate atomic.Bool    // closed: the hop defers every message
	var freeze sync.RWMutex // held to stop the hop while counting at a kill
	var mailsMu sync.Mutex
	mails := map[int]int{} // per connection: MAIL FROM taken after the gate opened
	hop := startHop(t, "127.0.0.96", func(n int, line string) string {
		freeze.RLock()
		defer freeze.RUnlock()
		if strings.HasPrefix(strings.ToUpper(line), "MAIL FROM:") {
			if !gate.Load() {
				return "451 4.3.0 not yet\r\n"
			}
			mailsMu.Lock()
			mails[n]++
			mailsMu.Unlock()
		}
		return hopDefault(line)
	})
	dnsAddr := dnstest.Start(t, map[string][]string{"far.test. MX": {"10 mx.far.test."}, "mx.far.test. A": {"127.0.0.96"}}).Addr
	a := newServer(t, "", fmt.Sprintf("[dns]\nresolver = %q\n[outbound]\nport = %d\nmax_per_destination = 4\nconnection_cache_time = \"10s\"\n[queue]\nretry_intervals = [\"1s\"]\n[mailbox]\nquota = 0\n", dnsAddr, hop.port))
	a.start()
	const total = 300
	// Local mail beside the relaying keeps the store's committer busy.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	local := "Subject: local\r\n\r\n" + strings.Repeat(strings.Repeat("l", 98)+"\r\n", 2000)
	for w := 0; w < 3; w++ {
		wg.Go(func() {
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				conn, err := net.DialTimeout("tcp", a.addr, time.Second)
				if err != nil {
					time.Sleep(50 * time.Millisecond) // the server is down between kills
					continue
				}
				c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				for _, l := range []string{"", "EHLO load.example\r\n", "MAIL FROM:<l@remote.example>\r\n", "RCPT TO:<bob@example.test>\r\n", "DATA\r\n", local + ".\r\n"} {
					if l != "" {
						if _, err := conn.Write([]byte(l)); err != nil {
							break
						}
					}
					if _, err := c.r.ReadString('\n'); err != nil {
						break
					}
					for c.r.Buffered() > 0 { // the rest of a multiline reply
						c.r.ReadString('\n')
					}
				}
				conn.Close()
			}
		})
	}
	c := loggedIn(t, a)
	for i := 0; i < total; i++ {
		if r := c.sendMail("alice@example.test", []string{fmt.Sprintf("u%d@far.test", i%7)}, fmt.Sprintf("From: alice@example.test\r\nSubject: dup-%03d\r\n\r\nx\r\n", i)); !strings.HasPrefix(r, "250 ") {
			t.Fatalf("submission %d: %q", i, r)
		}
	}
	a.waitLog("state=deferred")
	gate.Store(true) // the retries, a second later, all go at once
	received := func() int { return len(hop.messagesWith("Subject: dup-")) }
	inFlight := 0
	for _, at := range []int{30, 120, 210} {
		waitFor(t, a, hop, fmt.Sprintf("%d messages at the hop", at), func() bool { return received() >= at })
		// The hop stops answering while the server is killed and the
		// transactions at risk are counted: data already on its way is
		// taken in, no reply goes out.
		freeze.Lock()
		before := hop.seen()
		a.kill()
		time.Sleep(300 * time.Millisecond)
		atRisk := 0
		for i, s := range hop.seen() {
			mailsMu.Lock()
			taken := mails[i+1]
			mailsMu.Unlock()
			if (i >= len(before) || !before[i].ended) && len(s.messages) > 0 && taken == len(s.messages) {
				atRisk++
			}
		}
		freeze.Unlock()
		inFlight += atRisk
		t.Logf("kill at %d messages received: %d transactions at risk", received(), atRisk)
		a.start()
	}
	waitFor(t, a, hop, "every message delivered", func() bool {
		seen := map[string]bool{}
		for _, m := range hop.messagesWith("Subject: dup-") {
			_, rest, _ := strings.Cut(m, "Subject: ")
			seen[rest[:7]] = true
		}
		return len(seen) == total
	})
	time.Sleep(500 * time.Millisecond) // anything more in flight
	dups := received() - total
	t.Logf("%d messages, 3 kills: %d sent again (transactions at risk at the kills: %d)", total, dups, inFlight)
	if dups > inFlight {
		t.Errorf("%d messages sent again over 3 kills, more than the %d transactions at risk at the kills", dups, inFlight)
	}
}
