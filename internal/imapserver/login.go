package imapserver

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"mailroom/internal/auth"
	"mailroom/internal/imapwire"
	"mailroom/internal/store"
)

func init() {
	commands["CAPABILITY"] = command{states: stateAny, run: cmdCapability}
	commands["NOOP"] = command{states: stateAny, run: cmdNoop}
	commands["LOGOUT"] = command{states: stateAny, run: cmdLogout}
	commands["STARTTLS"] = command{states: stateNotAuth, run: cmdStartTLS}
	commands["LOGIN"] = command{states: stateNotAuth, run: cmdLogin}
	commands["AUTHENTICATE"] = command{states: stateNotAuth, run: cmdAuthenticate}
	commands["ENABLE"] = command{states: stateIn, run: cmdEnable}
	commands["ID"] = command{states: stateAny, run: cmdID}
}

// capsAuthenticated are announced once logged in; each works.
var capsAuthenticated = []string{
	"IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE", "NAMESPACE", "UIDPLUS", "MOVE", "UNSELECT",
	"CHILDREN", "SPECIAL-USE", "MULTIAPPEND", "LIST-EXTENDED", "LIST-STATUS", "STATUS=SIZE",
	"ESEARCH", "SEARCHRES", "CONDSTORE", "QRESYNC", "SORT", "SORT=DISPLAY", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "BINARY",
	"QUOTA", "QUOTA=RES-STORAGE", "CREATE-SPECIAL-USE",
}

// capabilities lists what the session may use now (RFC 9051 7.2.2):
// before TLS only STARTTLS and LOGINDISABLED, before login the SASL
// mechanisms, after login the extensions.
func (s *session) capabilities() string {
	if s.authed {
		caps := strings.Join(capsAuthenticated, " ") + fmt.Sprintf(" APPENDLIMIT=%d", s.cfg.MaxMessageSize)
		if !s.compressed {
			caps += " COMPRESS=DEFLATE"
		}
		return caps
	}
	caps := []string{"IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE"}
	if s.c.TLS() == nil {
		if s.cfg.TLS != nil {
			caps = append(caps, "STARTTLS")
		}
		return strings.Join(append(caps, "LOGINDISABLED"), " ")
	}
	for _, m := range auth.Mechanisms(s.client(), auth.Options{Hostname: s.cfg.Hostname}) {
		caps = append(caps, "AUTH="+m)
	}
	return strings.Join(caps, " ")
}

func (s *session) client() auth.Client {
	return auth.Client{Addr: s.c.Remote().Addr(), Prefix: s.c.Client(), TLS: s.c.TLS(), Protocol: "imap"}
}

func cmdCapability(s *session, _ string, p *imapwire.Parser) error {
	if err := p.End(); err != nil {
		return err
	}
	s.untagged("CAPABILITY %s", s.capabilities())
	return nil
}

func cmdNoop(s *session, _ string, p *imapwire.Parser) error { return p.End() }

func cmdLogout(s *session, _ string, p *imapwire.Parser) error {
	if err := p.End(); err != nil {
		return err
	}
	s.untagged("BYE %s Mailroom IMAP logging out", s.cfg.Hostname)
	s.sel = nil
	s.quit = true
	return nil
}

func cmdStartTLS(s *session, _ string, p *imapwire.Parser) error {
	if err := p.End(); err != nil {
		return err
	}
	if s.c.TLS() != nil {
		return bad("TLS is already active")
	}
	if s.cfg.TLS == nil {
		return no("", "TLS is not available: this server has no certificate")
	}
	if s.r.Buffered() > 0 {
		// Commands sent after STARTTLS in plaintext would be taken as
		// sent inside TLS (the STARTTLS injection of CVE-2011-0411).
		return bad("Commands were pipelined after STARTTLS: send nothing until its response")
	}
	s.tagged(s.tag, "OK Begin TLS negotiation now")
	if !s.flush() {
		return errConnection
	}
	if err := s.c.StartTLS(s.cfg.TLS); err != nil {
		s.log.Info("imap STARTTLS handshake failed", "err", err)
		s.quit = true
		return errSilent
	}
	return errSilent
}

