package tests

import (
	"crypto/tls"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/xdg-go/scram"
)

// scramLogin runs a SCRAM exchange with a Go client over a real socket and
// returns the final reply. cb, when set, binds to the TLS channel.
func scramLogin(t *testing.T, c *client, mech, user, pass string, cb *scram.ChannelBinding) string {
	t.Helper()
	cl, err := scram.SHA256.NewClient(user, pass, "")
	if err != nil {
		t.Fatal(err)
	}
	conv := cl.NewConversation()
	if cb != nil {
		conv = cl.NewConversationWithChannelBinding(*cb)
	}
	c1, err := conv.Step("")
	if err != nil {
		t.Fatal(err)
	}
	r := c.cmd("AUTH "+mech+" "+base64.StdEncoding.EncodeToString([]byte(c1)), "")
	if !strings.HasPrefix(r, "334 ") {
		return r
	}
	s1, _ := base64.StdEncoding.DecodeString(r[4:])
	c2, err := conv.Step(string(s1))
	if err != nil {
		t.Fatalf("client final: %v", err)
	}
	r = c.cmd(base64.StdEncoding.EncodeToString([]byte(c2)), "")
	if !strings.HasPrefix(r, "334 ") {
		return r
	}
	s2, _ := base64.StdEncoding.DecodeString(r[4:])
	if _, err := conv.Step(string(s2)); err != nil {
		t.Errorf("the server's signature does not verify: %v", err)
	}
	return c.cmd("", "")
}

func tlsSubmission(t *testing.T, s *server) (*client, *tls.ConnectionState) {
	c := s.dialAddr(s.subAddr)
	c.t = t
	c.cmd("EHLO scram.example", "250 ")
	c.cmd("STARTTLS", "220 ")
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn = tc
	c.r.Reset(tc)
	st := tc.ConnectionState()
	if ehlo := c.ehlo("scram.example"); !strings.Contains(ehlo, "AUTH SCRAM-SHA-256 SCRAM-SHA-256-PLUS PLAIN LOGIN") {
		t.Errorf("EHLO over TLS 1.3: %s", ehlo)
	}
	return c, &st
}

// TestSCRAM: SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (tls-exporter) with a
// real client over STARTTLS; wrong passwords, unknown users, a channel
// binding from another connection, and a replayed proof all fail.
func TestSCRAM(t *testing.T) {
	s := newServer(t, "", "[auth]\nmax_failures = 0\n")
	s.start()
	t.Run("SCRAM-SHA-256 logs in and the session can send", func(t *testing.T) {
		c, _ := tlsSubmission(t, s)
		if r := scramLogin(t, c, "SCRAM-SHA-256", "alice@example.test", "secret-alice", nil); !strings.HasPrefix(r, "235 2.7.0") {
			t.Fatalf("got %q", r)
		}
		c.cmd("MAIL FROM:<alice@example.test>", "250 ")
	})
	t.Run("SCRAM-SHA-256-PLUS binds to the TLS channel", func(t *testing.T) {
		c, st := tlsSubmission(t, s)
		cb, err := scram.NewTLSExporterBinding(st)
		if err != nil {
			t.Fatal(err)
		}
		if r := scramLogin(t, c, "SCRAM-SHA-256-PLUS", "alice@example.test", "secret-alice", &cb); !strings.HasPrefix(r, "235 2.7.0") {
			t.Fatalf("got %q", r)
		}
	})
	failures := []struct {
		name, mech, user, pass string
		otherChannel           bool
	}{
		{"a wrong password fails", "SCRAM-SHA-256", "alice@example.test", "wrong", false},
		{"an unknown user fails the same way", "SCRAM-SHA-256", "nobody@example.test", "x", false},
		{"a binding to another TLS connection fails", "SCRAM-SHA-256-PLUS", "alice@example.test", "secret-alice", true},
	}
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			c, st := tlsSubmission(t, s)
			var cb *scram.ChannelBinding
			if f.mech == "SCRAM-SHA-256-PLUS" {
				if f.otherChannel {
					_, st = tlsSubmission(t, s)
				}
				b, _ := scram.NewTLSExporterBinding(st)
				cb = &b
			}
			if r := scramLogin(t, c, f.mech, f.user, f.pass, cb); !strings.HasPrefix(r, "535 5.7.8") {
				t.Errorf("got %q, want 535 5.7.8", r)
			}
			c.cmd("MAIL FROM:<alice@example.test>", "530 5.7.0")
		})
	}
	t.Run("a proof replayed in another session fails", func(t *testing.T) {
		c, _ := tlsSubmission(t, s)
		cl, _ := scram.SHA256.NewClient("alice@example.test", "secret-alice", "")
		conv := cl.NewConversation()
		c1, _ := conv.Step("")
		r := c.cmd("AUTH SCRAM-SHA-256 "+base64.StdEncoding.EncodeToString([]byte(c1)), "334 ")
		s1, _ := base64.StdEncoding.DecodeString(r[4:])
		c2, _ := conv.Step(string(s1))
		c.cmd(base64.StdEncoding.EncodeToString([]byte(c2)), "334 ")
		c.cmd("", "235 ")
		// The same first and final messages against a new session: the
		// server's nonce differs, so the old proof is worthless.
		d, _ := tlsSubmission(t, s)
		d.cmd("AUTH SCRAM-SHA-256 "+base64.StdEncoding.EncodeToString([]byte(c1)), "334 ")
		d.cmd(base64.StdEncoding.EncodeToString([]byte(c2)), "535 5.7.8")
	})
}
