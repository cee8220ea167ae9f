package tests

import (
	"bufio"
	"encoding/json"
	"net"
	"strings"
	"testing"
)

// TestProbe: 'mailroom probe' shows a server's dialogue step by step (the
// login masked), its extensions, TLS and certificate, and delivers a test
// message; what a hostile server sends reaches the terminal escaped; a
// closed port is a clear failure.
func TestProbe(t *testing.T) {
	s := newServer(t, "", "")
	s.start()

	out, errOut, err := s.run("", "probe", s.addr)
	if err != nil {
		t.Fatalf("probe of port 25: %v\n%s%s", err, out, errOut)
	}
	for _, want := range []string{"S: 220 ", "C: EHLO mx.example.test", "C: STARTTLS", "extensions: 8BITMIME", "TLS: TLS 1.3,",
		"certificate 0: ", "certificate check: not trusted for 127.0.0.1"} {
		if !strings.Contains(out, want) {
			t.Errorf("probe output lacks %q:\n%s", want, out)
		}
	}

	out, errOut, err = s.run("secret-alice\n", "probe", s.subAddr, "--user", "alice@example.test", "--password-stdin",
		"--from", "alice@example.test", "--to", "bob@example.test")
	if err != nil || !strings.Contains(out, "C: AUTH PLAIN ****") || !strings.Contains(out, "test message accepted: 250") {
		t.Fatalf("probe with a login and a message: %v\n%s%s", err, out, errOut)
	}
	if strings.Contains(out, "secret-alice") || strings.Contains(out, "AGFsaWNl") { // the password, and base64 of "\0alice"
		t.Errorf("the probe shows the credentials:\n%s", out)
	}
	waitMailbox(t, s, "bob@example.test", 1, "the probe's message")
	if m := s.mailbox("bob@example.test"); m[0].Subject != "Mailroom probe" {
		t.Errorf("bob got %q", m[0].Subject)
	}

	// A server that sends terminal escapes in its replies.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go hostileGreeting(l)
	out, _, err = s.run("", "probe", l.Addr().String(), "--tls", "none", "--json")
	if err != nil {
		t.Fatalf("probe of a server without TLS: %v\n%s", err, out)
	}
	var rep struct {
		Transcript []struct{ Dir, Text string }
		Extensions []string
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Extensions) != 1 {
		t.Errorf("probe --json: %v, %+v\n%s", err, rep, out)
	}
	go hostileGreeting(l)
	out, _, _ = s.run("", "probe", l.Addr().String(), "--tls", "none")
	if strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, "S: 220 evil\ufffd]0;owned\ufffd\ufffd[2J ready") {
		t.Errorf("escapes reached the terminal, or the greeting is not shown:\n%q", out)
	}

	// Nobody listening.
	closed := freeAddr(t)
	_, errOut, err = s.run("", "probe", closed)
	if err == nil || !strings.Contains(errOut, "probe of "+closed+" failed: smtp connect:") {
		t.Errorf("probe of a closed port: %v %q", err, errOut)
	}
}

// hostileGreeting answers one connection with terminal escapes in its
// greeting and EHLO reply.
func hostileGreeting(l net.Listener) {
	c, err := l.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	r := bufio.NewReader(c)
	c.Write([]byte("220 evil\x1b]0;owned\x07\x1b[2J ready\r\n"))
	r.ReadString('\n')
	c.Write([]byte("250-evil\x1b[31m\r\n250 PIPELINING\r\n"))
	r.ReadString('\n')
}
