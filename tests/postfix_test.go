package tests

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailroom/internal/dns/dnstest"
)

// postfixPeer is a Postfix instance of the test's own: configuration,
// queue, data and mailboxes in a temporary folder, one smtpd listener on a
// loopback address. It receives mail for peer.test into Maildirs.
type postfixPeer struct {
	t       *testing.T
	bin     string
	conf    string // config_directory, given to every postfix command with -c
	port    int
	maildir string // virtual_mailbox_base
	maillog string
}

// postfixPath finds postfix, which Debian installs in /usr/sbin (not on
// every user's PATH).
func postfixPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("postfix"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/postfix"); err == nil {
		return "/usr/sbin/postfix"
	}
	t.Fatalf("postfix is not installed: run ./scripts/test-deps.sh (make test does)")
	return ""
}

// postfixMain is main.cf; %[1]s is the temporary folder.
const postfixMain = `compatibility_level = 3.6
myhostname = mx.peer.test
mydomain = peer.test
myorigin = $mydomain
mydestination =
# Postfix accepts only addresses of network interfaces here, and 127.0.0.71
# is not one (the whole of 127/8 answers on lo): the listener names its
# address in master.cf instead, and nothing else listens.
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
queue_directory = %[1]s/queue
data_directory = %[1]s/data
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
# The whole SMTP dialogue with Mailroom, so that its MAIL FROM parameters
# can be checked.
debug_peer_list = 127.0.0.0/8
virtual_mailbox_domains = peer.test
virtual_mailbox_base = %[1]s/mail
virtual_mailbox_maps = texthash:%[1]s/etc/vmailbox
virtual_uid_maps = static:%[2]s
virtual_gid_maps = static:%[3]s
smtpd_tls_cert_file = %[1]s/etc/cert.pem
smtpd_tls_key_file = %[1]s/etc/key.pem
smtpd_tls_security_level = may
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 1
`

// postfixMaster is master.cf: one smtpd on %s, the unix services Postfix
// needs, no chroot (the queue is in a temporary folder), postlogd for
// maillog_file.
const postfixMaster = `%s inet n - n - - smtpd
pickup     unix n - n 60 1 pickup
cleanup    unix n - n - 0 cleanup
qmgr       unix n - n 300 1 qmgr
tlsmgr     unix - - n 1000? 1 tlsmgr
rewrite    unix - - n - - trivial-rewrite
bounce     unix - - n - 0 bounce
defer      unix - - n - 0 bounce
trace      unix - - n - 0 bounce
verify     unix - - n - 1 verify
flush      unix n - n 1000? 0 flush
proxymap   unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp       unix - - n - - smtp
relay      unix - - n - - smtp
showq      unix n - n - - showq
error      unix - - n - - error
retry      unix - - n - - error
discard    unix - - n - - discard
virtual    unix - n n - - virtual
anvil      unix - - n - 1 anvil
scache     unix - - n - 1 scache
postlog    unix-dgram n - n - 1 postlogd
`

