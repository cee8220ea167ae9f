package tests

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailroom/internal/dns/dnstest"
)

// trickler holds a connection open by sending one byte at a time, the way
// a slowloris attack does, and records how the server ended it.
type trickler struct {
	conn   net.Conn
	mu     sync.Mutex
	answer string // the last line the server sent
}

func (tr *trickler) last() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.answer
}

// trickle connects to addr from src and sends "x" every interval until the
// server closes the connection or stop is closed.
func trickle(t *testing.T, s *server, addr, src string, interval time.Duration, stop chan struct{}) *trickler {
	t.Helper()
	conn := s.dialFrom(t, addr, src).conn
	tr := &trickler{conn: conn}
	go func() {
		r := bufio.NewReader(conn)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tr.mu.Lock()
			tr.answer = strings.TrimSpace(line)
			tr.mu.Unlock()
		}
	}()
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(interval):
				conn.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := conn.Write([]byte("x")); err != nil {
					return
				}
			}
		}
	}()
	return tr
}

// TestSlowlorisDoesNotStarveSubmission: 40 client addresses trickling bytes
// hold port 25 at its connection limit while a client on submission logs in
// and sends normally; a trickled command line still ends at its deadline.
func TestSlowlorisDoesNotStarveSubmission(t *testing.T) {
	s := newServer(t, "max_connections = 40\nmax_connections_per_client = 1\ncommand_timeout = \"4s\"", "")
	s.start()
	s.waitLog(`msg="smtp session"`) // the start-up probe's session is over
	time.Sleep(100 * time.Millisecond)
	stop := make(chan struct{})
	defer close(stop)
	var held []*trickler
	for i := 0; i < 40; i++ {
		held = append(held, trickle(t, s, s.addr, fmt.Sprintf("127.0.1.%d", i+1), 200*time.Millisecond, stop))
	}
	time.Sleep(300 * time.Millisecond)
	// Port 25 is full: one more is refused.
	if r := s.dialFrom(t, s.addr, "127.0.2.1").reply(); !strings.HasPrefix(r, "421 4.7.0") || !strings.Contains(r, "Too many connections") {
		t.Fatalf("port 25 at its limit answered %q, want 421 4.7.0 Too many connections", r)
	}
	// A second connection from one of the trickling addresses is over the
	// per-client limit.
	if r := s.dialFrom(t, s.addr, "127.0.1.1").reply(); !strings.Contains(r, "from your address") {
		t.Errorf("a second connection from one client answered %q", r)
	}
	// Submission is untouched: log in and send.
	c := loggedIn(t, s)
	if r := c.sendMail("alice@example.test", []string{"bob@example.test"}, "Subject: while flooded\r\n\r\nhello\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("sending on submission while port 25 is flooded: %q", r)
	}
	if n := len(s.mailbox("bob@example.test")); n != 1 {
		t.Errorf("bob has %d messages, want 1", n)
	}
	// Trickling does not stretch a command line past command_timeout.
	deadline := time.Now().Add(8 * time.Second)
	for _, tr := range held {
		for !strings.HasPrefix(tr.last(), "421 4.4.2") && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.HasPrefix(tr.last(), "421 4.4.2") {
			t.Fatalf("a trickling client was not timed out within twice command_timeout: last reply %q", tr.last())
		}
	}
	// Port 25 serves again once they are gone.
	s.dialFrom(t, s.addr, "127.0.2.2").expect("220 ")
}