// errSilent ends a command whose response was already written.
var errSilent = errors.New("response already written")

func cmdLogin(s *session, _ string, p *imapwire.Parser) error {
	if err := p.SP(); err != nil {
		return err
	}
	user, err := p.AString()
	if err != nil {
		return err
	}
	if err := p.SP(); err != nil {
		return err
	}
	pw, err := p.AString()
	if err != nil {
		return err
	}
	if err := p.End(); err != nil {
		return err
	}
	if s.c.TLS() == nil {
		return no("[PRIVACYREQUIRED]", "Log in over TLS: use STARTTLS first, or port 993")
	}
	login, err := s.srv.auth.Password(s.ctx(), s.client(), user, pw)
	return s.loggedIn(login, "LOGIN", err)
}

func cmdAuthenticate(s *session, _ string, p *imapwire.Parser) error {
	if err := p.SP(); err != nil {
		return err
	}
	mech, err := p.Atom()
	if err != nil {
		return err
	}
	mech = strings.ToUpper(mech)
	var initial []byte
	hasInitial := false
	if p.Take(" ") {
		ir, err := p.AString()
		if err != nil {
			return err
		}
		if initial, err = decodeSASL(ir); err != nil {
			return s.loggedIn("", mech, err)
		}
		hasInitial = true
	}
	if err := p.End(); err != nil {
		return err
	}
	if s.c.TLS() == nil {
		return no("[PRIVACYREQUIRED]", "Log in over TLS: use STARTTLS first, or port 993")
	}
	login, err := s.srv.auth.Authenticate(s.ctx(), s.client(), mech, initial, hasInitial, auth.Options{Hostname: s.cfg.Hostname}, s.ask)
	return s.loggedIn(login, mech, err)
}

// ask sends a continuation with a challenge and reads the response line
// (RFC 9051 6.2.2).
func (s *session) ask(challenge []byte) ([]byte, error) {
	s.w.WriteString("+ " + base64.StdEncoding.EncodeToString(challenge) + "\r\n")
	if !s.flush() {
		return nil, errConnection
	}
	s.c.ExpectLine(s.cfg.LoginTimeout)
	line, err := s.dec.ReadLine()
	if err != nil {
		if errors.Is(err, imapwire.ErrTooLong) {
			return nil, auth.ErrMalformed
		}
		return nil, errConnection
	}
	return decodeSASL(string(line))
}

var errBadBase64 = errors.New("invalid base64 in the authentication exchange")

// decodeSASL decodes one response: "*" cancels, "=" is empty (SASL-IR).
func decodeSASL(line string) ([]byte, error) {
	switch line {
	case "*":
		return nil, auth.ErrCancelled
	case "=":
		return []byte{}, nil
	}
	b, err := base64.StdEncoding.DecodeString(line)
	if err != nil {
		return nil, errBadBase64
	}
	return b, nil
}

// loggedIn turns a login's result into the session's state and response
// (RFC 5530 response codes).
func (s *session) loggedIn(login, mech string, err error) error {
	var limited *auth.LimitedError
	switch {
	case err == nil:
	case errors.Is(err, errConnection):
		return err
	case errors.As(err, &limited) && limited.Banned:
		s.untagged("BYE [UNAVAILABLE] Too many failed logins from your address: try again in %d minutes", int(limited.RetryAfter.Minutes())+1)
		s.quit = true
		return no("[UNAVAILABLE]", "Too many failed logins")
	case errors.As(err, &limited):
		return no("[UNAVAILABLE]", "Too many failed logins: try again later")
	case errors.Is(err, auth.ErrBadCredentials):
		return s.failedLogin(no("[AUTHENTICATIONFAILED]", "Authentication failed"))
	case errors.Is(err, auth.ErrTooWeak):
		return s.failedLogin(no("[AUTHENTICATIONFAILED]", "This account logs in only with SCRAM-SHA-256 or an app password"))
	case errors.Is(err, auth.ErrCancelled):
		return bad("Authentication cancelled")
	case errors.Is(err, errBadBase64):
		return bad("Invalid base64 in the authentication exchange")
	case errors.Is(err, auth.ErrMalformed):
		return bad("%s", err.Error())
	case errors.Is(err, auth.ErrNeedsTLS13):
		return no("[CANNOT]", "SCRAM-SHA-256-PLUS needs TLS 1.3 (tls-exporter channel binding)")
	case errors.Is(err, auth.ErrUnknownMechanism):
		return no("[CANNOT]", "Unknown authentication mechanism")
	default:
		s.log.Error("imap login failed on our side", "err", err)
		return no("[UNAVAILABLE]", "Temporary authentication failure, try again later")
	}
	u, err := s.srv.store.User(s.ctx(), login)
	if err != nil {
		s.log.Error("imap login: reading the user", "user", login, "err", err)
		return no("[UNAVAILABLE]", "Temporary authentication failure, try again later")
	}
	s.user, s.authed = u, true
	s.log = s.log.With("user", login)
	s.code = "[CAPABILITY " + s.capabilities() + "]"
	_ = mech
	return nil
}

