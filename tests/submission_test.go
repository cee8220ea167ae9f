package tests

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func plainAuth(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// startTLSInsecure upgrades a raw client without checking the (self-signed)
// certificate.
func (c *client) startTLSInsecure() {
	c.t.Helper()
	c.cmd("STARTTLS", "220 ")
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.conn = tc
	c.r.Reset(tc)
}

// loggedIn returns a submission session over STARTTLS, authenticated as alice.
func loggedIn(t *testing.T, s *server) *client {
	return loggedInAs(t, s, "alice@example.test", "secret-alice")
}

// loggedInAs is loggedIn as another user.
func loggedInAs(t *testing.T, s *server, user, password string) *client {
	c := s.dialAddr(s.subAddr)
	c.t = t
	c.cmd("EHLO sub.example", "250 ")
	c.startTLSInsecure()
	c.cmd("EHLO sub.example", "250 ")
	c.cmd("AUTH PLAIN "+plainAuth(user, password), "235 2.7.0")
	return c
}

// TestSubmissionDialogues: the reply paths of submission over raw sockets.
func TestSubmissionDialogues(t *testing.T) {
	// Throttling is TestAuthBruteForce's subject: off here, so that these
	// failures are answered at once.
	s := newServer(t, "", "[auth]\nmax_failures = 0\n")
	s.cli("alias", "add", "sales@example.test", "alice@example.test")
	s.start()

	t.Run("before TLS, AUTH is not offered and refused, and MAIL needs STARTTLS", func(t *testing.T) {
		c := s.dialAddr(s.subAddr)
		c.t = t
		if ehlo := c.ehlo("sub.example"); strings.Contains(ehlo, "AUTH") || !strings.Contains(ehlo, "STARTTLS") {
			t.Errorf("EHLO before TLS: %s", ehlo)
		}
		c.cmd("AUTH PLAIN "+plainAuth("alice@example.test", "secret-alice"), "538 5.7.11")
		c.cmd("MAIL FROM:<alice@example.test>", "530 5.7.0 Must issue a STARTTLS")
	})
	t.Run("after TLS, MAIL needs AUTH", func(t *testing.T) {
		c := s.dialAddr(s.subAddr)
		c.t = t
		c.cmd("EHLO sub.example", "250 ")
		c.startTLSInsecure()
		if ehlo := c.ehlo("sub.example"); !strings.Contains(ehlo, "250-AUTH SCRAM-SHA-256 SCRAM-SHA-256-PLUS PLAIN LOGIN\r\n") || strings.Contains(ehlo, "STARTTLS") {
			t.Errorf("EHLO after TLS: %s", ehlo)
		}
		c.cmd("MAIL FROM:<alice@example.test>", "530 5.7.0 Authentication required")
	})
	cases := []struct {
		name  string
		steps []step
	}{
		{"a wrong password is 535 5.7.8", []step{{"AUTH PLAIN " + plainAuth("alice@example.test", "wrong") + "\r\n", "535 5.7.8"}}},
		{"an unknown user is the same 535 5.7.8", []step{{"AUTH PLAIN " + plainAuth("nobody@example.test", "x") + "\r\n", "535 5.7.8"}}},
		{"garbled base64 is 501 5.5.2", []step{{"AUTH PLAIN !!!\r\n", "501 5.5.2"}}},
		{"a PLAIN response without NULs is 501", []step{{"AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("alice")) + "\r\n", "501 5.5.2"}}},
		{"acting for another user is refused", []step{{"AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("bob@example.test\x00alice@example.test\x00secret-alice")) + "\r\n", "535 5.7.8"}}},
		{"a cancelled exchange is 501 5.0.0", []step{{"AUTH LOGIN\r\n", "334 VXNlcm5hbWU6"}, {"*\r\n", "501 5.0.0"}}},
		{"LOGIN works in two steps", []step{{"AUTH LOGIN\r\n", "334 VXNlcm5hbWU6"},
			{base64.StdEncoding.EncodeToString([]byte("alice@example.test")) + "\r\n", "334 UGFzc3dvcmQ6"},
			{base64.StdEncoding.EncodeToString([]byte("secret-alice")) + "\r\n", "235 2.7.0"}, {"AUTH PLAIN x\r\n", "503 5.5.1"}}},
		{"PLAIN with an empty initial response asks for it", []step{{"AUTH PLAIN\r\n", "334 "},
			{plainAuth("alice@example.test", "secret-alice") + "\r\n", "235 2.7.0"}}},
		{"an unknown mechanism is 504 5.5.4", []step{{"AUTH GSSAPI\r\n", "504 5.5.4"}}},
		{"three failures close the session", []step{
			{"AUTH PLAIN " + plainAuth("alice@example.test", "a") + "\r\n", "535"},
			{"AUTH PLAIN " + plainAuth("alice@example.test", "b") + "\r\n", "535"},
			{"AUTH PLAIN " + plainAuth("alice@example.test", "c") + "\r\n", "535"}, {"", "421 4.7.0"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := s.dialAddr(s.subAddr)
			c.t = t
			c.cmd("EHLO sub.example", "250 ")
			c.startTLSInsecure()
			c.cmd("EHLO sub.example", "250 ")
			for _, st := range tc.steps {
				if st.send != "" {
					c.send(st.send)
				}
				c.expect(st.expect)
			}
		})
	}
	t.Run("the sender must be one of the user's addresses", func(t *testing.T) {
		c := loggedIn(t, s)
		c.cmd("MAIL FROM:<bob@example.test>", "553 5.7.1 Sender address <bob@example.test> refused")
		c.cmd("MAIL FROM:<ceo@remote.example>", "553 5.7.1")
		c.cmd("MAIL FROM:<Alice+news@Example.Test>", "250 ")
		c.cmd("RSET", "250 ")
		c.cmd("MAIL FROM:<sales@example.test>", "250 ")
		c.cmd("RCPT TO:<someone@[192.0.2.1]>", "550 5.1.2")
		c.cmd("RCPT TO:<bob@example.test>", "250 ")
		c.cmd("DATA", "354 ")
		c.send("From: Bob <bob@example.test>\r\nSubject: spoof\r\n\r\nx\r\n.\r\n")
		c.expect("553 5.7.1 From: header address <bob@example.test> refused")
	})
	t.Run("an admin can grant an address or a whole domain", func(t *testing.T) {
		s.cli("user", "send-as", "add", "alice@example.test", "@brand.example")
		s.cli("user", "send-as", "add", "alice@example.test", "Support@Other.Example")
		c := loggedIn(t, s)
		c.cmd("MAIL FROM:<news@brand.example>", "250 ")
		c.cmd("RSET", "250 ")
		c.cmd("MAIL FROM:<support@other.example>", "250 ")
		c.cmd("RSET", "250 ")
		c.cmd("MAIL FROM:<sales@other.example>", "553 5.7.1")
		if out := s.cli("user", "send-as", "list", "alice@example.test"); out != "@brand.example\nsupport@other.example\n" {
			t.Errorf("send-as list: %q", out)
		}
		s.cli("user", "send-as", "del", "alice@example.test", "@brand.example")
		c = loggedIn(t, s)
		c.cmd("MAIL FROM:<news@brand.example>", "553 5.7.1")
	})
	t.Run("AUTH is not offered on the MX port", func(t *testing.T) {
		c := s.dial()
		c.t = t
		c.cmd("EHLO mx.example", "250 ")
		c.cmd("AUTH PLAIN "+plainAuth("alice@example.test", "secret-alice"), "502 5.5.1")
	})
	t.Run("AUTH pipelined after STARTTLS is discarded", func(t *testing.T) {
		c := s.dialAddr(s.subAddr)
		c.t = t
		c.cmd("EHLO sub.example", "250 ")
		c.send("STARTTLS\r\nAUTH PLAIN " + plainAuth("alice@example.test", "secret-alice") + "\r\n")
		c.expect("220 ")
		tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		c.conn = tc
		c.r.Reset(tc)
		c.cmd("EHLO sub.example", "250 ")
		c.cmd("MAIL FROM:<alice@example.test>", "530 5.7.0 Authentication required")
	})
	if n := len(s.mailbox("bob@example.test")); n != 0 {
		t.Errorf("bob received %d spoofed messages", n)
	}
}

const pythonSubmit = `
import smtplib, ssl, sys
from email.message import EmailMessage
host, port, mode, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
msg = EmailMessage()
msg["From"] = "Alice <alice@example.test>"
msg["To"] = "bob@example.test"
msg["Subject"] = "submitted " + mode
msg.set_content("hello bob")
try:
    if mode == "implicit":
        s = smtplib.SMTP_SSL(host, port, context=ctx, timeout=20)
    else:
        s = smtplib.SMTP(host, port, timeout=20)
        s.starttls(context=ctx)
    s.login(user, pw)
    s.send_message(msg)
    s.quit()
    print("sent")
except smtplib.SMTPAuthenticationError as e:
    print("auth", e.smtp_code, e.smtp_error.decode())
`

// TestSubmissionClients: Python smtplib (STARTTLS on submission, implicit
// TLS on submissions), swaks with PLAIN and LOGIN, curl with --ssl-reqd.
func TestSubmissionClients(t *testing.T) {
	py := requireTool(t, "python3")
	swaks := requireTool(t, "swaks")
	curl := requireTool(t, "curl")
	s := newServer(t, "", "")
	s.start()
	subHost, subPort, _ := strings.Cut(s.subAddr, ":")
	_, tlsPort, _ := strings.Cut(s.tlsAddr, ":")
	runs := []struct {
		name string
		cmd  *exec.Cmd
		want string
	}{
		{"smtplib with STARTTLS", exec.Command(py, "-c", pythonSubmit, subHost, subPort, "starttls", "alice@example.test", "secret-alice"), "sent"},
		{"smtplib over implicit TLS", exec.Command(py, "-c", pythonSubmit, subHost, tlsPort, "implicit", "alice@example.test", "secret-alice"), "sent"},
		{"smtplib with a wrong password", exec.Command(py, "-c", pythonSubmit, subHost, subPort, "starttls", "alice@example.test", "nope"), "auth 535 5.7.8"},
		{"swaks AUTH PLAIN over STARTTLS", exec.Command(swaks, "--server", s.subAddr, "--tls", "-a", "PLAIN", "-au", "alice@example.test", "-ap", "secret-alice",
			"--from", "alice@example.test", "--to", "bob@example.test", "--header", "Subject: swaks plain", "--timeout", "20"), "235 2.7.0"},
		{"swaks AUTH LOGIN over implicit TLS", exec.Command(swaks, "--server", s.tlsAddr, "--tlsc", "-a", "LOGIN", "-au", "alice@example.test", "-ap", "secret-alice",
			"--from", "alice@example.test", "--to", "bob@example.test", "--header", "Subject: swaks login", "--timeout", "20"), "235 2.7.0"},
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			out, err := r.cmd.CombinedOutput()
			if !strings.Contains(string(out), r.want) {
				t.Errorf("%v; output lacks %q:\n%s", err, r.want, out)
			}
		})
	}
	t.Run("curl --ssl-reqd", func(t *testing.T) {
		cmd := exec.Command(curl, "-sS", "-k", "--ssl-reqd", "smtp://"+s.subAddr, "--user", "alice@example.test:secret-alice",
			"--mail-from", "alice@example.test", "--mail-rcpt", "bob@example.test", "-T", "-")
		cmd.Stdin = strings.NewReader("From: alice@example.test\r\nSubject: from curl\r\n\r\nhi\r\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
	})
	msgs := s.mailbox("bob@example.test")
	if len(msgs) != 5 {
		t.Fatalf("bob has %d messages, want 5: %+v", len(msgs), msgs)
	}
	raw := s.message("bob@example.test", msgs[0].ID)
	for _, want := range []string{"with ESMTPSA", "Message-ID: <", "Date: "} {
		if !strings.Contains(raw, want) {
			t.Errorf("a submitted message lacks %q:\n%s", want, raw)
		}
	}
	if strings.Count(raw, "Message-ID:") != 1 || strings.Count(raw, "\nDate:")+strings.Count(raw, "\rDate:") > 1 {
		t.Errorf("Message-ID or Date doubled:\n%s", raw)
	}
	for _, m := range msgs {
		raw := strings.ToLower(s.message("bob@example.test", m.ID))
		if strings.Count(raw, "\nmessage-id: <") != 1 || strings.Count(raw, "\ndate: ") != 1 {
			t.Errorf("message %d does not have exactly one Message-ID and one Date:\n%s", m.ID, raw)
		}
	}
}

// submissionFrom connects to s's submission port from the loopback address
// src and starts TLS, ready for AUTH.
func submissionFrom(t *testing.T, s *server, src string) *client {
	c := s.dialFrom(t, s.subAddr, src)
	c.expect("220 ")
	c.cmd("EHLO brute.example", "250 ")
	c.startTLSInsecure()
	c.cmd("EHLO brute.example", "250 ")
	return c
}

// TestAuthBruteForce: failed logins from one address ban that address,
// for the right password too; but nobody can lock a user out: 200 failures
// from 127.0.0.5 against bob leave bob able to log in from 127.0.0.6 at
// once, and guesses sprayed from many addresses are only slowed down.
func TestAuthBruteForce(t *testing.T) {
	s := newServer(t, "", "[auth]\nmax_failures = 6\nmax_failures_per_account = 3\nban_time = \"1m\"\nfailure_delay = \"20ms\"\nmax_failure_delay = \"400ms\"\n")
	s.start()
	from := func(src string) *client { return submissionFrom(t, s, src) }
	// 200 guesses of bob's password from 127.0.0.5, a new session whenever
	// the server ends one.
	counts := map[string]int{}
	c := from("127.0.0.5")
	for i := 0; i < 200; i++ {
		c.send("AUTH PLAIN " + plainAuth("bob@example.test", fmt.Sprintf("guess%d", i)) + "\r\n")
		r := c.reply()
		counts[r[:9]]++
		if strings.HasPrefix(r, "535") && counts["535 5.7.8"]%3 != 0 {
			continue
		}
		if strings.HasPrefix(r, "535") {
			c.expect("421 4.7.0") // the third failure ends the session
		}
		if !strings.HasPrefix(r, "454") {
			c = from("127.0.0.5")
		}
	}
	// Three failures for bob from .5 lock that pair (454); more for other
	// names from .5 would ban it, but only bob was guessed here.
	if counts["535 5.7.8"] != 3 || counts["454 4.7.0"] != 197 {
		t.Errorf("replies to 200 guesses from one address: %v; want 3 failures, then 454 for the rest", counts)
	}
	// bob logs in from another address at once.
	from("127.0.0.6").cmd("AUTH PLAIN "+plainAuth("bob@example.test", "secret-bob-lantern"), "235 ")
	// Other names from .5 are guessed until the address is banned: then
	// even the right password is refused there.
	c = from("127.0.0.5")
	c.cmd("AUTH PLAIN "+plainAuth("carol@example.test", "guess"), "535 5.7.8")
	c.cmd("AUTH PLAIN "+plainAuth("dave@example.test", "guess"), "535 5.7.8")
	c.cmd("AUTH PLAIN "+plainAuth("erin@example.test", "guess"), "535 5.7.8")
	c.expect("421 4.7.0")
	from("127.0.0.5").cmd("AUTH PLAIN "+plainAuth("alice@example.test", "secret-alice"), "421 4.7.0 mx.example.test Too many failed logins from your address")

	// Spraying alice's password from 20 addresses, once each: never a
	// lockout, but each wrong guess waits longer, up to max_failure_delay.
	var last time.Duration
	for i := 10; i < 30; i++ {
		c := from(fmt.Sprintf("127.0.0.%d", i))
		start := time.Now()
		c.cmd("AUTH PLAIN "+plainAuth("alice@example.test", "guess"), "535 5.7.8")
		last = time.Since(start)
	}
	if last < 400*time.Millisecond {
		t.Errorf("the 20th sprayed guess was answered in %v, before max_failure_delay (400ms)", last)
	}
	from("127.0.0.40").cmd("AUTH PLAIN "+plainAuth("alice@example.test", "secret-alice"), "235 ")
	logs := s.logs()
	for _, want := range []string{"login refused: client banned", "login refused: too many failed logins for this account", `msg="login failed" protocol=submission client=127.0.0.5 user=bob@example.test`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log does not say %q", want)
		}
	}
}

// TestAppPasswords: an app password made with the CLI logs in (with smtplib)
// beside the main password, shows when it was used, and stops working
// when revoked, while the main password goes on working.
func TestAppPasswords(t *testing.T) {
	py := requireTool(t, "python3")
	s := newServer(t, "", "")
	s.start()
	out := s.cli("user", "app-password", "add", "alice@example.test", "phone")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	pw := lines[len(lines)-1]
	if len(pw) != 24 {
		t.Fatalf("no app password printed: %q", out)
	}
	if _, errOut, err := s.run("", "user", "app-password", "add", "alice@example.test", "phone"); err == nil || !strings.Contains(errOut, "pick another name") {
		t.Errorf("a duplicate name: %v %s", err, errOut)
	}
	host, port, _ := strings.Cut(s.subAddr, ":")
	send := func(pass string) string {
		out, _ := exec.Command(py, "-c", pythonSubmit, host, port, "starttls", "alice@example.test", pass).CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	if got := send(pw); got != "sent" {
		t.Errorf("login with the app password: %s", got)
	}
	if got := send(strings.ToUpper(pw)); got != "sent" {
		t.Errorf("login with the app password typed in capitals: %s", got)
	}
	var list []struct {
		Name     string    `json:"name"`
		LastUsed time.Time `json:"last_used"`
	}
	json.Unmarshal([]byte(s.cli("user", "app-password", "list", "alice@example.test", "--json")), &list)
	if len(list) != 1 || list[0].Name != "phone" || list[0].LastUsed.IsZero() {
		t.Errorf("app-password list: %+v", list)
	}
	s.cli("user", "app-password", "del", "alice@example.test", "phone")
	if got := send(pw); !strings.HasPrefix(got, "auth 535") {
		t.Errorf("login with a revoked app password: %s", got)
	}
	if got := send("secret-alice"); got != "sent" {
		t.Errorf("the main password after revoking: %s", got)
	}
}

// TestSendingLimits: the hourly message limit answers 450 4.7.1 at MAIL,
// the hourly recipient limit at RCPT, each with a sentence; other users
// are not affected.
func TestSendingLimits(t *testing.T) {
	s := newServer(t, "", "[submission]\nmax_messages_per_hour = 2\nmax_recipients_per_hour = 3\n")
	s.start()
	c := loggedIn(t, s)
	if r := c.sendMail("alice@example.test", []string{"bob@example.test", "bob+a@example.test"}, "Subject: 1\r\n\r\nx\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("first message: %q", r)
	}
	c.cmd("MAIL FROM:<alice@example.test>", "250 ")
	c.cmd("RCPT TO:<bob@example.test>", "250 ")
	c.cmd("RCPT TO:<bob+b@example.test>", "450 4.7.1 Sending limit reached: 3 recipients in the past hour, and the limit is 3")
	c.cmd("DATA", "354 ")
	c.send("Subject: 2\r\n\r\nx\r\n.\r\n")
	c.expect("250 ")
	c.cmd("MAIL FROM:<alice@example.test>", "450 4.7.1 Sending limit reached: 2 messages in the past hour")
	b := s.dialAddr(s.subAddr)
	b.cmd("EHLO sub.example", "250 ")
	b.startTLSInsecure()
	b.cmd("EHLO sub.example", "250 ")
	b.cmd("AUTH PLAIN "+plainAuth("bob@example.test", "secret-bob-lantern"), "235 ")
	b.cmd("MAIL FROM:<bob@example.test>", "250 ")
}

// TestCRAMMD5: off by default (not offered, 504); when turned on, Python's
// smtplib (which prefers it) and swaks log in with it; a wrong password fails.
func TestCRAMMD5(t *testing.T) {
	off := newServer(t, "", "")
	off.start()
	c := off.dialAddr(off.subAddr)
	c.cmd("EHLO cram.example", "250 ")
	c.startTLSInsecure()
	c.cmd("EHLO cram.example", "250 ")
	c.cmd("AUTH CRAM-MD5", "504 5.5.4")

	py := requireTool(t, "python3")
	swaks := requireTool(t, "swaks")
	s := newServer(t, "", "[submission]\ncram_md5 = true\n")
	s.start()
	host, port, _ := strings.Cut(s.subAddr, ":")
	script := strings.Replace(pythonSubmit, "    s.login(user, pw)", "    s.login(user, pw)\n    print('mechanism', 'CRAM-MD5' if 'CRAM-MD5' in s.esmtp_features.get('auth', '') else '?')", 1)
	out, err := exec.Command(py, "-c", script, host, port, "starttls", "alice@example.test", "secret-alice").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "sent") || !strings.Contains(string(out), "mechanism CRAM-MD5") {
		t.Errorf("smtplib with CRAM-MD5 offered: %v\n%s", err, out)
	}
	out, _ = exec.Command(py, "-c", pythonSubmit, host, port, "starttls", "alice@example.test", "wrong").CombinedOutput()
	if !strings.Contains(string(out), "auth 535 5.7.8") {
		t.Errorf("smtplib with a wrong password: %s", out)
	}
	out, err = exec.Command(swaks, "--server", s.subAddr, "--tls", "-a", "CRAM-MD5", "-au", "bob@example.test", "-ap", "secret-bob-lantern",
		"--from", "bob@example.test", "--to", "alice@example.test", "--timeout", "20").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "235 2.7.0") {
		t.Errorf("swaks CRAM-MD5: %v\n%s", err, out)
	}
	if !strings.Contains(s.logs(), "user=alice@example.test mechanism=CRAM-MD5") {
		t.Errorf("smtplib did not log in with CRAM-MD5:\n%s", s.logs())
	}
}

// TestAuthWithoutTLSFromLoopback: off by default; when on, a loopback
// client may log in without TLS (and nobody else could reach a loopback
// listener anyway).
func TestAuthWithoutTLSFromLoopback(t *testing.T) {
	s := newServer(t, "", "[submission]\nauth_without_tls_from_loopback = true\n")
	s.start()
	c := s.dialAddr(s.subAddr)
	c.cmd("EHLO local.example", "250 ")
	c.cmd("AUTH PLAIN "+plainAuth("alice@example.test", "secret-alice"), "235 2.7.0")
	if r := c.sendMail("alice@example.test", []string{"bob@example.test"}, "Subject: local\r\n\r\nx\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Errorf("send: %q", r)
	}
	raw := s.message("bob@example.test", s.mailbox("bob@example.test")[0].ID)
	if !strings.Contains(raw, "with ESMTPA ") {
		t.Errorf("the Received field does not say ESMTPA (authenticated, no TLS):\n%s", raw)
	}
}

// TestUserPolicies: "user set" makes an account SCRAM-only (534 5.7.9 for
// the right password over PLAIN, 535 for a wrong one, SCRAM still works)
// and gives it its own sending limit.
func TestUserPolicies(t *testing.T) {
	s := newServer(t, "", "[auth]\nmax_failures = 0\n")
	s.cli("user", "set", "alice@example.test", "--require-scram", "--max-messages-per-hour", "1")
	s.start()
	c, _ := tlsSubmission(t, s)
	c.cmd("AUTH PLAIN "+plainAuth("alice@example.test", "wrong"), "535 5.7.8")
	c.cmd("AUTH PLAIN "+plainAuth("alice@example.test", "secret-alice"), "534 5.7.9")
	c, _ = tlsSubmission(t, s)
	if r := scramLogin(t, c, "SCRAM-SHA-256", "alice@example.test", "secret-alice", nil); !strings.HasPrefix(r, "235 ") {
		t.Fatalf("SCRAM for a SCRAM-only user: %q", r)
	}
	if r := c.sendMail("alice@example.test", []string{"bob@example.test"}, "Subject: 1\r\n\r\nx\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("first message: %q", r)
	}
	c.cmd("MAIL FROM:<alice@example.test>", "450 4.7.1 Sending limit reached: 1 messages in the past hour, and the limit is 1")
	// bob keeps the server's limits and PLAIN.
	b, _ := tlsSubmission(t, s)
	b.cmd("AUTH PLAIN "+plainAuth("bob@example.test", "secret-bob-lantern"), "235 ")
	b.cmd("MAIL FROM:<bob@example.test>", "250 ")
	if _, errOut, err := s.run("", "user", "set", "alice@example.test"); err == nil || !strings.Contains(errOut, "nothing to change") {
		t.Errorf("user set without flags: %v %s", err, errOut)
	}
}

// TestSubmissionHardening: the sender rules fail closed on header tricks,
// a sub-address that is another user stays theirs, AUTH needs EHLO and
// does not survive STARTTLS, long SASL responses are read, and login
// limits hold for other spellings of a name.
func TestSubmissionHardening(t *testing.T) {
	s := newServer(t, "", "[submission]\nauth_without_tls_from_loopback = true\n[auth]\nmax_failures = 3\nmax_failures_per_account = 2\n")
	s.cli("user", "add", "alice+payroll@example.test", "--generate")
	s.start()
	headers := []struct{ name, header, want string }{
		{"two From fields", "From: alice@example.test\r\nFrom: ceo@example.test\r\n", "550 5.6.0"},
		{"no From field gets the user's", "Subject: anonymous\r\n", "250 "},
		{"a Sender that is someone else", "From: alice@example.test\r\nSender: ceo@example.test\r\n", "553 5.7.1 Sender: header address <ceo@example.test>"},
		{"a Resent-From that is someone else", "From: alice@example.test\r\nResent-From: ceo@example.test\r\n", "553 5.7.1 Resent-From:"},
		{"a foreign address folded far into From", "From: alice@example.test," + strings.Repeat("\r\n "+strings.Repeat("a", 70), 40) + "\r\n ceo@example.test\r\n", "5"},
		{"a From after 256 KiB of header", strings.Repeat("X-Pad: "+strings.Repeat("p", 990)+"\r\n", 270) + "From: ceo@example.test\r\n", "552 5.6.0"},
		{"a malformed From", "From: ((( \r\n", "550 5.6.0"},
		{"the user's own From", "From: Alice <alice@example.test>\r\n", "250 "},
	}
	for _, h := range headers {
		t.Run(h.name, func(t *testing.T) {
			c := loggedIn(t, s)
			if r := c.sendMail("alice@example.test", []string{"bob@example.test"}, h.header+"\r\nbody\r\n"); !strings.HasPrefix(r, h.want) {
				t.Errorf("got %q, want %q", r, h.want)
			}
		})
	}
	t.Run("a sub-address that is another user is not the user's", func(t *testing.T) {
		c := loggedIn(t, s)
		c.cmd("MAIL FROM:<alice+payroll@example.test>", "553 5.7.1")
		c.cmd("MAIL FROM:<alice+news@example.test>", "250 ")
	})
	t.Run("AUTH needs EHLO first and ends with STARTTLS", func(t *testing.T) {
		c := s.dialAddr(s.subAddr)
		c.cmd("AUTH PLAIN "+plainAuth("alice@example.test", "secret-alice"), "503 5.5.1")
		c.cmd("EHLO a.example", "250 ")
		c.cmd("AUTH PLAIN "+plainAuth("alice@example.test", "secret-alice"), "235 ")
		c.startTLSInsecure()
		c.cmd("EHLO a.example", "250 ")
		c.cmd("MAIL FROM:<alice@example.test>", "530 5.7.0 Authentication required")
	})
	t.Run("a SASL response longer than the read buffer is read", func(t *testing.T) {
		c := loggedIn(t, s)
		c.cmd("RSET", "250 ")
		d := s.dialAddr(s.subAddr)
		d.cmd("EHLO a.example", "250 ")
		long := plainAuth("alice@example.test", "secret-alice"+strings.Repeat("x", 5000))
		d.cmd("AUTH PLAIN", "334 ")
		d.cmd(long, "535 5.7.8")
	})
	t.Run("other spellings of a locked name are locked too", func(t *testing.T) {
		from := func(src string) *client {
			c := s.dialFrom(t, s.subAddr, src)
			c.expect("220 ")
			c.cmd("EHLO a.example", "250 ")
			return c
		}
		c := from("127.0.1.1")
		c.cmd("AUTH PLAIN "+plainAuth("bob@example.test", "guess"), "535")
		c.cmd("AUTH PLAIN "+plainAuth("Bob@example.test", "guess"), "535")
		c.cmd("AUTH PLAIN "+plainAuth(`"bob"@EXAMPLE.test`, "secret-bob-lantern"), "454 4.7.0")
		from("127.0.1.2").cmd("AUTH PLAIN "+plainAuth(`"bob"@EXAMPLE.test`, "secret-bob-lantern"), "235 ")
	})
	msgs := s.mailbox("bob@example.test")
	if len(msgs) != 2 {
		t.Fatalf("bob has %d messages, want the two honest ones", len(msgs))
	}
	if raw := s.message("bob@example.test", msgs[0].ID); !strings.Contains(raw, "From: <alice@example.test>\r\n") {
		t.Errorf("a message without From did not get the user's:\n%s", raw)
	}
	if msgs[0].From != "alice@example.test" {
		t.Errorf("the listing shows From %q for the From field added to a submitted message", msgs[0].From)
	}
}

// TestHideClientIP: with hide_client_ip the Received field of submitted
// mail names neither the client's address nor its EHLO name.
func TestHideClientIP(t *testing.T) {
	s := newServer(t, "", "[submission]\nhide_client_ip = true\n")
	s.start()
	c := s.dialAddr(s.subAddr)
	c.cmd("EHLO laptop-192-168-1-23.lan", "250 ")
	c.startTLSInsecure()
	c.cmd("EHLO laptop-192-168-1-23.lan", "250 ")
	c.cmd("AUTH PLAIN "+plainAuth("alice@example.test", "secret-alice"), "235 ")
	if r := c.sendMail("alice@example.test", []string{"bob@example.test"}, "From: alice@example.test\r\n\r\nx\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("send: %q", r)
	}
	raw := s.message("bob@example.test", s.mailbox("bob@example.test")[0].ID)
	if strings.Contains(raw, "127.0.0.1") || strings.Contains(raw, "laptop-192") || !strings.Contains(raw, "with ESMTPSA") {
		t.Errorf("the Received field shows the client:\n%s", raw)
	}
}

// TestLoginCacheNeverOutlivesAPassword: with the login cache on (the
// default), a password changed or an account deleted with the CLI while
// the server runs stops working at once, though the old login was cached.
func TestLoginCacheNeverOutlivesAPassword(t *testing.T) {
	s := newServer(t, "", "")
	s.start()
	login := func(user, pw, want string) {
		c := s.dialAddr(s.subAddr)
		c.cmd("EHLO cache.example", "250 ")
		c.startTLSInsecure()
		c.cmd("EHLO cache.example", "250 ")
		c.cmd("AUTH PLAIN "+plainAuth(user, pw), want)
	}
	login("alice@example.test", "secret-alice", "235 ")
	login("alice@example.test", "secret-alice", "235 ") // from the cache
	s.cliStdin("correct horse battery staple\n", "user", "passwd", "alice@example.test", "--password-stdin")
	login("alice@example.test", "secret-alice", "535 ")
	login("alice@example.test", "correct horse battery staple", "235 ")
	login("bob@example.test", "secret-bob-lantern", "235 ")
	s.cli("user", "del", "bob@example.test")
	login("bob@example.test", "secret-bob-lantern", "535 ")
}