// TestImplicitTLSRefusalNotInPlaintext: a client beyond the limits of the
// implicit-TLS listener gets its 421 inside TLS; nothing is sent in
// plaintext before the handshake.
func TestImplicitTLSRefusalNotInPlaintext(t *testing.T) {
	s := newServer(t, "", "[submission]\nmax_connections_per_client = 1\n")
	s.start()
	s.waitLog(`msg="smtp session"`)
	time.Sleep(100 * time.Millisecond)
	dialTLS := func() *client {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.3.1")}, Timeout: 5 * time.Second}
		conn, err := tls.DialWithDialer(&d, "tcp", s.tlsAddr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		t.Cleanup(func() { conn.Close() })
		return &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	}
	dialTLS().expect("220 ")
	if r := dialTLS().reply(); !strings.HasPrefix(r, "421 4.7.0") {
		t.Errorf("the second connection from one client got %q inside TLS, want 421 4.7.0", r)
	}
	// A plaintext client sees no SMTP text at all.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.3.1")}, Timeout: 5 * time.Second}
	raw, err := d.Dial("tcp", s.tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 64)
	if n, _ := raw.Read(buf); strings.Contains(string(buf[:n]), "421") {
		t.Errorf("the refusal was sent in plaintext: %q", buf[:n])
	}
}

// TestQueueRetryWakesTheRunner: "queue retry" makes a deferred message go
// out at once, not at the runner's next scan (up to a minute) or its next
// retry (an hour here).
func TestQueueRetryWakesTheRunner(t *testing.T) {
	b, port := remoteServer(t, "127.0.0.63", "dave@later.test")
	dnsAddr := dnstest.Start(t, map[string][]string{"later.test. MX": {"10 mx.later.test."}, "mx.later.test. A": {"127.0.0.63"}}).Addr
	a := newServer(t, "", fmt.Sprintf("[dns]\nresolver = %q\n[outbound]\nport = %d\n[queue]\nretry_intervals = [\"1h\"]\n", dnsAddr, port))
	a.start()
	c := loggedIn(t, a)
	if r := c.sendMail("alice@example.test", []string{"dave@later.test"}, "From: alice@example.test\r\nSubject: now please\r\n\r\nx\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("submission: %q", r)
	}
	a.waitLog("state=deferred")
	b.start()
	time.Sleep(2 * time.Second) // the runner's wait after the deferral has begun
	start := time.Now()
	a.cli("queue", "retry", "--all")
	for len(b.mailbox("dave@later.test")) == 0 {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("not delivered within 5s of queue retry:\n%s", a.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRefusalsAreLogged: a refused recipient is logged at INFO with the
// client, the address and the reason; the session's summary line names the
// user once.
func TestRefusalsAreLogged(t *testing.T) {
	s := newServer(t, "", "")
	s.start()
	c := s.dial()
	c.cmd("EHLO refused.example", "250 ")
	c.cmd("MAIL FROM:<a@remote.example>", "250 ")
	c.cmd("RCPT TO:<nobody@example.test>", "550 5.1.1")
	c.cmd("RCPT TO:<someone@elsewhere.example>", "554 5.7.1")
	c.cmd("QUIT", "221 ")
	s.waitLog(`refused_recipients=2`) // the summary comes after QUIT
	logs := s.logs()
	for _, want := range []string{
		`msg="recipient refused" session=`,
		`client=127.0.0.1 address=nobody@example.test code=550 reason="5.1.1 `,
		`refused_recipients=2`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q:\n%s", want, logs)
		}
	}
	l := loggedIn(t, s)
	l.cmd("QUIT", "221 ")
	s.waitLog(`listener=submission`)
	for _, line := range strings.Split(s.logs(), "\n") {
		if strings.Contains(line, `msg="smtp session"`) && strings.Count(line, " user=") > 1 {
			t.Errorf("the summary names the user more than once: %s", line)
		}
	}
}

// TestSIGHUPReloadsEverything: SIGHUP applies [queue] and [outbound] (as it
// always did [smtp]), and names a key that needs a restart instead of
// claiming it was applied.
func TestSIGHUPReloadsEverything(t *testing.T) {
	b, port := remoteServer(t, "127.0.0.64", "dave@later.test")
	b.start()
	closed := freeAddr(t) // nothing listens there
	_, closedPort, _ := net.SplitHostPort(closed)
	dnsAddr := dnstest.Start(t, map[string][]string{"later.test. MX": {"10 mx.later.test."}, "mx.later.test. A": {"127.0.0.64"}}).Addr
	tables := func(port, retry string) string {
		return fmt.Sprintf("[dns]\nresolver = %q\n[outbound]\nport = %s\n[queue]\nretry_intervals = [%q]\n", dnsAddr, port, retry)
	}
	a := newServer(t, "", tables(closedPort, "1h"))
	a.start()
	c := loggedIn(t, a)
	if r := c.sendMail("alice@example.test", []string{"dave@later.test"}, "From: alice@example.test\r\nSubject: reload\r\n\r\nx\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("submission: %q", r)
	}
	a.waitLog("state=deferred")
	nextAttempt := func() time.Duration {
		var rows []struct {
			NextAttempt time.Time `json:"next_attempt"`
		}
		json.Unmarshal([]byte(a.cli("queue", "list", "--json")), &rows)
		if len(rows) != 1 {
			t.Fatalf("queue list: %+v", rows)
		}
		return time.Until(rows[0].NextAttempt)
	}
	if d := nextAttempt(); d < 50*time.Minute {
		t.Fatalf("the first retry is in %v, want about 1h", d)
	}

	// [queue]: a shorter retry interval applies to the next deferral.
	a.writeConfig("", tables(closedPort, "30m"))
	a.cmd.Process.Signal(syscall.SIGHUP)
	a.waitLog("configuration reloaded")
	a.cli("queue", "retry", "--all")
	deadline := time.Now().Add(10 * time.Second)
	for d := nextAttempt(); d > 35*time.Minute; d = nextAttempt() {
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP and a retry the next attempt is in %v, want about 30m", d)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// [outbound]: the next hop's port; [listen] is named as needing a restart.
	a.writeConfig("", tables(strconv.Itoa(port), "30m"))
	cfg, _ := os.ReadFile(a.config)
	os.WriteFile(a.config, []byte(strings.Replace(string(cfg), a.addr, "127.0.0.1:1", 1)), 0o600)
	a.cmd.Process.Signal(syscall.SIGHUP)
	a.waitLog(`key=listen`)
	a.cli("queue", "retry", "--all")
	waitMailbox(t, b, "dave@later.test", 1, "delivery to the next hop's reloaded port")
	if !strings.Contains(a.logs(), `needs_restart=[listen]`) {
		t.Errorf("the reload does not say that [listen] needs a restart")
	}
	a.dial().cmd("EHLO still.example", "250 ") // still on the old address

	// A key that needs a restart is not half applied: turning the
	// self-signed certificate off leaves TLS as it runs.
	a.writeConfig("", tables(strconv.Itoa(port), "30m")+"[tls]\nself_signed = false\n")
	a.cmd.Process.Signal(syscall.SIGHUP)
	a.waitLog(`key=tls.self_signed`)
	loggedIn(t, a).cmd("QUIT", "221 ")
}

// TestNULIsRefused: a message with a NUL octet is refused with 554 5.6.0
// after its end (the session stays in sync) and nothing is stored.
func TestNULIsRefused(t *testing.T) {
	s := newServer(t, "", "")
	s.start()
	c := s.dial()
	c.cmd("EHLO nul.example", "250 ")
	if r := c.sendMail("a@remote.example", []string{"alice@example.test"}, "Subject: nul\r\n\r\nbefore\x00after\r\n"); !strings.HasPrefix(r, "554 5.6.0") || !strings.Contains(r, "NUL") {
		t.Errorf("a message with NUL: %q, want 554 5.6.0 naming NUL", r)
	}
	c.sendMail("a@remote.example", []string{"alice@example.test"}, "Subject: clean\r\n\r\nfine\r\n")
	if msgs := s.mailbox("alice@example.test"); len(msgs) != 1 || msgs[0].Subject != "clean" {
		t.Errorf("alice's mailbox: %+v, want only the clean message", msgs)
	}
}

// TestNoEscapesReachTheTerminal: a Subject with terminal escapes (raw and
// RFC 2047-encoded) and a bidi override is listed by "mailbox list" with
// none of them (the JSON keeps the text, escaped).
func TestNoEscapesReachTheTerminal(t *testing.T) {
	s := newServer(t, "", "")
	s.start()
	c := s.dial()
	c.cmd("EHLO escape.example", "250 ")
	c.sendMail("a@remote.example", []string{"alice@example.test"}, "From: =?utf-8?q?Eve=1B]0;owned=07?= <eve@remote.example>\r\nSubject: =?utf-8?q?clear=1B[2J=1Bc?= invoice\u202egnp.exe\r\n\r\nx\r\n")
	out := s.cli("mailbox", "list", "alice@example.test")
	for _, bad := range []string{"\x1b", "\x07", "\u202e"} {
		if strings.Contains(out, bad) {
			t.Errorf("mailbox list prints %q raw:\n%q", bad, out)
		}
	}
	if !strings.Contains(out, "invoice") {
		t.Errorf("the subject is missing from the list:\n%s", out)
	}
	if js := s.cli("mailbox", "list", "alice@example.test", "--json"); strings.Contains(js, "\x1b") {
		t.Errorf("the JSON carries a raw ESC: %q", js)
	}
}

// TestFileModes: in a data directory made beforehand with mode 0755 (as a
// package or an admin would), nothing Mailroom creates is readable by other
// users, and the open directory is warned about.
func TestFileModes(t *testing.T) {
	embeddedOnly(t, "the embedded store's files and their modes")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o755)
	os.Chmod(data, 0o755)
	s := newServer(t, "", "")
	cfg, _ := os.ReadFile(s.config)
	os.WriteFile(s.config, []byte(strings.Replace(string(cfg), filepath.Join(s.dir, "data"), data, 1)), 0o600)
	s.cli("domain", "add", "example.test")
	s.cli("user", "add", "alice@example.test", "--generate")
	s.start()
	c := s.dial()
	c.cmd("EHLO modes.example", "250 ")
	c.sendMail("a@remote.example", []string{"alice@example.test"}, "Subject: big\r\n\r\n"+strings.Repeat("x", 2<<20)+"\r\n")
	s.waitLog("other users of this machine can read the store")
	filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == data {
			return nil
		}
		fi, err := os.Lstat(path)
		if err == nil && fi.Mode().Perm()&0o007 != 0 {
			t.Errorf("%s has mode %v: readable by other users", path, fi.Mode().Perm())
		}
		return nil
	})
}

// TestStampsDoNotFollowLinks: a stamp replaced by a link to a file outside
// the data directory (by whoever owns the directory) is not written through
// by the CLI, which may run as root.
func TestStampsDoNotFollowLinks(t *testing.T) {
	embeddedOnly(t, "the embedded store's stamp files")
	s := newServer(t, "", "")
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("untouched\n"), 0o644)
	stamp := filepath.Join(s.dir, "data", "stamps", "directory")
	os.Remove(stamp)
	if err := os.Symlink(victim, stamp); err != nil {
		t.Fatal(err)
	}
	_, errOut, _ := s.run("", "domain", "add", "linked.test")
	if b, _ := os.ReadFile(victim); string(b) != "untouched\n" {
		t.Errorf("the CLI wrote through the linked stamp: %q", b)
	}
	if !strings.Contains(errOut, "could not mark the directory as changed") {
		t.Errorf("the refused stamp is not reported: %q", errOut)
	}
	// The stamps directory itself replaced by a link to another directory.
	elsewhere := t.TempDir()
	os.RemoveAll(filepath.Join(s.dir, "data", "stamps"))
	if err := os.Symlink(elsewhere, filepath.Join(s.dir, "data", "stamps")); err != nil {
		t.Fatal(err)
	}
	s.run("", "domain", "add", "linked2.test")
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
		t.Errorf("the CLI wrote through the linked stamps directory: %v", entries)
	}
}

