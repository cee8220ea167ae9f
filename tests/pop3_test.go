package tests

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// pythonPOP3 is a session of Python's poplib: CAPA, STLS (USER refused
// before), USER/PASS, STAT, LIST, UIDL, TOP, RETR, DELE, RSET, QUIT; then
// over implicit TLS with AUTH PLAIN, a second session refused while the
// first holds the maildrop, and what DELE did seen after QUIT.
const pythonPOP3 = `
import poplib, ssl, sys, base64
host, port, sport, cafile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False
p = poplib.POP3(host, port)
print("capa-before", sorted(p.capa().keys()))
try:
    p.user("alice@example.test")
    print("user-before-tls accepted")
except poplib.error_proto as e:
    print("user-before-tls", e)
p.stls(context=ctx)
print("capa-after", sorted(p.capa().keys()))
p.user("alice@example.test")
print("pass", p.pass_("secret-alice"))
print("stat", p.stat())
resp, lines, octets = p.list()
print("list", resp, lines)
resp, lines, octets = p.uidl()
print("uidl", lines)
uid1 = lines[0].split()[1]
resp, lines, octets = p.top(1, 1)
print("top", lines)
resp, lines, octets = p.retr(2)
print("retr", lines)
print("dele", p.dele(1))
print("stat-after-dele", p.stat())
print("rset", p.rset())
print("dele-again", p.dele(1))
s = poplib.POP3_SSL(host, sport, context=ctx)
try:
    s.user("alice@example.test")
    s.pass_("secret-alice")
    print("second-session accepted")
except poplib.error_proto as e:
    print("second-session", e)
s.quit()
print("quit", p.quit())
s = poplib.POP3_SSL(host, sport, context=ctx)
print("auth", s._shortcmd("AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0secret-alice").decode()))
print("stat-next-session", s.stat())
resp, lines, octets = s.uidl()
print("uidl-next", lines, "first-gone", uid1 not in [l.split()[1] for l in lines])
s.quit()
`

// TestPythonPoplib: mail delivered over SMTP is read and deleted with
// Python's poplib over STLS and implicit TLS.
func TestPythonPoplib(t *testing.T) {
	py := requireTool(t, "python3")
	dir := t.TempDir()
	certFile, keyFile, _ := writeCert(t, dir, "pop3")
	s := newServer(t, "", "[tls]\ncert_file = \""+certFile+"\"\nkey_file = \""+keyFile+"\"\n")
	s.start()
	c := s.dial()
	c.cmd("EHLO pop.example", "250 ")
	c.sendMail("sender@remote.example", []string{"alice@example.test"}, "Subject: first\r\n\r\nline one\r\nline two\r\n")
	c.sendMail("sender@remote.example", []string{"alice@example.test"}, "Subject: second\r\n\r\n..leading dot\r\nend\r\n") // dot-stuffed: stored as ".leading dot"
	host, port, _ := strings.Cut(s.pop3Addr, ":")
	_, sport, _ := strings.Cut(s.pop3sAddr, ":")
	out, err := exec.Command(py, "-c", pythonPOP3, host, port, sport, certFile).CombinedOutput()
	got := string(out)
	if err != nil {
		t.Fatalf("python: %v\n%s\n%s", err, got, s.logs())
	}
	for _, want := range []string{
		"capa-before ['AUTH-RESP-CODE', 'EXPIRE', 'IMPLEMENTATION', 'LOGIN-DELAY', 'PIPELINING', 'RESP-CODES', 'STLS', 'TOP', 'UIDL']",
		"user-before-tls b'-ERR [AUTH] Log in over TLS",
		"'SASL', 'TOP', 'UIDL', 'USER']",
		"pass b'+OK Logged in: 2 messages",
		"stat (2, ",
		"uidl [b'1 ",
		"top [b'Return-Path: <sender@remote.example>'",
		"b'Subject: first', b'', b'line one']",
		"b'.leading dot', b'end']",
		"dele b'+OK",
		"stat-after-dele (1, ",
		"rset b'+OK 2 messages",
		"second-session b'-ERR [IN-USE]",
		"quit b'+OK",
		"auth b'+OK Logged in: 1 messages",
		"stat-next-session (1, ",
		"first-gone True",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("poplib output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("poplib said:\n%s", got)
	}
	if msgs := s.mailbox("alice@example.test"); len(msgs) != 1 || msgs[0].Subject != "second" {
		t.Errorf("INBOX after the POP3 session: %+v", msgs)
	}
	// The message sent whole (RETR 2) is seen, for IMAP clients.
	var folders []struct {
		Name   string `json:"name"`
		Unseen int    `json:"unseen"`
	}
	if err := json.Unmarshal([]byte(s.cli("mailbox", "folders", "alice@example.test", "--json")), &folders); err != nil {
		t.Fatal(err)
	}
	for _, f := range folders {
		if f.Name == "INBOX" && f.Unseen != 0 {
			t.Errorf("INBOX has %d unseen messages after RETR, want 0", f.Unseen)
		}
	}
}
