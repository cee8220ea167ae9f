package tests

import (
	"os/exec"
	"strings"
	"testing"
)

func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: run ./scripts/test-deps.sh (make test does)", name)
	}
	return p
}

// pythonSMTP is a client script using Python's smtplib the way
// applications do; it prints one line per outcome.
const pythonSMTP = `
import smtplib, ssl, sys
from email.message import EmailMessage
host, port, mode, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
msg = EmailMessage()
msg["From"] = "Sender Person <sender@remote.example>"
msg["To"] = "alice@example.test, bob@example.test"
msg["Subject"] = "Grüße from smtplib " + mode
msg.set_content("Hello from Python.\nA line starting with a dot:\n.hidden\n")
with smtplib.SMTP(host, port, local_hostname="py.client.example", timeout=20) as s:
    if mode == "starttls":
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.check_hostname = False
        s.starttls(context=ctx)
    refused = s.send_message(msg, to_addrs=["alice@example.test", "bob@example.test", "nobody@example.test"])
    print("refused", sorted(refused))
    try:
        s.sendmail("sender@remote.example", ["victim@remote.example"], "Subject: relay\r\n\r\nx\r\n")
        print("relayed")
    except smtplib.SMTPRecipientsRefused as e:
        code, text = e.recipients["victim@remote.example"]
        print("relay", code, text.decode())
    code, _ = s.noop()
    print("noop", code)
`

// TestPythonSmtplib sends with Python's smtplib, in plaintext and with
// STARTTLS: partial recipient refusal, relay refusal, dot-stuffing, UTF-8
// subject.
func TestPythonSmtplib(t *testing.T) {
	py := requireTool(t, "python3")
	dir := t.TempDir()
	certFile, keyFile, _ := writeCert(t, dir, "py")
	s := newServer(t, "", "[tls]\ncert_file = \""+certFile+"\"\nkey_file = \""+keyFile+"\"\n")
	s.start()
	host, port, _ := strings.Cut(s.addr, ":")
	for _, mode := range []string{"plain", "starttls"} {
		t.Run(mode, func(t *testing.T) {
			out, err := exec.Command(py, "-c", pythonSMTP, host, port, mode, certFile).CombinedOutput()
			if err != nil {
				t.Fatalf("python: %v\n%s", err, out)
			}
			got := string(out)
			for _, want := range []string{"refused ['nobody@example.test']", "relay 554 5.7.1 Relay access denied", "noop 250"} {
				if !strings.Contains(got, want) {
					t.Errorf("python output lacks %q:\n%s", want, got)
				}
			}
		})
	}
	for _, user := range []string{"alice@example.test", "bob@example.test"} {
		msgs := s.mailbox(user)
		if len(msgs) != 2 {
			t.Fatalf("%s has %d messages, want 2", user, len(msgs))
		}
		if msgs[0].Subject != "Grüße from smtplib plain" || msgs[0].From != "Sender Person <sender@remote.example>" {
			t.Errorf("listing: %+v", msgs[0])
		}
		raw := s.message(user, msgs[1].ID)
		for _, want := range []string{"Return-Path: <sender@remote.example>\r\n", "Delivered-To: " + user + "\r\n",
			"Received: from py.client.example ([127.0.0.1])", "with ESMTPS", "\r\n.hidden\r\n"} {
			if !strings.Contains(raw, want) {
				t.Errorf("stored message lacks %q:\n%s", want, raw)
			}
		}
	}
}

// TestSwaks sends with swaks: plain, pipelined, and over STARTTLS.
func TestSwaks(t *testing.T) {
	swaks := requireTool(t, "swaks")
	dir := t.TempDir()
	certFile, keyFile, _ := writeCert(t, dir, "swaks")
	s := newServer(t, "", "[tls]\ncert_file = \""+certFile+"\"\nkey_file = \""+keyFile+"\"\n")
	s.start()
	cases := []struct {
		name string
		args []string
	}{
		{"plain", nil},
		{"pipelining", []string{"--pipeline"}},
		{"STARTTLS", []string{"--tls"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--server", s.addr, "--from", "swaks@remote.example", "--to", "alice@example.test",
				"--header", "Subject: swaks " + c.name, "--body", "hello from swaks", "--helo", "swaks.example", "--timeout", "20"}, c.args...)
			out, err := exec.Command(swaks, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("swaks: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "  250 2.0.0 OK: queued as") {
				t.Errorf("swaks did not see the final 250:\n%s", out)
			}
		})
	}
	t.Run("an unknown user fails the swaks run", func(t *testing.T) {
		out, err := exec.Command(swaks, "--server", s.addr, "--from", "a@remote.example", "--to", "nobody@example.test", "--timeout", "20").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "550 5.1.1") {
			t.Errorf("want failure with 550 5.1.1, got %v:\n%s", err, out)
		}
	})
	if n := len(s.mailbox("alice@example.test")); n != len(cases) {
		t.Errorf("alice has %d messages, want %d", n, len(cases))
	}
}

// TestCurl sends with curl, the one-liner the server prints at start.
func TestCurl(t *testing.T) {
	curl := requireTool(t, "curl")
	s := newServer(t, "", "")
	s.start()
	cmd := exec.Command(curl, "-sS", "smtp://"+s.addr, "--mail-from", "curl@remote.example", "--mail-rcpt", "bob@example.test", "-T", "-")
	cmd.Stdin = strings.NewReader("Subject: from curl\r\n\r\nhi\r\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	msgs := s.mailbox("bob@example.test")
	if len(msgs) != 1 || msgs[0].Subject != "from curl" {
		t.Errorf("bob's mailbox: %+v", msgs)
	}
}