// TestDatabaseFilesDoNotFollowLinks: SQLite opens the WAL and its index by
// path, following links; a CLI (perhaps root) refuses a database whose WAL,
// index or journal is a link, rather than write through it.
func TestDatabaseFilesDoNotFollowLinks(t *testing.T) {
	embeddedOnly(t, "the embedded store's files")
	s := newServer(t, "", "")
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		victim := filepath.Join(t.TempDir(), "victim")
		os.WriteFile(victim, []byte("untouched\n"), 0o644)
		link := filepath.Join(s.dir, "data", "mailroom.db"+suffix)
		os.Remove(link)
		if err := os.Symlink(victim, link); err != nil {
			t.Fatal(err)
		}
		_, errOut, err := s.run("", "domain", "add", "linked"+suffix+".test")
		if b, _ := os.ReadFile(victim); string(b) != "untouched\n" {
			t.Errorf("%s: the CLI wrote through the link: %q", suffix, b[:min(len(b), 40)])
		}
		if err == nil || !strings.Contains(errOut, "mailroom.db"+suffix+" is not a regular file") || !strings.Contains(errOut, "move it away") {
			t.Errorf("%s: the link is not refused with a clear error: %v %q", suffix, err, errOut)
		}
		os.Remove(link)
	}
	if _, errOut, err := s.run("", "domain", "add", "unlinked.test"); err != nil {
		t.Errorf("with the links gone: %v %q", err, errOut)
	}
}

