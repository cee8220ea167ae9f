package tests

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"

	"mailroom/internal/dns/dnstest"
)

// remoteServer prepares (but does not start) another Mailroom whose SMTP
// listener is on ip, receiving for user's domain, and returns its port.
func remoteServer(t *testing.T, ip, user string) (*server, int) {
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := newServer(t, "", "")
	s.addr = fmt.Sprintf("%s:%d", ip, port)
	s.writeConfig("", "")
	_, domain, _ := strings.Cut(user, "@")
	s.cli("domain", "add", domain)
	s.cli("user", "add", user, "--generate")
	return s, port
}

// TestRelay: a user of one Mailroom sends to a user of another found by
// MX in a test DNS server; the message arrives over STARTTLS, and a
// recipient the other side refuses comes back to the sender as a DSN.
func TestRelay(t *testing.T) {
	// B: the remote domain's server, on its own loopback address.
	b, port := remoteServer(t, "127.0.0.61", "carol@remote.test")
	b.start()

	dnsAddr := dnstest.Start(t, map[string][]string{
		"remote.test. MX":   {"10 mx.remote.test."},
		"mx.remote.test. A": {"127.0.0.61"},
		"gone.test. MX":     {"0 ."},
	}).Addr
	a := newServer(t, "", fmt.Sprintf("[dns]\nresolver = %q\n[outbound]\nport = %d\n[queue]\nretry_intervals = [\"1s\"]\n", dnsAddr, port))
	a.start()

	c := loggedIn(t, a)
	r := c.sendMail("alice@example.test", []string{"carol@remote.test", "nobody@remote.test", "someone@gone.test"},
		"From: Alice <alice@example.test>\r\nSubject: across\r\n\r\nhello carol\r\n")
	if !strings.HasPrefix(r, "250 ") {
		t.Fatalf("submission: %q", r)
	}
	waitMailbox(t, b, "carol@remote.test", 1, "delivery to carol")
	// Two bounces: one per destination domain that failed.
	waitMailbox(t, a, "alice@example.test", 2, "two bounces")
	got := b.message("carol@remote.test", b.mailbox("carol@remote.test")[0].ID)
	if !strings.Contains(got, "hello carol") || !strings.Contains(got, "with ESMTPS") || !strings.Contains(got, "Return-Path: <alice@example.test>") {
		t.Errorf("carol's copy:\n%s", got)
	}
	var bounce string
	for _, m := range a.mailbox("alice@example.test") {
		bounce += a.message("alice@example.test", m.ID)
	}
	for _, want := range []string{"Return-Path: <>", "multipart/report", "Final-Recipient: rfc822; nobody@remote.test", "Status: 5.1.1",
		"Remote-MTA: dns; mx.remote.test", "Final-Recipient: rfc822; someone@gone.test", "Status: 5.1.10", "Subject: across"} {
		if !strings.Contains(bounce, want) {
			t.Errorf("the bounce lacks %q:\n%s", want, bounce)
		}
	}
	if strings.Contains(bounce, "Final-Recipient: rfc822; carol@remote.test") {
		t.Error("the bounce names the delivered recipient")
	}

	// The refused address is suppressed now; the domain failure is not.
	c = loggedIn(t, a)
	c.cmd("MAIL FROM:<alice@example.test>", "250 ")
	c.cmd("RCPT TO:<nobody@remote.test>", "550 5.1.1 <nobody@remote.test> bounced on")
	c.cmd("RCPT TO:<someone@gone.test>", "250 ")
	c.cmd("RSET", "250 ")
	if out := a.cli("suppression", "list"); !strings.Contains(out, "nobody@remote.test") || strings.Contains(out, "gone.test") {
		t.Errorf("suppression list: %q", out)
	}
	a.cli("suppression", "del", "nobody@remote.test")
	c.cmd("MAIL FROM:<alice@example.test>", "250 ")
	c.cmd("RCPT TO:<nobody@remote.test>", "250 ")
}

// TestRelayRetry: while the remote server is down the message waits in
// the queue (deferred); once it is up, the next attempt delivers it, also
// across a restart of the sending server.
func TestRelayRetry(t *testing.T) {
	b, port := remoteServer(t, "127.0.0.62", "dave@later.test")
	dnsAddr := dnstest.Start(t, map[string][]string{"later.test. MX": {"10 mx.later.test."}, "mx.later.test. A": {"127.0.0.62"}}).Addr
	a := newServer(t, "", fmt.Sprintf("[dns]\nresolver = %q\n[outbound]\nport = %d\n[queue]\nretry_intervals = [\"1s\"]\n", dnsAddr, port))
	a.start()
	c := loggedIn(t, a)
	if r := c.sendMail("alice@example.test", []string{"dave@later.test"}, "From: alice@example.test\r\nSubject: patience\r\n\r\nx\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("submission: %q", r)
	}
	a.waitLog("state=deferred")
	var rows []struct {
		QueueID   string `json:"queue_id"`
		To        string `json:"to"`
		State     string `json:"state"`
		Attempts  int    `json:"attempts"`
		LastError string `json:"last_error"`
		Held      bool   `json:"held"`
	}
	json.Unmarshal([]byte(a.cli("queue", "list", "--json")), &rows)
	if len(rows) != 1 || rows[0].To != "dave@later.test" || rows[0].State != "deferred" || rows[0].Attempts < 1 || rows[0].LastError == "" {
		t.Fatalf("queue list: %+v", rows)
	}
	id := rows[0].QueueID
	a.cli("queue", "hold", id)
	if out := a.cli("queue", "stats"); !strings.Contains(out, "held 1") {
		t.Errorf("queue stats: %q", out)
	}
	if out := a.cli("queue", "show", id); !strings.Contains(out, `"held": true`) {
		t.Errorf("queue show: %q", out)
	}
	a.cli("queue", "release", id)
	a.cli("queue", "retry", "--all")
	if _, errOut, err := a.run("", "queue", "hold", "nonexistent"); err == nil || !strings.Contains(errOut, "mailroom queue list") {
		t.Errorf("hold of an unknown ID: %v %s", err, errOut)
	}
	a.stop() // a restart in the middle of the retry schedule
	a.start()
	b.start()
	waitMailbox(t, b, "dave@later.test", 1, "delivery after the remote came up")
	if n := len(a.mailbox("alice@example.test")); n != 0 {
		t.Errorf("alice got %d bounces for a delivered message", n)
	}
}