// startPostfix runs a Postfix on ip (a loopback address) and a free port,
// with a Maildir for each of users, and stops it when the test ends.
func startPostfix(t *testing.T, ip string, users ...string) *postfixPeer {
	t.Helper()
	p := &postfixPeer{t: t, bin: postfixPath(t)}
	dir := t.TempDir()
	// Postfix's daemons (user postfix) and virtual(8) (user nobody) must
	// reach the queue and the mailboxes: t.TempDir's folders are 0700.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p.conf = filepath.Join(dir, "etc")
	p.maildir = filepath.Join(dir, "mail")
	p.maillog = filepath.Join(dir, "maillog")
	uid, gid := "65534", "65534"
	if u, err := user.Lookup("nobody"); err == nil {
		uid, gid = u.Uid, u.Gid
	}
	for _, d := range []string{p.conf, p.maildir, filepath.Join(dir, "queue")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	nuid, _ := strconv.Atoi(uid)
	ngid, _ := strconv.Atoi(gid)
	if err := os.Chown(p.maildir, nuid, ngid); err != nil {
		t.Fatalf("postfix needs the tests to run as root: %v", err)
	}
	writeCertFor(t, p.conf, "mx.peer.test", "mx.peer.test", "")
	var boxes strings.Builder
	for _, u := range users {
		local, _, _ := strings.Cut(u, "@")
		fmt.Fprintf(&boxes, "%s %s/\n", u, local)
	}
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	p.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	listen := net.JoinHostPort(ip, strconv.Itoa(p.port))
	for name, text := range map[string]string{
		"main.cf":   fmt.Sprintf(postfixMain, dir, uid, gid),
		"master.cf": fmt.Sprintf(postfixMaster, listen),
		"vmailbox":  boxes.String(),
	} {
		if err := os.WriteFile(filepath.Join(p.conf, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := p.command("start"); err != nil {
		t.Fatalf("postfix start: %v\n%s%s", err, out, p.diagnose())
	}
	t.Cleanup(p.stop)
	// "postfix start" returns once the master has bound its listener.
	c, err := net.DialTimeout("tcp", listen, 5*time.Second)
	if err != nil {
		t.Fatalf("postfix does not listen on %s: %v\n%s", listen, err, p.log())
	}
	c.Close()
	return p
}

// command runs "postfix -c conf verb", for at most 30 seconds.
func (p *postfixPeer) command(verb string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p.bin, "-c", p.conf, verb).CombinedOutput()
	return string(out), err
}

// diagnose explains a failed start. Postfix reports errors in its
// configuration only to a terminal or to syslog (neither is there in a
// test), so "postfix check" runs again under script(1) for a terminal.
func (p *postfixPeer) diagnose() string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "script", "-qec", fmt.Sprintf("%s -c '%s' check", p.bin, p.conf), "/dev/null").CombinedOutput()
	if err != nil && len(out) == 0 {
		return fmt.Sprintf("(postfix check under script(1): %v)\n%s", err, p.log())
	}
	return string(out) + p.log()
}

// log is Postfix's maillog_file.
func (p *postfixPeer) log() string {
	b, err := os.ReadFile(p.maillog)
	if err != nil {
		return fmt.Sprintf("(no Postfix log: %v)", err)
	}
	return "postfix log:\n" + string(b)
}

// stop stops Postfix ("postfix stop" waits for the master to exit); on a
// failed test it prints Postfix's log.
func (p *postfixPeer) stop() {
	if out, err := p.command("stop"); err != nil {
		p.t.Errorf("postfix stop: %v\n%s", err, out)
	}
	if p.t.Failed() {
		p.t.Log(p.log())
	}
}

// delivered returns the messages in a user's Maildir (new/), by file name.
func (p *postfixPeer) delivered(local string) map[string]string {
	p.t.Helper()
	dir := filepath.Join(p.maildir, local, "new")
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		p.t.Fatal(err)
	}
	msgs := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			p.t.Fatal(err)
		}
		msgs[e.Name()] = string(b)
	}
	return msgs
}

