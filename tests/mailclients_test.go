package tests

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// accessServer starts a server with a certificate for 127.0.0.1 and
// delivers two messages to alice over SMTP.
func accessServer(t *testing.T) (*server, string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, _ := writeCert(t, dir, "clients")
	s := newServer(t, "", "[tls]\ncert_file = \""+certFile+"\"\nkey_file = \""+keyFile+"\"\n")
	s.start()
	c := s.dial()
	c.cmd("EHLO clients.example", "250 ")
	c.sendMail("sender@remote.example", []string{"alice@example.test"}, "From: sender@remote.example\r\nSubject: first for clients\r\nMessage-ID: <c1@remote.example>\r\n\r\nHello one.\r\n")
	c.sendMail("sender@remote.example", []string{"alice@example.test"}, "From: sender@remote.example\r\nSubject: second for clients\r\nMessage-ID: <c2@remote.example>\r\n\r\nHello two.\r\n")
	return s, certFile
}

func run(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not finish within %v:\n%s", name, timeout, out)
	}
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestCurlIMAPAndPOP3: curl reads a message over imaps, over imap with
// STARTTLS, over pop3s and over pop3 with STLS.
func TestCurlIMAPAndPOP3(t *testing.T) {
	curl := requireTool(t, "curl")
	s, cert := accessServer(t)
	user := "alice@example.test:secret-alice"
	for _, c := range []struct{ name, url string }{
		{"imaps", "imaps://" + s.imapsAddr + "/INBOX;UID=1"},
		{"imap STARTTLS", "imap://" + s.imapAddr + "/INBOX;UID=2"},
		{"pop3s", "pop3s://" + s.pop3sAddr + "/1"},
		{"pop3 STLS", "pop3://" + s.pop3Addr + "/2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := run(t, 30*time.Second, curl, "-sS", "--ssl-reqd", "--cacert", cert, "--user", user, c.url)
			if !strings.Contains(out, "Hello one.") && !strings.Contains(out, "Hello two.") {
				t.Errorf("curl read:\n%s", out)
			}
		})
	}
	// The IMAP folder listing.
	out := run(t, 30*time.Second, curl, "-sS", "--cacert", cert, "--user", user, "imaps://"+s.imapsAddr+"/")
	for _, want := range []string{"INBOX", "Sent", "Archive"} {
		if !strings.Contains(out, want) {
			t.Errorf("curl's folder list lacks %s:\n%s", want, out)
		}
	}
}

// maildirFiles lists the message files of a Maildir folder.
func maildirFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range entries {
			out = append(out, filepath.Join(dir, sub, e.Name()))
		}
	}
	return out
}

// TestMbsync: mbsync (isync) copies every folder to a local Maildir, and a
// message put in the local Maildir reaches the server at the next sync.
func TestMbsync(t *testing.T) {
	mbsync := requireTool(t, "mbsync")
	s, cert := accessServer(t)
	dir := t.TempDir()
	local := filepath.Join(dir, "mail") + "/"
	os.MkdirAll(local, 0o700)
	host, port, _ := strings.Cut(s.imapsAddr, ":")
	conf := filepath.Join(dir, "mbsyncrc")
	os.WriteFile(conf, []byte(fmt.Sprintf(`IMAPAccount mailroom
Host %s
Port %s
User alice@example.test
Pass secret-alice
SSLType IMAPS
CertificateFile %s

IMAPStore remote
Account mailroom

MaildirStore local
Path %s
Inbox %sINBOX
SubFolders Verbatim

Channel all
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
`, host, port, cert, local, local)), 0o600)
	run(t, time.Minute, mbsync, "-c", conf, "-a")
	// mbsync turns on COMPRESS=DEFLATE when offered (its zlib, with
	// Z_PARTIAL_FLUSH): the sync above ran compressed. The session's line
	// is logged as it ends, which may be just after mbsync has exited.
	s.waitLog("compressed=true")
	got := maildirFiles(t, filepath.Join(local, "INBOX"))
	if len(got) != 2 {
		t.Fatalf("mbsync fetched %d messages into INBOX, want 2: %v", len(got), got)
	}
	for _, f := range []string{"Sent", "Drafts", "Archive", "Trash", "Junk"} {
		if _, err := os.Stat(filepath.Join(local, f)); err != nil {
			t.Errorf("the folder %s was not made locally: %v", f, err)
		}
	}
	// A draft written locally goes up.
	draft := "From: alice@example.test\r\nSubject: written offline\r\n\r\nDraft body.\r\n"
	name := fmt.Sprintf("%d.mbsynctest.host:2,D", time.Now().Unix())
	if err := os.WriteFile(filepath.Join(local, "Drafts", "cur", name), []byte(draft), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, time.Minute, mbsync, "-c", conf, "-a")
	var folders []struct {
		Name     string `json:"name"`
		Messages int    `json:"messages"`
	}
	out := s.cli("mailbox", "folders", "alice@example.test", "--json")
	if err := json.Unmarshal([]byte(out), &folders); err != nil {
		t.Fatal(err)
	}
	for _, f := range folders {
		if f.Name == "Drafts" && f.Messages != 1 {
			t.Errorf("the local draft did not reach the server: %+v", folders)
		}
	}
}