// TestReceivedStaysGrammatical: EHLO names that are neither a domain nor an
// address literal are accepted, but the Received field names the client by
// its address literal and keeps the claimed name in a comment (RFC 5321
// 4.4); a valid name stands as it is.
func TestReceivedStaysGrammatical(t *testing.T) {
	s := newServer(t, "", "")
	s.start()
	names := []string{"x]y", "under_score.test", "-leadinghyphen.test", "bad(name).test", "ok.example"}
	for _, name := range names {
		c := s.dial()
		c.cmd("EHLO "+name, "250 ")
		c.sendMail("a@remote.example", []string{"alice@example.test"}, "Subject: "+name+"\r\n\r\nx\r\n")
	}
	fromRe := regexp.MustCompile(`^Received: from (\[127\.0\.0\.1\] \(\[127\.0\.0\.1\]\)\r\n\t\(claimed [!-'*-\[\]-~]+\)|ok\.example \(\[127\.0\.0\.1\]\))\r\n\tby `)
	for _, m := range s.mailbox("alice@example.test") {
		raw := s.message("alice@example.test", m.ID)
		i := strings.Index(raw, "Received: ")
		if i < 0 || !fromRe.MatchString(raw[i:]) {
			t.Errorf("EHLO %s gave %q", m.Subject, raw[i:min(len(raw), i+120)])
		}
	}
}

// TestHandshakeTimeout: a client that connects to the implicit-TLS port and
// never starts the handshake is closed after [tls] handshake_timeout, with
// nothing said in plaintext.
func TestHandshakeTimeout(t *testing.T) {
	s := newServer(t, "", "[tls]\nhandshake_timeout = \"1s\"\n")
	s.start()
	conn, err := net.DialTimeout("tcp", s.tlsAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	conn.SetReadDeadline(start.Add(10 * time.Second))
	n, err := conn.Read(make([]byte, 64))
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read %d octets, %v: want the connection closed without a word", n, err)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
		t.Errorf("closed after %v, want about handshake_timeout (1s)", d)
	}
}
