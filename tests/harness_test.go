// Package tests starts the real mailroom binary on loopback ports and
// talks to it the way users do: raw sockets for hostile dialogues, Python's
// smtplib, swaks, curl and mutt for real clients, Postfix as a real next hop,
// the CLI for administration.
package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the static mailroom built once for all tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mailroom-tests-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "mailroom")
	build := exec.Command("go", "build", "-o", binary, "../cmd/mailroom")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building mailroom: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	if pgShared != nil {
		pgShared.Stop()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is one running mailroom.
type server struct {
	t                   *testing.T
	dir                 string
	config              string
	addr                string // smtp (MX)
	subAddr             string // submission (STARTTLS)
	tlsAddr             string // submissions (implicit TLS)
	imapAddr, imapsAddr string
	pop3Addr, pop3sAddr string
	cmd                 *exec.Cmd
	mu                  sync.Mutex
	stderr              bytes.Buffer
	stdout              bytes.Buffer
	exited              chan struct{}
	// serveArgs are added to "mailroom serve".
	serveArgs []string
	// the extra configuration of the last writeConfig
	extraSMTP, extraTables string
	// extraListen: more lines for [listen] (set before writeConfig)
	extraListen string
	pgURL       string // the PostgreSQL database of this server, when the tests run on PostgreSQL
}

// noDNS points the server at a loopback port where no DNS server listens,
// unless the test configures DNS itself: tests never ask real resolvers.
// onPostgres says the black-box tests run on the PostgreSQL store
// (MAILROOM_TEST_STORE=postgres, as make test's second pass sets it):
// each server gets a database of its own.
var onPostgres = os.Getenv("MAILROOM_TEST_STORE") == "postgres"

// storeTable is the [store] table of s on PostgreSQL ("" on the embedded
// store, or when the test names a store itself).
func (s *server) storeTable(extra string) string {
	if !onPostgres || strings.Contains(extra, "[store]") {
		return ""
	}
	if s.pgURL == "" {
		s.pgURL = postgresURL(s.t)
	}
	return fmt.Sprintf("\n[store]\nurl = %q\n", s.pgURL)
}

func noDNS(extra string) string {
	if strings.Contains(extra, "[dns]") {
		return ""
	}
	return "\n[dns]\nresolver = \"127.0.0.1:9\"\n"
}

// quoted is a TOML string, or nothing for "".
func quoted(s string) string {
	if s == "" {
		return ""
	}
	return fmt.Sprintf("%q", s)
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// newServer writes a configuration (the base plus extra TOML, which may
// add keys to [smtp] or new tables) and prepares the example.test domain
// with users alice and bob. It does not start the server.
func newServer(t *testing.T, extraSMTP string, extraTables string) *server {
	t.Helper()
	s := &server{t: t, dir: t.TempDir(), addr: freeAddr(t), subAddr: freeAddr(t), tlsAddr: freeAddr(t), imapAddr: freeAddr(t), imapsAddr: freeAddr(t),
		pop3Addr: freeAddr(t), pop3sAddr: freeAddr(t)}
	s.config = filepath.Join(s.dir, "mailroom.toml")
	s.writeConfig(extraSMTP, extraTables)
	s.cli("domain", "add", "example.test")
	s.cliStdin("secret-alice\n", "user", "add", "alice@example.test", "--password-stdin")
	s.cliStdin("secret-bob-lantern\n", "user", "add", "bob@example.test", "--password-stdin")
	t.Cleanup(s.stop)
	return s
}

func (s *server) writeConfig(extraSMTP, extraTables string) {
	s.extraSMTP, s.extraTables = extraSMTP, extraTables
	imaps, pop3s := s.imapsAddr, s.pop3sAddr
	if s.tlsAddr == "" {
		imaps, pop3s = "", "" // a test without implicit TLS has no certificate for it
	}
	cfg := fmt.Sprintf(`hostname = "mx.example.test"
data_dir = %q
shutdown_timeout = "10s"

[listen]
smtp = [%q]
submission = [%s]
submissions = [%s]
imap = [%s]
imaps = [%s]
pop3 = [%s]
pop3s = [%s]
%s

[smtp]
%s

%s
`, filepath.Join(s.dir, "data"), s.addr, quoted(s.subAddr), quoted(s.tlsAddr), quoted(s.imapAddr), quoted(imaps), quoted(s.pop3Addr), quoted(pop3s), s.extraListen, extraSMTP, extraTables+noDNS(extraTables)+s.storeTable(extraTables))
	if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// start runs "mailroom serve" and waits until it accepts connections.
func (s *server) start() {
	s.t.Helper()
	for try := 0; ; try++ {
		if s.startOnce(try < 3) {
			return
		}
		// A port picked by freeAddr was taken by another process before the
		// server bound it: pick new loopback ports and try again.
		for _, a := range []*string{&s.addr, &s.subAddr, &s.tlsAddr, &s.imapAddr, &s.imapsAddr, &s.pop3Addr, &s.pop3sAddr} {
			if strings.HasPrefix(*a, "127.0.0.1:") {
				*a = freeAddr(s.t)
			}
		}
		s.writeConfig(s.extraSMTP, s.extraTables)
	}
}

// startOnce runs "mailroom serve" and waits until it accepts connections;
// it reports false when the server could not bind a port and retry is set.
func (s *server) startOnce(retry bool) bool {
	s.t.Helper()
	s.mu.Lock()
	s.stdout.Reset()
	s.stderr.Reset()
	s.mu.Unlock()
	s.cmd = exec.Command(binary, append([]string{"serve", "--config", s.config, "--log-level", "debug"}, s.serveArgs...)...)
	s.cmd.Stdout = &lockedWriter{mu: &s.mu, w: &s.stdout}
	s.cmd.Stderr = &lockedWriter{mu: &s.mu, w: &s.stderr}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			c.Close()
			// IMAP is bound after SMTP: wait for it too.
			if s.imapAddr == "" {
				return true
			}
			if c, err = net.DialTimeout("tcp", s.imapAddr, time.Second); err == nil {
				c.Close()
				return true
			}
		}
		select {
		case <-s.exited:
			if retry && strings.Contains(s.logs(), "address already in use") {
				s.cmd = nil
				return false
			}
			s.t.Fatalf("mailroom exited at start:\n%s", s.logs())
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.t.Fatalf("mailroom did not listen on %s within 15s:\n%s", s.addr, s.logs())
	return false
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (s *server) logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stdout.String() + s.stderr.String()
}

// stop sends SIGTERM and waits; on a failed test it prints the server's log.
func (s *server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.exited:
	default:
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(20 * time.Second):
			s.cmd.Process.Kill()
			<-s.exited
		}
	}
	if s.t.Failed() {
		s.t.Logf("server log:\n%s", s.logs())
	}
	s.cmd = nil
}

// kill stops the server with SIGKILL, as a crash would.
func (s *server) kill() {
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// cli runs an administration command and fails the test if it fails.
func (s *server) cli(args ...string) string {
	s.t.Helper()
	return s.cliStdin("", args...)
}

func (s *server) cliStdin(stdin string, args ...string) string {
	s.t.Helper()
	out, errOut, err := s.run(stdin, args...)
	if err != nil {
		s.t.Fatalf("mailroom %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// run runs an administration command and returns its output and error.
func (s *server) run(stdin string, args ...string) (string, string, error) {
	cmd := exec.Command(binary, append(args, "--config", s.config)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// listedMessage is a row of "mailbox list --json".
type listedMessage struct {
	ID      uint32    `json:"id"`
	Date    time.Time `json:"date"`
	From    string    `json:"from"`
	Subject string    `json:"subject"`
	Size    int64     `json:"size"`
}

// mailbox lists a user's INBOX through the CLI.
func (s *server) mailbox(addr string) []listedMessage {
	s.t.Helper()
	var msgs []listedMessage
	if err := json.Unmarshal([]byte(s.cli("mailbox", "list", addr, "--json")), &msgs); err != nil {
		s.t.Fatal(err)
	}
	return msgs
}

// message returns one stored message, raw.
func (s *server) message(addr string, id uint32) string {
	s.t.Helper()
	return s.cli("mailbox", "cat", addr, fmt.Sprint(id))
}

// client is a raw SMTP connection for scripted dialogues.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func (s *server) dial() *client {
	s.t.Helper()
	return s.dialAddr(s.addr)
}

// dialFrom opens a raw connection to addr from a chosen loopback source
// address (so that per-IP limits can be tested), read up to the greeting.
func (s *server) dialFrom(t *testing.T, addr, src string) *client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// dialAddr opens a raw connection to one of the server's listeners.
func (s *server) dialAddr(addr string) *client {
	s.t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	cl := &client{t: s.t, conn: c, r: bufio.NewReader(c)}
	cl.expect("220 ")
	return cl
}

// send writes raw bytes.
func (c *client) send(raw string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.conn.Write([]byte(raw)); err != nil {
		c.t.Fatalf("send %q: %v", raw, err)
	}
}

// reply reads one (possibly multiline) reply and returns its last line.
func (c *client) reply() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply: %v (got %q)", err, line)
		}
		if !strings.HasSuffix(line, "\r\n") {
			c.t.Fatalf("reply line without CRLF: %q", line)
		}
		if len(line) >= 4 && line[3] == '-' {
			continue
		}
		return strings.TrimSuffix(line, "\r\n")
	}
}

// expect reads a reply and checks that it starts with prefix.
func (c *client) expect(prefix string) string {
	c.t.Helper()
	r := c.reply()
	if !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("expected a reply starting %q, got %q", prefix, r)
	}
	return r
}

// cmd sends a command line and checks the reply.
func (c *client) cmd(line, prefix string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(prefix)
}

// ehlo sends EHLO and returns the whole multiline reply as sent, CRLFs
// included; it fails the test unless the reply is a 250.
func (c *client) ehlo(name string) string {
	c.t.Helper()
	c.send("EHLO " + name + "\r\n")
	c.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	var b strings.Builder
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading the EHLO reply: %v (got %q)", err, b.String()+line)
		}
		b.WriteString(line)
		if !strings.HasPrefix(line, "250") {
			c.t.Fatalf("EHLO answered %q", line)
		}
		if len(line) < 4 || line[3] == ' ' {
			return b.String()
		}
	}
}

// closed reports whether the server closed the connection.
func (c *client) closed() bool {
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.r.ReadByte()
	return err != nil
}

// data sends DATA and body (which must end in CRLF; the end-of-data line is
// added) and fails the test unless the message is accepted with 250.
func (c *client) data(body string) string {
	c.t.Helper()
	c.cmd("DATA", "354 ")
	c.send(body + ".\r\n")
	return c.expect("250 ")
}

// sendMail runs a whole transaction and returns the final reply.
func (c *client) sendMail(from string, to []string, body string) string {
	c.t.Helper()
	c.cmd("MAIL FROM:<"+from+">", "250 ")
	for _, r := range to {
		c.cmd("RCPT TO:<"+r+">", "250 ")
	}
	c.cmd("DATA", "354 ")
	c.send(body + ".\r\n")
	return c.reply()
}