// TestPostfixNextHop: Mailroom relays to a real Postfix found by MX, over
// STARTTLS; Postfix delivers to a Maildir with the envelope sender intact,
// an 8-bit body arrives unchanged, and the recipient Postfix refuses comes
// back to the sender as a DSN.
func TestPostfixNextHop(t *testing.T) {
	pf := startPostfix(t, "127.0.0.71", "bob@peer.test")
	dnsAddr := dnstest.Start(t, map[string][]string{
		"peer.test. MX":   {"10 mx.peer.test."},
		"mx.peer.test. A": {"127.0.0.71"},
	}).Addr
	a := newServer(t, "", fmt.Sprintf("[dns]\nresolver = %q\n[outbound]\nport = %d\n[queue]\nretry_intervals = [\"1s\"]\n", dnsAddr, pf.port))
	a.start()

	c := loggedIn(t, a)
	if r := c.sendMail("alice@example.test", []string{"bob@peer.test", "nosuch@peer.test"},
		"From: Alice <alice@example.test>\r\nTo: bob@peer.test, nosuch@peer.test\r\nSubject: to postfix\r\n\r\nhello bob, via postfix\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("submission: %q", r)
	}
	eightBit := "Grüße aus Köln: ½ € ✓ 日本語 📬\r\nA second line, ends in ñ\r\n"
	c.cmd("MAIL FROM:<alice@example.test> BODY=8BITMIME", "250 ")
	c.cmd("RCPT TO:<bob@peer.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("From: Alice <alice@example.test>\r\nTo: bob@peer.test\r\nSubject: eight bits\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + eightBit + ".\r\n")
	c.expect("250 ")

	deadline := time.Now().Add(30 * time.Second)
	for len(pf.delivered("bob")) < 2 || len(a.mailbox("alice@example.test")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("not delivered to Postfix and bounced within 30s (bob has %d, alice %d)",
				len(pf.delivered("bob")), len(a.mailbox("alice@example.test")))
		}
		time.Sleep(100 * time.Millisecond)
	}

	var plain, eight string
	for _, m := range pf.delivered("bob") {
		switch {
		case strings.Contains(m, "\nSubject: to postfix\n"):
			plain = m
		case strings.Contains(m, "\nSubject: eight bits\n"):
			eight = m
		}
	}
	t.Run("Postfix delivered over TLS with the envelope sender", func(t *testing.T) {
		for _, want := range []string{"Return-Path: <alice@example.test>\n", "Delivered-To: bob@peer.test\n",
			"(using TLSv1.3 with cipher ", "by mx.peer.test (Postfix) with ESMTPS", "\n\nhello bob, via postfix\n"} {
			if !strings.Contains(plain, want) {
				t.Errorf("bob's copy lacks %q:\n%s", want, plain)
			}
		}
	})
	t.Run("an 8-bit body arrives byte for byte, sent with BODY=8BITMIME", func(t *testing.T) {
		// Maildir files end lines in LF.
		_, body, _ := strings.Cut(eight, "\n\n")
		if want := strings.ReplaceAll(eightBit, "\r\n", "\n"); body != want {
			t.Errorf("the 8-bit body arrived as %q, want %q:\n%s", body, want, eight)
		}
		if !strings.Contains(eight, "Return-Path: <alice@example.test>\n") || !strings.Contains(eight, "(using TLSv1.3 with cipher ") {
			t.Errorf("the 8-bit message's headers:\n%s", eight)
		}
		var mails []string
		for _, line := range strings.Split(pf.log(), "\n") {
			if strings.Contains(line, ": MAIL FROM:<alice@example.test>") {
				mails = append(mails, line[strings.Index(line, "MAIL FROM:"):])
			}
		}
		n := 0
		for _, m := range mails {
			if strings.Contains(m, " BODY=8BITMIME") {
				n++
			}
		}
		if len(mails) != 2 || n != 1 {
			t.Errorf("Postfix saw these MAIL commands (want two, one with BODY=8BITMIME): %q", mails)
		}
	})
	t.Run("the refused recipient bounces, alone", func(t *testing.T) {
		msgs := a.mailbox("alice@example.test")
		if len(msgs) != 1 {
			t.Fatalf("alice has %d messages, want one bounce: %+v", len(msgs), msgs)
		}
		bounce := a.message("alice@example.test", msgs[0].ID)
		for _, want := range []string{"Return-Path: <>", "multipart/report", "Final-Recipient: rfc822; nosuch@peer.test",
			"Status: 5.1.1", "Remote-MTA: dns; mx.peer.test", "User unknown in virtual mailbox table", "Subject: to postfix"} {
			if !strings.Contains(bounce, want) {
				t.Errorf("the bounce lacks %q:\n%s", want, bounce)
			}
		}
		if strings.Contains(bounce, "Final-Recipient: rfc822; bob@peer.test") {
			t.Errorf("the bounce names the delivered recipient:\n%s", bounce)
		}
	})
}
