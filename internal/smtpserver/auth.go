package smtpserver

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"mailroom/internal/auth"
)

// Authenticator checks logins for SMTP AUTH (RFC 4954): auth.Service, the
// one login layer of every protocol.
type Authenticator interface {
	Authenticate(ctx context.Context, c auth.Client, mech string, initial []byte, hasInitial bool, o auth.Options, ask auth.Ask) (string, error)
}

// maxAuthLine is the longest line of a SASL exchange (RFC 4954 4).
const maxAuthLine = 12288

// maxAuthFailures ends a session after this many failed AUTH commands.
const maxAuthFailures = 3

// authAllowed reports whether AUTH may be used now: on a submission
// listener, over TLS (or from loopback when configured).
func (s *session) authAllowed() bool {
	if s.info.Mode == ModeMX || s.srv.auth == nil {
		return false
	}
	return s.info.TLS != nil || s.cfg.AuthWithoutTLSFromLoopback && s.info.Remote.Addr().IsLoopback()
}

// client is who logs in, for the login layer.
func (s *session) client() auth.Client {
	return auth.Client{Addr: s.info.Remote.Addr(), Prefix: s.c.Client(), TLS: s.info.TLS, Protocol: s.info.Mode.String()}
}

func (s *session) authOptions() auth.Options {
	return auth.Options{CRAMMD5: s.cfg.CRAMMD5, Hostname: s.cfg.Hostname}
}

// mechanisms are the SASL mechanisms offered now, in EHLO order.
func (s *session) mechanisms() []string { return auth.Mechanisms(s.client(), s.authOptions()) }

// cmdAuth handles AUTH (RFC 4954 4).
func (s *session) cmdAuth(arg string) {
	switch {
	case s.info.Mode == ModeMX:
		s.reply(502, "5.5.1", "AUTH is not available on this port: use the submission port")
		return
	case !s.authAllowed():
		s.reply(538, "5.7.11", "Encryption required for authentication: send STARTTLS first")
		return
	case s.info.Helo == "":
		s.reply(503, "5.5.1", "Send EHLO first")
		return
	case s.info.Auth != nil:
		s.reply(503, "5.5.1", "Already authenticated")
		return
	case s.env != nil:
		s.reply(503, "5.5.1", "AUTH is not allowed during a mail transaction: send RSET first")
		return
	}
	mech, initialText, hasInitial := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	offered := false
	for _, m := range s.mechanisms() {
		offered = offered || m == mech
	}
	if !offered && mech != "SCRAM-SHA-256-PLUS" { // -PLUS without TLS 1.3 gets its own answer
		s.answerAuth(auth.ErrUnknownMechanism)
		return
	}
	var initial []byte
	if hasInitial {
		var err error
		if initial, err = decodeSASL(initialText); err != nil {
			s.answerAuth(err)
			return
		}
	}
	login, err := s.srv.auth.Authenticate(s.ctx(), s.client(), mech, initial, hasInitial, s.authOptions(), s.ask)
	if err != nil {
		s.answerAuth(err)
		return
	}
	s.info.Auth = &AuthInfo{User: login, Mechanism: mech}
	s.log = s.log.With("user", login, "mechanism", mech)
	s.reply(235, "2.7.0", "Authentication successful")
}

// errConnection stops an exchange whose connection failed; the session
// has already recorded why.
var errConnection = errors.New("connection failed during authentication")

// ask sends a 334 challenge and reads the client's response (RFC 4954 4).
func (s *session) ask(challenge []byte) ([]byte, error) {
	s.reply(334, "", base64.StdEncoding.EncodeToString(challenge))
	if !s.flush() {
		s.quit = true
		return nil, errConnection
	}
	s.c.ExpectLine(s.cfg.CommandTimeout)
	raw, err := s.readLongLine(maxAuthLine)
	if err != nil && !errors.Is(err, errLineTooLong) {
		s.endOnReadError(err)
		s.quit = true
		return nil, errConnection
	}
	if err != nil {
		return nil, err
	}
	return decodeSASL(strings.TrimRight(string(raw), "\r\n"))
}

// decodeSASL decodes one response line: "*" cancels, "=" is empty.
func decodeSASL(line string) ([]byte, error) {
	switch line {
	case "*":
		return nil, auth.ErrCancelled
	case "=":
		return []byte{}, nil
	}
	data, err := base64.StdEncoding.DecodeString(line)
	if err != nil {
		return nil, errBadBase64
	}
	return data, nil
}

var errBadBase64 = errors.New("invalid base64 in the authentication exchange")

// answerAuth turns the login layer's result into its SMTP reply (RFC 4954
// 6, RFC 3463), and ends the session after too many failures or a ban.
func (s *session) answerAuth(err error) {
	var limited *auth.LimitedError
	switch {
	case errors.Is(err, errConnection):
		return
	case errors.As(err, &limited) && limited.Banned:
		s.reply(421, "4.7.0", fmt.Sprintf("%s Too many failed logins from your address: try again in %d minutes", s.cfg.Hostname, int(limited.RetryAfter.Minutes())+1))
		s.result, s.quit = "banned after failed logins", true
	case errors.As(err, &limited):
		s.reply(454, "4.7.0", "Temporary authentication failure, try again later")
	case errors.Is(err, auth.ErrBadCredentials):
		s.reply(535, "5.7.8", "Authentication credentials invalid")
		s.countAuthFailure()
	case errors.Is(err, auth.ErrTooWeak):
		s.reply(534, "5.7.9", "Authentication mechanism is too weak for this account: use SCRAM-SHA-256, or an app password")
		s.countAuthFailure()
	case errors.Is(err, errLineTooLong):
		s.reply(500, "5.5.6", "Authentication exchange line is too long")
	case errors.Is(err, auth.ErrCancelled):
		s.reply(501, "5.0.0", "Authentication cancelled")
	case errors.Is(err, errBadBase64):
		s.reply(501, "5.5.2", "Invalid base64 in the authentication exchange")
	case errors.Is(err, auth.ErrMalformed):
		s.reply(501, "5.5.2", err.Error())
	case errors.Is(err, auth.ErrNeedsTLS13):
		s.reply(504, "5.5.4", "SCRAM-SHA-256-PLUS needs TLS 1.3 (tls-exporter channel binding)")
	case errors.Is(err, auth.ErrUnknownMechanism):
		s.reply(504, "5.5.4", "Unrecognized authentication mechanism: use one of "+strings.Join(s.mechanisms(), ", "))
	default:
		s.log.Error("authentication failure of ours", "err", err)
		s.reply(454, "4.7.0", "Temporary authentication failure, try again later")
	}
}

// countAuthFailure ends the session after too many failed logins.
func (s *session) countAuthFailure() {
	s.authFailures++
	if s.authFailures >= maxAuthFailures {
		s.reply(421, "4.7.0", s.cfg.Hostname+" Too many authentication failures, closing connection")
		s.result = "too many authentication failures"
		s.quit = true
	}
}

// requireAuth answers MAIL on a submission listener from a client that
// has not authenticated (RFC 6409 4.3, RFC 4954 6).
func (s *session) requireAuth() bool {
	if s.info.Mode == ModeMX || s.info.Auth != nil {
		return true
	}
	if !s.authAllowed() {
		s.reply(530, "5.7.0", "Must issue a STARTTLS command first")
	} else {
		s.reply(530, "5.7.0", "Authentication required: log in with AUTH first")
	}
	return false
}
