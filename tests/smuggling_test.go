package tests

import (
	"strings"
	"testing"
)

// smugglingEndings are the fake end-of-data sequences of SMTP smuggling
// attacks: each ends DATA on some lenient server, none may end it here.
var smugglingEndings = map[string]string{
	"bare LF dot bare LF":   "\n.\n",
	"bare LF dot CRLF":      "\n.\r\n",
	"CRLF dot bare LF":      "\r\n.\n",
	"bare CR dot bare CR":   "\r.\r",
	"CRLF dot bare CR":      "\r\n.\r",
	"bare CR dot CRLF":      "\r.\r\n",
	"NUL before the dot":    "\r\n\x00.\r\n",
	"space before the dot":  "\r\n .\r\n",
	"dot space CRLF":        "\r\n. \r\n",
	"CR CR LF dot CR CR LF": "\r\r\n.\r\r\n",
}

// smuggle sends one DATA holding a fake ending followed by a whole second
// transaction, then the real ending, and returns the reply to the DATA.
func smuggle(t *testing.T, s *server, ending string) string {
	c := s.dial()
	c.t = t
	c.cmd("EHLO attacker.example", "250 ")
	c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
	c.cmd("RCPT TO:<alice@example.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: first\r\n\r\nfirst body" + ending +
		"MAIL FROM:<admin@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n.\r\n")
	r := c.reply()
	// Had the fake ending worked, more replies would follow; the session
	// must be back at the command stage with nothing pending.
	c.cmd("NOOP", "250 2.0.0")
	return r
}

// TestSmugglingIsRefused: with the default policy, every fake ending is
// content, and the message holding a bare CR or LF is refused whole.
func TestSmugglingIsRefused(t *testing.T) {
	s := newServer(t, "", "")
	s.start()
	for name, ending := range smugglingEndings {
		t.Run(name, func(t *testing.T) {
			r := smuggle(t, s, ending)
			hasBare := strings.Contains(strings.ReplaceAll(ending, "\r\n", ""), "\r") ||
				strings.Contains(strings.ReplaceAll(ending, "\r\n", ""), "\n")
			switch {
			case strings.Contains(ending, "\x00"):
				if !strings.HasPrefix(r, "554 5.6.0") {
					t.Errorf("got %q, want 554 5.6.0 for a NUL in the data", r)
				}
			case hasBare && !strings.HasPrefix(r, "550 5.6.0"):
				t.Errorf("got %q, want 550 5.6.0 for a bare line ending", r)
			case !hasBare && !strings.HasPrefix(r, "250 "):
				t.Errorf("got %q, want one message accepted", r)
			}
		})
	}
	if n := len(s.mailbox("bob@example.test")); n != 0 {
		t.Errorf("bob got %d smuggled messages", n)
	}
	for _, m := range s.mailbox("alice@example.test") {
		if m.Subject != "first" {
			t.Errorf("alice got a message with subject %q", m.Subject)
		}
		if body := s.message("alice@example.test", m.ID); !strings.Contains(body, "smuggled body") {
			t.Errorf("the smuggled part is not content of the one message:\n%s", body)
		}
	}
}

// TestSmugglingIsNormalized: with bare_line_endings = "normalize" the
// message is kept as one message with CRLF line endings only (but for the
// one holding a NUL, which is refused whatever the policy).
func TestSmugglingIsNormalized(t *testing.T) {
	s := newServer(t, `bare_line_endings = "normalize"`, "")
	s.start()
	for name, ending := range smugglingEndings {
		t.Run(name, func(t *testing.T) {
			want := "250 "
			if strings.Contains(ending, "\x00") {
				want = "554 5.6.0"
			}
			if r := smuggle(t, s, ending); !strings.HasPrefix(r, want) {
				t.Errorf("got %q, want %s", r, want)
			}
		})
	}
	if n := len(s.mailbox("bob@example.test")); n != 0 {
		t.Errorf("bob got %d smuggled messages", n)
	}
	msgs := s.mailbox("alice@example.test")
	if len(msgs) != len(smugglingEndings)-1 {
		t.Errorf("alice has %d messages, want %d", len(msgs), len(smugglingEndings)-1)
	}
	for _, m := range msgs {
		body := s.message("alice@example.test", m.ID)
		if strings.Contains(strings.ReplaceAll(body, "\r\n", ""), "\n") || strings.Contains(strings.ReplaceAll(body, "\r\n", ""), "\r") {
			t.Errorf("message %d keeps a bare CR or LF: %q", m.ID, body)
		}
		if !strings.Contains(body, "smuggled body") {
			t.Errorf("message %d lost the smuggled part", m.ID)
		}
	}
}
