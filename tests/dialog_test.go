package tests

import (
	"strings"
	"testing"
)

// step is one line of a scripted dialogue: what the client sends and how
// the reply must start ("" to expect no reply).
type step struct {
	send   string
	expect string
}

// TestDialogues runs scripted SMTP dialogues over raw sockets against one
// server, one connection each: every reply path of the protocol engine.
func TestDialogues(t *testing.T) {
	s := newServer(t, "", "")
	s.tlsAddr = "" // no certificate, so no implicit TLS
	s.writeConfig("max_recipients = 3\nmax_errors = 5\nmax_message_size = \"64KiB\"", "[tls]\nself_signed = false\n")
	s.cli("alias", "add", "sales@example.test", "alice@example.test", "bob@example.test")
	s.cli("alias", "add", "postmaster@example.test", "alice@example.test")
	s.start()
	ehlo := step{"EHLO client.example\r\n", "250 "}
	mail := step{"MAIL FROM:<sender@remote.example>\r\n", "250 2.1.0"}
	dialogues := []struct {
		name  string
		steps []step
	}{
		{"a line over the hard limit is refused and the session stays in sync", []step{
			{"EHLO c.example\r\nMAIL FROM:<a@remote.example>\r\nNOOP " + strings.Repeat("a", 1200) + "\r\nRCPT TO:<alice@example.test>\r\n", "250 "},
			{"", "250 2.1.0"}, {"", "500 5.5.2"}, {"", "250 2.1.5"}}},
		{"BDAT over the size limit is refused at LAST and the session stays in sync", []step{ehlo, mail, {"RCPT TO:<alice@example.test>\r\n", "250"},
			{"BDAT 40000\r\n" + strings.Repeat("b", 40000), "250"}, {"BDAT 40000 LAST\r\n" + strings.Repeat("b", 40000), "552 5.3.4"}, {"NOOP\r\n", "250"}}},
		{"a bare LF inside BDAT refuses the message", []step{ehlo, mail, {"RCPT TO:<alice@example.test>\r\n", "250"},
			{"BDAT 13 LAST\r\nSubject: x\n\r\n", "550 5.6.0"}, {"NOOP\r\n", "250"}}},
		{"HELO works without extensions", []step{{"HELO client.example\r\n", "250 mx.example.test"}, mail}},
		{"EHLO without a domain is a syntax error", []step{{"EHLO\r\n", "501 5.5.4"}}},
		{"MAIL before EHLO is a bad sequence", []step{{"MAIL FROM:<a@b.example>\r\n", "503 5.5.1"}}},
		{"RCPT before MAIL is a bad sequence", []step{ehlo, {"RCPT TO:<alice@example.test>\r\n", "503 5.5.1"}}},
		{"DATA before RCPT is a bad sequence", []step{ehlo, mail, {"DATA\r\n", "554 5.5.1"}}},
		{"a second MAIL is a bad sequence", []step{ehlo, mail, {"MAIL FROM:<x@y.example>\r\n", "503 5.5.1"}}},
		{"an unknown command is refused", []step{{"FOO bar\r\n", "500 5.5.1"}}},
		{"a command ending in a bare LF is refused", []step{{"NOOP\n", "500 5.5.2"}, {"NOOP\r\n", "250 2.0.0"}}},
		{"a bare CR inside a command is refused", []step{{"NO\rOP\r\n", "500 5.5.2"}}},
		{"a line over 512 octets is refused and the session stays in sync", []step{
			{"NOOP " + strings.Repeat("x", 600) + "\r\n", "500 5.5.2"}, {"NOOP\r\n", "250 2.0.0"}}},
		{"VRFY does not enumerate users", []step{{"VRFY alice\r\n", "252 2.0.0"}, {"VRFY nobody\r\n", "252 2.0.0"}}},
		{"NOOP, RSET and HELP answer", []step{{"NOOP\r\n", "250 2.0.0"}, {"RSET\r\n", "250 2.0.0"}, {"HELP\r\n", "214 2.0.0"}}},
		{"QUIT closes with 221", []step{{"QUIT\r\n", "221 2.0.0"}}},
		{"an unknown local user is refused at RCPT", []step{ehlo, mail, {"RCPT TO:<nobody@example.test>\r\n", "550 5.1.1"}}},
		{"a remote domain is relay denied", []step{ehlo, mail, {"RCPT TO:<victim@remote.example>\r\n", "554 5.7.1"}}},
		{"the percent hack is a local name, not a route", []step{ehlo, mail, {"RCPT TO:<victim%remote.example@example.test>\r\n", "550 5.1.1"}}},
		{"a bang path is a local name, not a route", []step{ehlo, mail, {"RCPT TO:<remote.example!victim@example.test>\r\n", "550 5.1.1"}}},
		{"a quoted local part holding @ is a local name", []step{ehlo, mail, {"RCPT TO:<\"victim@remote.example\"@example.test>\r\n", "550 5.1.1"}}},
		{"an IP literal domain is relay denied", []step{ehlo, mail, {"RCPT TO:<victim@[127.0.0.1]>\r\n", "554 5.7.1"}}},
		{"a trailing dot in the domain is refused", []step{ehlo, mail, {"RCPT TO:<alice@example.test.>\r\n", "501 5.1.2"}}},
		{"a source route ending in a remote domain is relay denied", []step{ehlo, mail, {"RCPT TO:<@example.test:victim@remote.example>\r\n", "554 5.7.1"}}},
		{"a source route ending in a local user is accepted and ignored", []step{ehlo, mail, {"RCPT TO:<@remote.example:alice@example.test>\r\n", "250 2.1.5"}}},
		{"upper case addresses reach the local user", []step{ehlo, mail, {"RCPT TO:<ALICE@EXAMPLE.TEST>\r\n", "250 2.1.5"}}},
		{"sub-addresses reach the user", []step{ehlo, mail, {"RCPT TO:<alice+lists@example.test>\r\n", "250 2.1.5"}}},
		{"aliases are accepted", []step{ehlo, mail, {"RCPT TO:<sales@example.test>\r\n", "250 2.1.5"}}},
		{"a bare <postmaster> means the postmaster of the first local domain", []step{ehlo, mail, {"RCPT TO:<Postmaster>\r\n", "250 2.1.5"}}},
		{"too many recipients get 452 4.5.3", []step{ehlo, mail,
			{"RCPT TO:<alice@example.test>\r\n", "250"}, {"RCPT TO:<bob@example.test>\r\n", "250"},
			{"RCPT TO:<sales@example.test>\r\n", "250"}, {"RCPT TO:<alice+x@example.test>\r\n", "452 4.5.3"}}},
		{"a SIZE over the limit is refused at MAIL", []step{ehlo, {"MAIL FROM:<a@remote.example> SIZE=99999999\r\n", "552 5.3.4"}}},
		{"an unknown MAIL parameter is refused", []step{ehlo, {"MAIL FROM:<a@remote.example> FOO=BAR\r\n", "555 5.5.4"}}},
		{"BODY=BINARYMIME is refused", []step{ehlo, {"MAIL FROM:<a@remote.example> BODY=BINARYMIME\r\n", "555 5.5.4"}}},
		{"a UTF-8 address needs SMTPUTF8", []step{ehlo, {"MAIL FROM:<jörg@remote.example>\r\n", "553 5.6.7"}}},
		{"a UTF-8 address with SMTPUTF8 is accepted", []step{ehlo, {"MAIL FROM:<jörg@remote.example> SMTPUTF8\r\n", "250 2.1.0"}}},
		{"a U-label domain needs SMTPUTF8 too", []step{ehlo, {"MAIL FROM:<a@exämple.test>\r\n", "553 5.6.7"}}},
		{"a UTF-8 recipient needs SMTPUTF8 given in MAIL", []step{ehlo, mail, {"RCPT TO:<ålice@example.test>\r\n", "553 5.6.7"}}},
		{"DSN parameters are accepted", []step{ehlo, {"MAIL FROM:<a@remote.example> RET=HDRS ENVID=abc+2Bdef\r\n", "250"},
			{"RCPT TO:<alice@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice@example.test\r\n", "250 2.1.5"}}},
		{"bad DSN parameters are refused", []step{ehlo, mail, {"RCPT TO:<alice@example.test> NOTIFY=NEVER,DELAY\r\n", "501 5.5.4"}}},
		{"the null sender is accepted", []step{ehlo, {"MAIL FROM:<>\r\n", "250 2.1.0"}, {"RCPT TO:<alice@example.test>\r\n", "250"}}},
		{"the null path is refused as a recipient", []step{ehlo, mail, {"RCPT TO:<>\r\n", "501 5.1.3"}}},
		{"STARTTLS without a certificate is not available", []step{ehlo, {"STARTTLS\r\n", "502 5.5.1"}}},
		{"an HTTP request is answered and closed", []step{{"GET / HTTP/1.1\r\n", "421 4.7.0"}}},
		{"too many errors end the session", []step{{"X1\r\n", "500"}, {"X2\r\n", "500"}, {"X3\r\n", "500"}, {"X4\r\n", "500"},
			{"X5\r\n", "500"}, {"", "421 4.7.0"}}},
		{"BDAT delivers in chunks", []step{ehlo, mail, {"RCPT TO:<alice@example.test>\r\n", "250"},
			{"BDAT 10\r\nSubject: a", "250 2.0.0"}, {"BDAT 8 LAST\r\n\r\nbody\r\n", "250 2.0.0"}}},
		{"BDAT then DATA is a bad sequence", []step{ehlo, mail, {"RCPT TO:<alice@example.test>\r\n", "250"},
			{"BDAT 3\r\nabc", "250"}, {"DATA\r\n", "503 5.5.1"}}},
		{"BDAT without recipients is refused and the chunk skipped", []step{ehlo, mail, {"BDAT 5 LAST\r\nhello", "554 5.5.1"}, {"NOOP\r\n", "250"}}},
		{"a message over the size limit is refused after it is read", []step{ehlo, mail, {"RCPT TO:<alice@example.test>\r\n", "250"},
			{"DATA\r\n", "354"}, {strings.Repeat(strings.Repeat("y", 998)+"\r\n", 80) + ".\r\n", "552 5.3.4"}, {"NOOP\r\n", "250"}}},
		{"PIPELINING: a whole transaction in one write", []step{
			{"EHLO client.example\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\n", "250 HELP"},
			{"", "250 2.1.0"}, {"", "250 2.1.5"}, {"", "550 5.1.1"}, {"", "354"},
			{"Subject: pipelined\r\n\r\nhi\r\n.\r\nQUIT\r\n", "250 2.0.0"}, {"", "221"}}},
	}
	t.Run("EHLO lists every extension the server implements", func(t *testing.T) {
		c := s.dial()
		c.t = t
		var lines []string
		for _, line := range strings.Split(strings.TrimSuffix(c.ehlo("client.example"), "\r\n"), "\r\n") {
			lines = append(lines, strings.TrimSpace(line[4:]))
		}
		got := strings.Join(lines, "|")
		for _, ext := range []string{"PIPELINING", "SIZE 65536", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING", "DSN", "HELP"} {
			if !strings.Contains("|"+got+"|", "|"+ext+"|") {
				t.Errorf("EHLO does not list %s: %s", ext, got)
			}
		}
		if strings.Contains(got, "STARTTLS") {
			t.Error("STARTTLS offered without a certificate")
		}
	})
	for _, d := range dialogues {
		t.Run(d.name, func(t *testing.T) {
			c := s.dial()
			c.t = t
			for _, st := range d.steps {
				if st.send != "" {
					c.send(st.send)
				}
				if st.expect != "" {
					c.expect(st.expect)
				}
			}
		})
	}
	if n := len(s.mailbox("alice@example.test")); n != 2 {
		t.Errorf("alice has %d messages, want 2 (BDAT and pipelined)", n)
	}
}
