package smtpserver

import (
	"crypto/tls"
	"fmt"
	"strings"

	"mailroom/internal/smtp"
)

// handle runs one command line.
func (s *session) handle(line []byte) {
	cmd, err := smtp.ParseCommand(line)
	if err != nil {
		s.fail(err)
		return
	}
	if len(line) > s.cfg.MaxLineLength && cmd.Verb != "MAIL" && cmd.Verb != "RCPT" {
		s.sendReply(smtp.ErrLineTooLong)
		return
	}
	switch cmd.Verb {
	case "EHLO", "HELO":
		s.cmdHello(cmd)
	case "MAIL":
		s.cmdMail(cmd.Arg)
	case "RCPT":
		s.cmdRcpt(cmd.Arg)
	case "DATA":
		s.cmdData(cmd.Arg)
	case "BDAT":
		s.cmdBdat(cmd.Arg)
	case "RSET":
		if cmd.Arg != "" {
			s.reply(501, "5.5.4", "RSET takes no arguments")
			return
		}
		s.resetTransaction()
		s.reply(250, "2.0.0", "Reset OK")
	case "NOOP":
		s.reply(250, "2.0.0", "OK")
	case "VRFY":
		// RFC 5321 3.5.3: no user enumeration.
		s.reply(252, "2.0.0", "Cannot verify the user, but will accept the message and attempt delivery")
	case "EXPN":
		s.reply(502, "5.5.1", "EXPN is not available")
	case "HELP":
		s.reply(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT STARTTLS; see RFC 5321")
	case "QUIT":
		s.reply(221, "2.0.0", s.cfg.Hostname+" closing connection")
		s.quit = true
	case "STARTTLS":
		s.cmdStartTLS(cmd.Arg)
	case "AUTH":
		s.cmdAuth(cmd.Arg)
	case "GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS":
		// Another protocol spoken at us (cross-protocol attacks): stop.
		s.reply(421, "4.7.0", "This is an SMTP server, closing connection")
		s.quit = true
		s.result = "not smtp"
	default:
		s.reply(500, "5.5.1", fmt.Sprintf("Command not recognized: %s", truncate(cmd.Verb, 10)))
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// cmdHello handles EHLO and HELO (RFC 5321 4.1.1.1).
func (s *session) cmdHello(cmd smtp.Command) {
	arg := strings.TrimSpace(cmd.Arg)
	if arg == "" || strings.ContainsAny(arg, " \t") {
		s.reply(501, "5.5.4", cmd.Verb+" needs your domain name or address literal, e.g. "+cmd.Verb+" mail.example.com")
		return
	}
	s.resetTransaction()
	s.info.Helo = truncate(arg, 255)
	s.info.ESMTP = cmd.Verb == "EHLO"
	if !s.info.ESMTP {
		s.reply(250, "", s.cfg.Hostname+" greets "+s.info.Helo)
		return
	}
	ext := []string{
		s.cfg.Hostname + " greets " + s.info.Helo,
		"PIPELINING",
		fmt.Sprintf("SIZE %d", s.cfg.MaxMessageSize),
		"8BITMIME",
		"SMTPUTF8",
		"ENHANCEDSTATUSCODES",
		"CHUNKING",
		"DSN",
	}
	if s.cfg.TLS != nil && s.info.TLS == nil {
		ext = append(ext, "STARTTLS")
	}
	if s.info.TLS != nil {
		ext = append(ext, "REQUIRETLS") // RFC 8689 4.1: only over TLS
	}
	if s.authAllowed() && s.info.Auth == nil {
		ext = append(ext, "AUTH "+strings.Join(s.mechanisms(), " "))
	}
	ext = append(ext, "HELP")
	s.reply(250, "", strings.Join(ext, "\n"))
}

// cmdMail handles MAIL FROM (RFC 5321 4.1.1.2).
func (s *session) cmdMail(arg string) {
	switch {
	case s.info.Helo == "":
		s.reply(503, "5.5.1", "Send EHLO or HELO first")
		return
	case s.env != nil:
		s.reply(503, "5.5.1", "Sender already given: send RSET to start over")
		return
	case !s.requireAuth():
		return
	}
	rest, ok := smtp.CutPrefixFold(arg, "FROM:")
	if !ok {
		s.reply(501, "5.5.4", "Syntax: MAIL FROM:<address>")
		return
	}
	from, params, err := smtp.ParsePath(strings.TrimLeft(rest, " "), true)
	if err != nil {
		s.fail(err)
		return
	}
	if params != "" && !s.info.ESMTP {
		s.reply(555, "5.5.4", "Parameters need EHLO, not HELO")
		return
	}
	p, err := smtp.ParseMailParams(params)
	if err != nil {
		s.fail(err)
		return
	}
	if p.Size > s.cfg.MaxMessageSize {
		s.reply(552, "5.3.4", fmt.Sprintf("Message size %d exceeds the limit of %d octets", p.Size, s.cfg.MaxMessageSize))
		return
	}
	if !smtp.IsASCII(arg) && !p.SMTPUTF8 {
		s.sendReply(smtp.ErrNeedsSMTPUTF8)
		return
	}
	if p.RequireTLS && s.info.TLS == nil {
		s.reply(530, "5.7.10", "REQUIRETLS needs this session to use TLS: send STARTTLS first (RFC 8689)")
		return
	}
	if err := s.srv.backend.Mail(s.ctx(), &s.info, from, p); err != nil {
		s.logRefusal("sender refused", from, err)
		s.fail(err)
		return
	}
	s.env = &Transaction{From: from, Params: p}
	s.reply(250, "2.1.0", fmt.Sprintf("Sender <%s> OK", from))
}

// cmdRcpt handles RCPT TO (RFC 5321 4.1.1.3).
func (s *session) cmdRcpt(arg string) {
	if s.env == nil {
		s.reply(503, "5.5.1", "Send MAIL FROM first")
		return
	}
	if s.bdat != nil {
		s.reply(503, "5.5.1", "RCPT is not allowed during a BDAT transfer")
		return
	}
	rest, ok := smtp.CutPrefixFold(arg, "TO:")
	if !ok {
		s.reply(501, "5.5.4", "Syntax: RCPT TO:<address>")
		return
	}
	rest = strings.TrimLeft(rest, " ")
	var to smtp.Address
	var params string
	var err error
	if p, ok := smtp.CutPrefixFold(rest, "<postmaster>"); ok && (p == "" || p[0] == ' ') {
		// RFC 5321 4.5.1: <Postmaster> without a domain must be accepted.
		to, params = smtp.Address{Local: "postmaster"}, strings.TrimLeft(p, " ")
	} else if to, params, err = smtp.ParsePath(rest, false); err != nil {
		s.fail(err)
		return
	}
	if params != "" && !s.info.ESMTP {
		s.reply(555, "5.5.4", "Parameters need EHLO, not HELO")
		return
	}
	p, err := smtp.ParseRcptParams(params)
	if err != nil {
		s.fail(err)
		return
	}
	if !smtp.IsASCII(arg) && !s.env.Params.SMTPUTF8 {
		s.sendReply(smtp.ErrNeedsSMTPUTF8)
		return
	}
	for _, r := range s.env.Recipients {
		if r.Addr == to {
			s.reply(250, "2.1.5", fmt.Sprintf("Recipient <%s> OK (duplicate)", to))
			return
		}
	}
	if len(s.env.Recipients) >= s.cfg.MaxRecipients {
		s.reply(452, "4.5.3", fmt.Sprintf("Too many recipients: at most %d per message, send the rest in another message", s.cfg.MaxRecipients))
		return
	}
	target, err := s.srv.backend.Rcpt(s.ctx(), &s.info, s.env, to, p)
	if err != nil {
		s.refusedRecipients++
		s.logRefusal("recipient refused", to, err)
		s.fail(err)
		return
	}
	s.env.Recipients = append(s.env.Recipients, Recipient{Addr: to, Params: p, Target: target})
	s.reply(250, "2.1.5", fmt.Sprintf("Recipient <%s> OK", to))
}

// readyForData checks that a transaction can take its message.
func (s *session) readyForData(verb string) bool {
	switch {
	case s.env == nil:
		s.reply(503, "5.5.1", "Send MAIL FROM and RCPT TO before "+verb)
	case len(s.env.Recipients) == 0:
		s.reply(554, "5.5.1", "No valid recipients")
	default:
		return true
	}
	return false
}

// cmdStartTLS handles STARTTLS (RFC 3207).
func (s *session) cmdStartTLS(arg string) {
	switch {
	case s.cfg.TLS == nil:
		s.reply(502, "5.5.1", "STARTTLS is not available: no certificate is configured")
		return
	case s.info.TLS != nil:
		s.reply(503, "5.5.1", "TLS is already active")
		return
	case arg != "":
		s.reply(501, "5.5.4", "STARTTLS takes no arguments")
		return
	}
	s.reply(220, "2.0.0", "Ready to start TLS")
	if !s.flush() {
		s.quit = true
		return
	}
	// Anything the client pipelined after STARTTLS came in plaintext and
	// must not be taken as if it were protected (CVE-2011-0411).
	if n := s.r.Buffered(); n > 0 {
		s.r.Discard(n)
		s.log.Warn("discarded input pipelined after STARTTLS", "octets", n)
	}
	if err := s.c.StartTLS(s.cfg.TLS); err != nil {
		s.log.Info("TLS handshake failed", "err", err)
		s.result = "TLS handshake failed"
		s.quit = true
		return
	}
	s.info.TLS = s.c.TLS()
	s.r.Reset(s.c)
	// RFC 3207 4.2: forget everything learnt before TLS, a login too.
	s.info.Helo, s.info.ESMTP, s.info.Auth = "", false, nil
	s.resetTransaction()
}

func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLS1.3"
	case tls.VersionTLS12:
		return "TLS1.2"
	}
	return fmt.Sprintf("TLS(0x%04x)", v)
}

func tlsCipherName(id uint16) string { return tls.CipherSuiteName(id) }
