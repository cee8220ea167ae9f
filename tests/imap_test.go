package tests

import (
	"os/exec"
	"strings"
	"testing"
)

// pythonIMAP is a session of Python's imaplib, the IMAP client of many
// scripts and tools: STARTTLS on the IMAP port (LOGINDISABLED before),
// LOGIN, LIST, SELECT, FETCH, SEARCH, STORE, COPY, EXPUNGE, APPEND, and the
// same over implicit TLS. It prints what it saw, line by line.
const pythonIMAP = `
import imaplib, ssl, sys
host, port, sport, cafile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False
m = imaplib.IMAP4(host, port)
print("caps-before-tls", " ".join(m.capabilities))
try:
    m.login("alice@example.test", "secret-alice")
    print("login-before-tls succeeded")
except Exception as e:
    print("login-before-tls refused", e)
m.starttls(ssl_context=ctx)
typ, data = m.login("alice@example.test", "secret-alice")
print("login", typ)
typ, data = m.list()
print("list", typ, b" | ".join(data).decode())
typ, data = m.select("INBOX")
print("select", typ, data[0].decode())
typ, data = m.search(None, "ALL")
print("search-all", data[0].decode())
typ, data = m.search(None, "SUBJECT", "second")
print("search-subject", data[0].decode())
typ, data = m.fetch("1", "(FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)")
print("fetch-meta", data[0].decode())
typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])")
print("fetch-header", repr(data[0][1].decode()))
typ, data = m.fetch("2", "(BODYSTRUCTURE)")
print("bodystructure", data[0].decode())
typ, data = m.fetch("2", "(BODY[2])")
print("part2", repr(data[0][1].decode()))
typ, data = m.fetch("2", "(FLAGS)")
print("flags-after-read", data[0].decode())
typ, data = m.uid("FETCH", "1:*", "(UID FLAGS)")
print("uid-fetch", b" | ".join(d if isinstance(d, bytes) else d[0] for d in data).decode())
typ, data = m.store("1", "+FLAGS", "(\\Flagged $Important)")
print("store", typ, data[0].decode())
typ, data = m.copy("1", "Archive")
print("copy", typ, m.untagged_responses.get("COPYUID", data))
typ, data = m.store("1", "+FLAGS.SILENT", "(\\Deleted)")
typ, data = m.expunge()
print("expunge", typ, data)
typ, data = m.status("Archive", "(MESSAGES UNSEEN UIDNEXT)")
print("status", data[0].decode())
typ, data = m.append("Drafts", "(\\Draft)", None, b"From: alice@example.test\r\nSubject: draft\r\n\r\nunfinished\r\n")
print("append", typ, data[0].decode())
typ, data = m.create("Projects/2024")
print("create", typ)
typ, data = m.list("\"\"", "Projects*")
print("list-projects", b" | ".join(data).decode())
typ, data = m.rename("Projects", "Work")
print("rename", typ)
typ, data = m.list("\"\"", "*")
print("list-all", b" | ".join(data).decode())
m.logout()
s = imaplib.IMAP4_SSL(host, sport, ssl_context=ctx)
typ, data = s.login("alice@example.test", "secret-alice")
print("imaps-login", typ)
typ, data = s.select("Archive", readonly=True)
print("imaps-select", typ, data[0].decode())
typ, data = s.fetch("1", "(BODY.PEEK[TEXT])")
print("imaps-text", repr(data[0][1].decode()))
try:
    s.login("alice@example.test", "wrong")
except Exception as e:
    print("relogin", e)
s.logout()
s = imaplib.IMAP4_SSL(host, sport, ssl_context=ctx)
try:
    s.login("alice@example.test", "wrong-password")
    print("wrong-login succeeded")
except imaplib.IMAP4.error as e:
    print("wrong-login", e)
`

// TestPythonImaplib: mail delivered over SMTP is read with Python's
// imaplib over STARTTLS and over implicit TLS, and what the client does
// (flags, copies, expunges, appends, folders) is stored.
func TestPythonImaplib(t *testing.T) {
	py := requireTool(t, "python3")
	dir := t.TempDir()
	certFile, keyFile, _ := writeCert(t, dir, "imap")
	s := newServer(t, "", "[tls]\ncert_file = \""+certFile+"\"\nkey_file = \""+keyFile+"\"\n")
	s.start()
	c := s.dial()
	c.cmd("EHLO imap.example", "250 ")
	c.sendMail("sender@remote.example", []string{"alice@example.test"}, "From: Sender <sender@remote.example>\r\nTo: alice@example.test\r\nSubject: first\r\n\r\nHello Alice.\r\n")
	c.sendMail("sender@remote.example", []string{"alice@example.test"}, strings.Join([]string{
		"From: =?utf-8?q?J=C3=B6rg?= <jorg@remote.example>", "Subject: second", "MIME-Version: 1.0",
		"Content-Type: multipart/mixed; boundary=xyz", "", "--xyz", "Content-Type: text/plain; charset=utf-8", "",
		"text part", "--xyz", "Content-Type: application/octet-stream", "Content-Transfer-Encoding: base64", "",
		"AAECAw==", "--xyz--", ""}, "\r\n"))
	host, port, _ := strings.Cut(s.imapAddr, ":")
	_, sport, _ := strings.Cut(s.imapsAddr, ":")
	out, err := exec.Command(py, "-c", pythonIMAP, host, port, sport, certFile).CombinedOutput()
	got := string(out)
	if err != nil {
		t.Fatalf("python: %v\n%s\n%s", err, got, s.logs())
	}
	for _, want := range []string{
		"caps-before-tls IMAP4REV1",
		"LOGINDISABLED",
		"login-before-tls refused",
		"login OK",
		`(\HasNoChildren \Sent) "/" Sent`,
		`(\HasNoChildren) "/" INBOX`,
		"select OK 2",
		"search-all 1 2",
		"search-subject 2",
		`ENVELOPE (NIL "first" (("Sender" NIL "sender" "remote.example"))`,
		"RFC822.SIZE",
		`fetch-header 'From: Sender <sender@remote.example>\r\nSubject: first\r\n\r\n'`,
		`BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 9 1`,
		`"APPLICATION" "OCTET-STREAM" NIL NIL NIL "BASE64" 8`,
		`"MIXED" ("BOUNDARY" "xyz")`,
		"part2 'AAECAw=='",
		`flags-after-read 2 (FLAGS (\Seen \Recent))`,
		"store OK 1 (FLAGS (\\Flagged $Important \\Recent))",
		"copy OK",
		"expunge OK [b'1']",
		"status Archive (MESSAGES 1 UNSEEN 1 UIDNEXT 2)",
		"append OK [APPENDUID",
		"create OK",
		`(\HasChildren) "/" Projects`,
		`(\HasNoChildren) "/" Projects/2024`,
		"rename OK",
		`"/" Work/2024`,
		"imaps-login OK",
		"imaps-select OK 1",
		`imaps-text 'Hello Alice.\r\n'`,
		"relogin",
		"wrong-login b'[AUTHENTICATIONFAILED]",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("imaplib output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("imaplib said:\n%s", got)
	}
	// What the client did is in the store.
	if msgs := s.mailbox("alice@example.test"); len(msgs) != 1 {
		t.Errorf("INBOX has %d messages after the expunge, want 1", len(msgs))
	}
	folders := s.cli("mailbox", "folders", "alice@example.test")
	for _, want := range []string{"Work/2024", "Drafts"} {
		if !strings.Contains(folders, want) {
			t.Errorf("folders lack %s:\n%s", want, folders)
		}
	}
}