// TestFetchmail: fetchmail collects over POP3 with STLS and over IMAP
// with TLS, handing each message to a delivery command.
func TestFetchmail(t *testing.T) {
	fetchmail := requireTool(t, "fetchmail")
	s, cert := accessServer(t)
	dir := t.TempDir()
	// fetchmail checks the name against the certificate's CN only, not its
	// IP address: the certificate is pinned by its fingerprint instead.
	fp := certFingerprint(t, cert)
	for _, c := range []struct{ proto, addr, tls string }{
		{"POP3", s.pop3Addr, "sslproto tls1.2+ no sslcertck sslfingerprint \"" + fp + "\""},
		{"IMAP", s.imapsAddr, "ssl no sslcertck sslfingerprint \"" + fp + "\""},
	} {
		t.Run(c.proto, func(t *testing.T) {
			out := filepath.Join(dir, c.proto+".mbox")
			host, port, _ := strings.Cut(c.addr, ":")
			rc := filepath.Join(dir, c.proto+".rc")
			os.WriteFile(rc, []byte(fmt.Sprintf("poll %s service %s protocol %s user \"alice@example.test\" password \"secret-alice\" %s keep fetchall mda \"/bin/sh -c 'cat >> %s'\"\n",
				host, port, c.proto, c.tls, out)), 0o600)
			cmd := exec.Command(fetchmail, "-f", rc, "--nosyslog", "-v")
			cmd.Env = append(os.Environ(), "FETCHMAILHOME="+dir, "HOME="+dir)
			b, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("fetchmail: %v\n%s", err, b)
			}
			data, _ := os.ReadFile(out)
			if !strings.Contains(string(data), "Hello one.") || !strings.Contains(string(data), "Hello two.") {
				t.Errorf("fetchmail delivered:\n%s\n(fetchmail said:\n%s)", data, b)
			}
		})
	}
}

// TestGetmail: getmail6, run as a user other than root as it wants,
// collects over POP3 and IMAP with TLS into a Maildir.
func TestGetmail(t *testing.T) {
	getmail := requireTool(t, "getmail")
	s, cert := accessServer(t)
	dir, err := os.MkdirTemp("", "getmail-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	certCopy := filepath.Join(dir, "cert.pem")
	data, _ := os.ReadFile(cert)
	os.WriteFile(certCopy, data, 0o644)
	for _, c := range []struct{ kind, addr string }{
		{"SimplePOP3SSLRetriever", s.pop3sAddr},
		{"SimpleIMAPSSLRetriever", s.imapsAddr},
	} {
		t.Run(c.kind, func(t *testing.T) {
			md := filepath.Join(dir, c.kind)
			for _, sub := range []string{"new", "cur", "tmp"} {
				os.MkdirAll(filepath.Join(md, sub), 0o777)
			}
			host, port, _ := strings.Cut(c.addr, ":")
			rc := filepath.Join(dir, c.kind+".rc")
			os.WriteFile(rc, []byte(fmt.Sprintf(`[retriever]
type = %s
server = %s
port = %s
username = alice@example.test
password = secret-alice
ca_certs = %s

[destination]
type = Maildir
path = %s/

[options]
read_all = true
delete = false
`, c.kind, host, port, certCopy, md)), 0o644)
			chownAll(t, dir)
			args := []string{"-u", "nobody", "--", getmail, "--getmaildir", dir, "--rcfile", rc}
			out := run(t, time.Minute, "runuser", args...)
			files := maildirFiles(t, md)
			if len(files) != 2 {
				t.Errorf("getmail delivered %d messages, want 2:\n%s", len(files), out)
			}
		})
	}
}

// chownAll gives a directory tree to nobody, for a client run as nobody.
func chownAll(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command("chown", "-R", "nobody:nogroup", dir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v\n%s", err, out)
	}
}

// TestOfflineimap: offlineimap3 mirrors the folders into a local Maildir
// (the certificate pinned by its fingerprint: offlineimap checks names, not
// the address 127.0.0.1).
func TestOfflineimap(t *testing.T) {
	offlineimap := requireTool(t, "offlineimap")
	s, cert := accessServer(t)
	dir := t.TempDir()
	host, port, _ := strings.Cut(s.imapsAddr, ":")
	conf := filepath.Join(dir, "offlineimaprc")
	os.WriteFile(conf, []byte(fmt.Sprintf(`[general]
accounts = mailroom
metadata = %s/meta

[Account mailroom]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = %s/mail

[Repository remote]
type = IMAP
remotehost = %s
remoteport = %s
remoteuser = alice@example.test
remotepass = secret-alice
ssl = yes
cert_fingerprint = %s
`, dir, dir, host, port, certSHA256(t, cert))), 0o600)
	out := run(t, 2*time.Minute, offlineimap, "-c", conf, "-o", "-u", "basic")
	files := maildirFiles(t, filepath.Join(dir, "mail", "INBOX"))
	if len(files) != 2 {
		t.Errorf("offlineimap mirrored %d messages of INBOX, want 2:\n%s", len(files), out)
	}
}

// certFingerprint is the MD5 fingerprint of a PEM certificate as fetchmail
// writes it ("AB:CD:...").
func certFingerprint(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("no certificate in %s", file)
	}
	sum := md5.Sum(block.Bytes)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// certSHA256 is the SHA-256 of a PEM certificate in hexadecimal.
func certSHA256(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("no certificate in %s", file)
	}
	return fmt.Sprintf("%x", sha256.Sum256(block.Bytes))
}