// failedLogin counts a failure and ends the session after too many.
func (s *session) failedLogin(err error) error {
	s.authFailures++
	if s.authFailures >= maxAuthFailures {
		s.finish("", err)
		s.untagged("BYE Too many failed logins")
		s.quit = true
		return errSilent
	}
	return err
}

func cmdEnable(s *session, _ string, p *imapwire.Parser) error {
	var enabled []string
	for p.Take(" ") {
		a, err := p.Atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(a) {
		case "UTF8=ACCEPT":
			if !s.utf8 {
				s.utf8 = true
				enabled = append(enabled, "UTF8=ACCEPT")
			}
		case "IMAP4REV2":
			if !s.rev2 {
				s.rev2, s.utf8 = true, true
				enabled = append(enabled, "IMAP4rev2")
			}
		case "CONDSTORE":
			if !s.condstore {
				s.condstore = true
				enabled = append(enabled, "CONDSTORE")
			}
		case "QRESYNC":
			if !s.qresync {
				s.qresync, s.condstore = true, true
				enabled = append(enabled, "QRESYNC")
			}
		}
	}
	if err := p.End(); err != nil {
		return err
	}
	if len(enabled) > 0 {
		s.untagged("ENABLED %s", strings.Join(enabled, " "))
	} else {
		s.untagged("ENABLED")
	}
	return nil
}

// cmdID answers RFC 2971 ID with the server's name only: the version
// helps attackers more than clients.
func cmdID(s *session, _ string, p *imapwire.Parser) error {
	if err := p.SP(); err != nil {
		return err
	}
	if !p.Take("NIL") {
		if err := p.Expect("("); err != nil {
			return err
		}
		for i := 0; !p.Take(")"); i++ {
			if i > 0 {
				if err := p.SP(); err != nil {
					return err
				}
			}
			if _, err := p.String(); err != nil {
				return err
			}
			if err := p.SP(); err != nil {
				return err
			}
			if _, _, err := p.NString(); err != nil {
				return err
			}
			if i > 30 {
				return bad("Too many ID fields")
			}
		}
	}
	if err := p.End(); err != nil {
		return err
	}
	s.untagged(`ID ("name" "Mailroom")`)
	return nil
}

// mailboxName decodes a mailbox name from the client: modified UTF-7
// unless UTF8=ACCEPT is on; INBOX in any case is INBOX.
func (s *session) mailboxName(raw string) (string, error) {
	name := raw
	if !s.utf8 {
		var err error
		if name, err = imapwire.DecodeUTF7(raw); err != nil {
			return "", no("[CANNOT]", "%s", err.Error())
		}
	}
	if strings.EqualFold(name, store.Inbox) {
		return store.Inbox, nil
	}
	if up, rest, ok := strings.Cut(name, store.Separator); ok && strings.EqualFold(up, store.Inbox) {
		return store.Inbox + store.Separator + rest, nil
	}
	return name, nil
}

// wireName encodes a mailbox name for the client.
func (s *session) wireName(name string) []byte {
	if !s.utf8 {
		name = imapwire.EncodeUTF7(name)
	}
	return imapwire.AppendAString(nil, name)
}
