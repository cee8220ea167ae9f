package tests

import (
	"fmt"
	"strings"
	"testing"

	"mailroom/internal/dns/dnstest"
)

// TestForwarding: an alias forwards to another domain with an SRS
// envelope sender, the author's DKIM signature intact (DMARC passes at the
// final receiver) and our ARC seal, which the receiver verifies; a bounce to the SRS address goes back to the original
// sender; a forged SRS address is refused; mail failing a p=reject policy
// reaches the local target but is not forwarded.
func TestForwarding(t *testing.T) {
	// B hosts remote.test (carol, the sender) and other.test (dave, the
	// forward's target).
	b, bPort := remoteServer(t, "127.0.0.75", "carol@remote.test")
	b.cli("domain", "add", "other.test")
	b.cli("user", "add", "dave@other.test", "--generate")
	b.cliStdin("Carol-lantern-quartz-88\n", "user", "passwd", "carol@remote.test", "--password-stdin")
	zone := dnstest.Start(t, map[string][]string{
		"fwd.test. MX":            {"10 mx.fwd.test."},
		"mx.fwd.test. A":          {"127.0.0.1"},
		"remote.test. MX":         {"10 mx.remote.test."},
		"other.test. MX":          {"10 mx.remote.test."},
		"mx.remote.test. A":       {"127.0.0.75"},
		"remote.test. TXT":        {`"v=spf1 ip4:127.0.0.0/8 -all"`},
		"_dmarc.remote.test. TXT": {`"v=DMARC1; p=reject"`},
		"bad.test. TXT":           {`"v=spf1 ip4:192.0.2.1 -all"`},
		"_dmarc.bad.test. TXT":    {`"v=DMARC1; p=reject"`},
		"quar.test. TXT":          {`"v=spf1 ip4:192.0.2.1 -all"`},
		"_dmarc.quar.test. TXT":   {`"v=DMARC1; p=quarantine"`},
	})
	// A forwards: info@fwd.test -> dave@other.test; team@fwd.test -> alice
	// and dave. fwd.test only monitors DMARC, so forged mail is delivered
	// locally, and must not be forwarded.
	a := newServer(t, "", fmt.Sprintf("[dns]\nresolver = %q\n[outbound]\nport = %d\n[smtp.dmarc_domains]\n\"fwd.test\" = \"monitor\"\n", zone.Addr, bPort))
	a.cli("domain", "add", "fwd.test")
	if out := a.cli("alias", "add", "info@fwd.test", "dave@other.test"); !strings.Contains(out, "SRS") {
		t.Errorf("alias add to another domain says: %s", out)
	}
	a.cli("alias", "add", "team@fwd.test", "alice@example.test", "dave@other.test")
	a.cli("alias", "add", "gone@fwd.test", "nobody@other.test")
	_, aPort, _ := strings.Cut(a.addr, ":")
	b.writeConfig("", fmt.Sprintf("[dns]\nresolver = %q\n[outbound]\nport = %s\n", zone.Addr, aPort))
	a.start()
	b.start()
	var recs []string
	for _, zoneText := range []string{b.cli("domain", "records", "remote.test"), a.cli("domain", "records", "fwd.test")} {
		for _, r := range strings.Split(zoneText, "\n") {
			if strings.Contains(r, "._domainkey.") && !strings.HasPrefix(r, ";") {
				recs = append(recs, r)
			}
		}
	}
	for _, r := range recs {
		if err := zone.Zone.Add(r); err != nil {
			t.Fatal(err)
		}
	}

	// Carol (on B, signing as remote.test) writes to info@fwd.test.
	c := loggedInAs(t, b, "carol@remote.test", "Carol-lantern-quartz-88")
	if r := c.sendMail("carol@remote.test", []string{"info@fwd.test"}, "From: Carol <carol@remote.test>\r\nTo: info@fwd.test\r\nSubject: forward me\r\n\r\nhello\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("carol's submission: %q", r)
	}
	waitMailbox(t, b, "dave@other.test", 1, "the forwarded message")
	got := b.message("dave@other.test", b.mailbox("dave@other.test")[0].ID)
	returnPath := got[:strings.Index(got, "\r\n")]
	if !strings.HasPrefix(returnPath, "Return-Path: <SRS0=") || !strings.HasSuffix(returnPath, "=remote.test=carol@fwd.test>") {
		t.Fatalf("the forwarded copy's envelope sender: %s", returnPath)
	}
	if ar := authResults(got); !strings.Contains(ar, "dkim=pass header.d=remote.test") || !strings.Contains(ar, "dmarc=pass") || !strings.Contains(ar, "arc=pass") {
		t.Errorf("at the final receiver, the author's signature or our ARC seal does not pass: %s", ar)
	}
	if !strings.Contains(got, "ARC-Seal: i=1; a=rsa-sha256;") || !strings.Contains(got, "cv=none; d=fwd.test;") ||
		!strings.Contains(got, "ARC-Authentication-Results: i=1; mx.example.test; spf=pass smtp.mailfrom=remote.test") {
		t.Errorf("the forwarded copy's ARC set:\n%s", got)
	}

	// A bounce to the SRS address goes back to carol.
	srsAddr := strings.TrimSuffix(strings.TrimPrefix(returnPath, "Return-Path: <"), ">")
	bc := a.dial()
	bc.cmd("EHLO mx.other.test", "250")
	if r := bc.sendMail("", []string{srsAddr}, "From: MAILER-DAEMON@other.test\r\nSubject: Undelivered: forward me\r\n\r\nbounced\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("the bounce to %s: %q", srsAddr, r)
	}
	waitMailbox(t, b, "carol@remote.test", 1, "the bounce back at carol")
	// An SRS address takes only bounces: from a real sender it would relay.
	rc := a.dial()
	rc.cmd("EHLO mx.other.test", "250")
	rc.cmd("MAIL FROM:<spammer@evil.test>", "250")
	rc.cmd("RCPT TO:<"+srsAddr+">", "550 5.7.1")
	// Our own bounce for a forwarded copy (the final server refused it at
	// RCPT) goes back to carol through the SRS sender.
	c = loggedInAs(t, b, "carol@remote.test", "Carol-lantern-quartz-88")
	if r := c.sendMail("carol@remote.test", []string{"gone@fwd.test"}, "From: Carol <carol@remote.test>\r\nTo: gone@fwd.test\r\nSubject: to nobody\r\n\r\nhello\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("carol's submission: %q", r)
	}
	waitMailbox(t, b, "carol@remote.test", 2, "our bounce for the forward to nobody, back at carol")
	// Our report to another domain is signed like our users' mail.
	for _, m := range b.mailbox("carol@remote.test") {
		if raw := b.message("carol@remote.test", m.ID); strings.Contains(raw, "to nobody") {
			if v := dkimpyCheck(t, a, "example.test", raw); v != "a=ed25519-sha256 d=example.test ok\na=rsa-sha256 d=example.test ok" {
				t.Errorf("dkimpy on our bounce: %s", v)
			}
		}
	}
	forged := "SRS0=AAAAAAAA" + srsAddr[13:]
	bc = a.dial()
	bc.cmd("EHLO mx.other.test", "250")
	bc.cmd("MAIL FROM:<>", "250")
	if r := bc.cmd("RCPT TO:<"+forged+">", "550 5.1.1"); !strings.Contains(r, "not a forwarding address this server made") {
		t.Errorf("a forged SRS address: %q", r)
	}

	// Forged mail of a p=reject domain to team@fwd.test: alice gets it
	// (fwd.test monitors), dave does not.
	fc := a.dial()
	fc.cmd("EHLO evil.test", "250")
	if r := fc.sendMail("x@bad.test", []string{"team@fwd.test"}, "From: ceo@bad.test\r\nSubject: forged\r\n\r\npay\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("forged mail to the team: %q", r)
	}
	waitMailbox(t, a, "alice@example.test", 1, "the forged message, kept locally")
	if !strings.Contains(a.logs(), "not forwarded: the message fails its author's DMARC policy of reject") {
		t.Errorf("no sign the forged message was held back from forwarding:\n%s", a.logs())
	}
	if n := len(b.mailbox("dave@other.test")); n != 1 {
		t.Errorf("dave has %d messages; the forged one was forwarded", n)
	}

	// Mail failing a p=quarantine policy is not forwarded either: to an
	// address that only forwards it is refused; alice keeps her copy.
	if r := fc.sendMail("x@quar.test", []string{"team@fwd.test"}, "From: ceo@quar.test\r\nSubject: junk\r\n\r\nbuy\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("quarantined mail to the team: %q", r)
	}
	waitMailbox(t, a, "alice@example.test", 2, "the quarantined message, kept locally")
	fc.cmd("MAIL FROM:<x@quar.test>", "250 ")
	fc.cmd("RCPT TO:<info@fwd.test>", "250 ")
	fc.cmd("DATA", "354 ")
	fc.send("From: ceo@quar.test\r\nSubject: junk only forwarded\r\n\r\nbuy\r\n.\r\n")
	if r := fc.reply(); !strings.HasPrefix(r, "550 5.7.1 ") || !strings.Contains(r, "quarantines") {
		t.Errorf("quarantined mail that would only be forwarded: %q", r)
	}
	if !strings.Contains(a.logs(), "not forwarded: the message fails its author's DMARC policy of quarantine") {
		t.Errorf("no sign the quarantined message was held back from forwarding:\n%s", a.logs())
	}
	if n := len(b.mailbox("dave@other.test")); n != 1 {
		t.Errorf("dave has %d messages; the quarantined one was forwarded", n)
	}
}
