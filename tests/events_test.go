package tests

import (
	"encoding/json"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"mailroom/internal/store"
)

// TestMessageLogAndEvents: a message submitted to three remote recipients
// and a local one is in the message log with its timeline: received for
// the local one, accepted for each remote one, then delivered with the
// next hop's reply, deferred, delayed (the sender warned) and delivered for
// the greylisted one, and a
// hard bounce for the unknown one, whose address is then refused as
// suppressed (and that too is on record); mail from outside is logged as
// inbound. Read with 'mailroom messages' and 'mailroom events'.
func TestMessageLogAndEvents(t *testing.T) {
	t.Parallel() // its own server, loopback address and ports: it waits on timers more than it works
	var greylisted atomic.Int32
	hop := startHop(t, "127.0.0.115", func(_ int, line string) string {
		switch l := strings.ToLower(line); {
		case strings.HasPrefix(l, "rcpt to:<later@"):
			if greylisted.Add(1) <= 3 {
				return "451 4.7.1 Greylisted, come back later\r\n"
			}
		case strings.HasPrefix(l, "rcpt to:<gone@"):
			return "550 5.1.1 No such user here\r\n"
		}
		return hopDefault(line)
	})
	s := relayVia(t, "127.0.0.115", hop, "", "delay_warning = \"1s\"\n")
	s.start()
	c := loggedIn(t, s)
	if r := c.sendMail("alice@example.test", []string{"carol@far.test", "later@far.test", "gone@far.test", "bob@example.test"},
		"From: alice@example.test\r\nSubject: Order 42\r\nMessage-ID: <order-42@example.test>\r\n\r\nx\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("submission: %q", r)
	}
	var msgs []store.LoggedMessage
	until(t, s, "the message logged", func() bool {
		msgs = nil
		json.Unmarshal([]byte(s.cli("messages", "--subject", "order 42", "--json")), &msgs)
		return len(msgs) == 1
	})
	m := msgs[0]
	if m.Direction != store.Outbound || m.User != "alice@example.test" || m.Domain != "example.test" || m.MessageID != "<order-42@example.test>" ||
		!slices.Equal(m.Recipients, []string{"carol@far.test", "later@far.test", "gone@far.test", "bob@example.test"}) {
		t.Errorf("logged message = %+v", m)
	}
	timeline := func() map[string][]string {
		var es []store.Event
		json.Unmarshal([]byte(s.cli("events", m.QueueID, "--json")), &es)
		out := map[string][]string{}
		for i := len(es) - 1; i >= 0; i-- { // oldest first
			e := es[i]
			k := e.Kind
			if e.Class != "" {
				k += "/" + e.Class
			}
			if e.Remote != "" {
				k += "@" + e.Remote + ":" + e.Detail[:3]
			}
			out[e.Recipient] = append(out[e.Recipient], k)
		}
		return out
	}
	want := map[string][]string{
		"bob@example.test": {"received"},
		"carol@far.test":   {"accepted", "delivered@mx.far.test:250"},
		"gone@far.test":    {"accepted", "bounced/hard@mx.far.test:550"},
	}
	var got map[string][]string
	until(t, s, "every recipient's timeline complete", func() bool {
		got = timeline()
		return len(got["later@far.test"]) == 5
	})
	for rcpt, w := range want {
		if !slices.Equal(got[rcpt], w) {
			t.Errorf("timeline of %s = %v, want %v", rcpt, got[rcpt], w)
		}
	}
	// Greylisted three times, retried every second, the sender warned of
	// the delay once a second has passed: one of the second and third
	// attempts is "delayed" (which one depends on the retry's jitter).
	later := got["later@far.test"]
	if len(later) != 5 || later[0] != "accepted" || later[1] != "deferred@mx.far.test:451" || later[4] != "delivered@mx.far.test:250" ||
		!slices.Contains(later[2:4], "delayed@mx.far.test:451") || !slices.Contains(later[2:4], "deferred@mx.far.test:451") {
		t.Errorf("timeline of later@far.test = %v", later)
	}
	// The bounced address is now refused at once, and that is on record.
	c = loggedIn(t, s)
	c.cmd("MAIL FROM:<alice@example.test>", "250 ")
	c.cmd("RCPT TO:<gone@far.test>", "550 5.1.1 ")
	var sup []store.Event
	json.Unmarshal([]byte(s.cli("events", "--to", "gone@far.test", "--kind", "suppressed", "--json")), &sup)
	if len(sup) != 1 || sup[0].Domain != "example.test" || !strings.Contains(sup[0].Detail, "5.1.1") {
		t.Errorf("suppressed events = %+v", sup)
	}
	// Mail from outside: inbound, in the recipient's domain.
	in := s.dial()
	in.cmd("EHLO outside.example", "250 ")
	if r := in.sendMail("x@outside.example", []string{"alice@example.test"}, "From: x@outside.example\r\nSubject: Hello from outside\r\n\r\nx\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("inbound: %q", r)
	}
	msgs = nil
	json.Unmarshal([]byte(s.cli("messages", "--direction", "inbound", "--json")), &msgs)
	if len(msgs) != 1 || msgs[0].Subject != "Hello from outside" || msgs[0].Status != store.EventReceived || msgs[0].Domain != "example.test" || msgs[0].User != "" {
		t.Errorf("inbound messages = %+v", msgs)
	}
	// Errors say what to do.
	if _, stderr, err := s.run("", "events", "--kind", "nonsense"); err == nil || !strings.Contains(stderr, "use one of accepted") {
		t.Errorf("a bad kind: %v %q", err, stderr)
	}
	if _, stderr, err := s.run("", "events", "NOSUCHID"); err == nil || !strings.Contains(stderr, "see 'mailroom messages'") {
		t.Errorf("an unknown queue ID: %v %q", err, stderr)
	}
	// The table form prints the timeline too.
	if out := s.cli("events", m.QueueID); !strings.Contains(out, "bounced (hard)") || !strings.Contains(out, "550 5.1.1 No such user here") {
		t.Errorf("events table:\n%s", out)
	}
}
