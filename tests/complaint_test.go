package tests

import (
	"encoding/json"
	"strings"
	"testing"

	"mailroom/internal/store"
)

// arfReport is a feedback report (RFC 5965) from a mailbox provider about
// a message: its Received field from us names queueID, and the recipient
// who complained is rcpt.
func arfReport(queueID, rcpt string) string {
	return "From: <fbl@far.test>\r\nTo: <fbl@example.test>\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=feedback-report; boundary=\"b\"\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nA user marked this message as spam.\r\n" +
		"--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: FarFBL/1.0\r\nVersion: 1\r\n" +
		"Original-Rcpt-To: <" + rcpt + ">\r\nReporting-MTA: dns; mx.far.test\r\n\r\n" +
		"--b\r\nContent-Type: text/rfc822-headers\r\n\r\n" +
		"Received: from sub.example ([127.0.0.1])\r\n\tby mx.example.test (Mailroom) with ESMTPSA id " + queueID + "\r\n\tfor <" + rcpt + ">; Mon, 07 Dec 2026 01:00:00 +0000\r\n" +
		"From: alice@example.test\r\nSubject: deals\r\n\r\n--b--\r\n"
}

// TestComplaints: an abuse report (ARF) sent to the complaints address
// about a message we sent becomes a complained event, and the recipient is
// suppressed (a new message to it refused); reports that name no message
// of ours, or a recipient the message did not have, change nothing; the
// report itself is delivered to the mailbox.
func TestComplaints(t *testing.T) {
	t.Parallel() // its own server, loopback address and ports: it waits on timers more than it works
	hop := startHop(t, "127.0.0.124", func(_ int, line string) string { return hopDefault(line) })
	s := relayVia(t, "127.0.0.124", hop, "", "[events]\ncomplaints_to = [\"fbl@example.test\"]\n")
	s.start()
	s.cli("user", "add", "fbl@example.test", "--generate")
	submit(t, s, []string{"carol@far.test"}, "From: alice@example.test\r\nSubject: deals\r\n\r\nx\r\n")
	var msgs []store.LoggedMessage
	json.Unmarshal([]byte(s.cli("messages", "--subject", "deals", "--json")), &msgs)
	if len(msgs) != 1 {
		t.Fatalf("messages: %+v", msgs)
	}
	id := msgs[0].QueueID
	send := func(report string) {
		c := s.dial()
		c.cmd("EHLO mx.far.test", "250 ")
		if r := c.sendMail("fbl@far.test", []string{"fbl@example.test"}, report); !strings.HasPrefix(r, "250 ") {
			t.Fatalf("report: %q", r)
		}
		c.cmd("QUIT", "221 ")
	}
	send(arfReport("NOSUCHQUEUEID", "carol@far.test")) // a message not ours
	send(arfReport(id, "mallory@far.test"))            // a recipient it did not have
	send(arfReport(id, "carol@far.test"))              // the real one
	var evs []store.Event
	until(t, s, "the complaint on record", func() bool {
		evs = nil
		json.Unmarshal([]byte(s.cli("events", "--kind", "complained", "--json")), &evs)
		return len(evs) > 0
	})
	if len(evs) != 1 || evs[0].QueueID != id || evs[0].Recipient != "carol@far.test" || !strings.Contains(evs[0].Detail, "abuse") {
		t.Errorf("complaints: %+v", evs)
	}
	if out := s.cli("suppression", "list"); !strings.Contains(out, "carol@far.test") || strings.Contains(out, "mallory") {
		t.Errorf("suppression list:\n%s", out)
	}
	c := loggedIn(t, s)
	c.cmd("MAIL FROM:<alice@example.test>", "250 ")
	c.cmd("RCPT TO:<carol@far.test>", "550 5.1.1 ")
	if got := len(s.mailbox("fbl@example.test")); got != 3 {
		t.Errorf("the complaints mailbox holds %d reports, want 3", got)
	}
}
