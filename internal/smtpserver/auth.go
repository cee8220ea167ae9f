package smtpserver

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"mailroom/internal/authlimit"
	"mailroom/internal/smtp"
)

// maxAuthLine is the longest line of a SASL exchange (RFC 4954 4).
const maxAuthLine = 12288

// maxAuthFailures ends a session after this many failed AUTH commands.
const maxAuthFailures = 3

// passwordMechanisms are the SASL mechanisms that carry the password.
var passwordMechanisms = []string{"PLAIN", "LOGIN"}

// authenticator returns the backend's Authenticator, or nil.
func (s *session) authenticator() Authenticator {
	a, _ := s.srv.backend.(Authenticator)
	return a
}

// authAllowed reports whether AUTH may be used now: on a submission
// listener, over TLS (or from loopback when configured).
func (s *session) authAllowed() bool {
	if s.info.Mode == ModeMX || s.authenticator() == nil {
		return false
	}
	return s.info.TLS != nil || s.cfg.AuthWithoutTLSFromLoopback && s.info.Remote.Addr().IsLoopback()
}

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
	mech, initial, hasInitial := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	var login string
	var ok bool
	switch mech {
	case "PLAIN", "LOGIN":
		login, ok = s.passwordLogin(mech, initial, hasInitial)
	case "CRAM-MD5":
		if !s.cramOffered() {
			s.reply(504, "5.5.4", "Unrecognized authentication mechanism: use one of "+strings.Join(s.mechanisms(), ", "))
			return
		}
		login, ok = s.saslCRAMMD5(initial, hasInitial)
	case "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS":
		if len(s.scramOffered()) == 0 {
			s.reply(504, "5.5.4", "Unrecognized authentication mechanism: use one of "+strings.Join(s.mechanisms(), ", "))
			return
		}
		login, ok = s.saslSCRAM(mech, initial, hasInitial)
	default:
		s.reply(504, "5.5.4", "Unrecognized authentication mechanism: use one of "+strings.Join(s.mechanisms(), ", "))
		return
	}
	if !ok {
		return // the exchange already answered
	}
	s.info.Auth = &AuthInfo{User: login, Mechanism: mech}
	s.log = s.log.With("user", login, "mechanism", mech)
	s.reply(235, "2.7.0", "Authentication successful")
}

// mechanisms are the SASL mechanisms offered now, in EHLO order.
func (s *session) mechanisms() []string {
	m := append(append([]string{}, s.scramOffered()...), passwordMechanisms...)
	if s.cramOffered() {
		m = append(m, "CRAM-MD5")
	}
	return m
}

// passwordLogin runs PLAIN or LOGIN and checks the password, within the
// login limits.
func (s *session) passwordLogin(mech, initial string, hasInitial bool) (string, bool) {
	var user, pass string
	var ok bool
	if mech == "PLAIN" {
		user, pass, ok = s.saslPlain(initial, hasInitial)
	} else {
		user, pass, ok = s.saslLogin(initial, hasInitial)
	}
	if !ok {
		return "", false
	}
	return s.limitedLogin(user, func() (string, error) {
		return s.authenticator().Authenticate(s.ctx(), &s.info, user, pass)
	})
}

// canonicalAccount is the name login limits count under: the address in
// canonical form, so that spellings of one name ("Alice@x", "\"alice\"@x")
// share one count.
func canonicalAccount(user string) string {
	if a, err := smtp.ParseMailbox(user); err == nil {
		return strings.ToLower(a.Local) + "@" + a.Domain
	}
	return strings.ToLower(user)
}

// limitedLogin runs one credential check within the login limits and ends
// the attempt by its outcome; it answers a refusal or a failure itself.
func (s *session) limitedLogin(user string, check func() (string, error)) (string, bool) {
	account, ip := canonicalAccount(user), s.info.Remote.Addr()
	if verdict, left := s.srv.authLimit.Begin(ip, account); verdict != authlimit.Allow {
		s.answerLimited(verdict, left, ip, account)
		return "", false
	}
	login, err := check()
	switch {
	case err == nil:
		s.srv.authLimit.Succeeded(ip, account)
		return login, true
	case isBadCredentials(err):
		s.delayFailure(ip, account)
	default:
		s.srv.authLimit.Done(ip, account)
	}
	s.authFailed(err)
	return "", false
}

// isBadCredentials reports whether err is a 535 from the backend.
func isBadCredentials(err error) bool {
	var r *smtp.Reply
	return errors.As(err, &r) && r.Code == 535
}

// answerLimited refuses a login from a banned address, for a locked name,
// or beyond the attempts allowed at once.
func (s *session) answerLimited(verdict authlimit.Verdict, left time.Duration, ip netip.Addr, account string) {
	if verdict == authlimit.IPBanned {
		s.log.Warn("login refused: address banned after failed logins", "client", ip.String(), "user", account)
		s.reply(421, "4.7.0", fmt.Sprintf("%s Too many failed logins from your address: try again in %d minutes", s.cfg.Hostname, int(left.Minutes())+1))
		s.result, s.quit = "banned after failed logins", true
		return
	}
	if verdict == authlimit.AccountLocked {
		s.log.Warn("login refused: account locked after failed logins", "client", ip.String(), "user", account)
	}
	s.reply(454, "4.7.0", "Temporary authentication failure, try again later")
}

// delayFailure counts a failed login and waits the growing delay before
// the answer, which slows guessing down.
func (s *session) delayFailure(ip netip.Addr, account string) {
	delay := s.srv.authLimit.Failed(ip, account)
	select {
	case <-time.After(delay):
	case <-s.ctx().Done():
	}
}

// authFailed answers a failed authentication and ends the session after
// too many.
func (s *session) authFailed(err error) {
	var r *smtp.Reply
	if !errors.As(err, &r) {
		s.log.Error("authentication backend failure", "err", err)
		r = &smtp.Reply{Code: 454, Enhanced: "4.7.0", Text: "Temporary authentication failure, try again later"}
	}
	s.sendReply(r)
	s.authFailures++
	if s.authFailures >= maxAuthFailures {
		s.reply(421, "4.7.0", s.cfg.Hostname+" Too many authentication failures, closing connection")
		s.result = "too many authentication failures"
		s.quit = true
	}
}

// saslPlain runs the PLAIN mechanism (RFC 4616).
func (s *session) saslPlain(initial string, hasInitial bool) (string, string, bool) {
	resp, ok := s.saslResponse(initial, hasInitial, "")
	if !ok {
		return "", "", false
	}
	parts := bytes.Split(resp, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 {
		s.reply(501, "5.5.2", "Malformed PLAIN response: expected authzid NUL authcid NUL password")
		return "", "", false
	}
	authz, user, pass := string(parts[0]), string(parts[1]), string(parts[2])
	if authz != "" && authz != user {
		// Acting for another user is not supported; do not say more.
		s.authFailed(errBadCredentials)
		return "", "", false
	}
	return user, pass, true
}

// saslLogin runs the LOGIN mechanism (draft-murchison-sasl-login).
func (s *session) saslLogin(initial string, hasInitial bool) (string, string, bool) {
	user, ok := s.saslResponse(initial, hasInitial, "Username:")
	if !ok {
		return "", "", false
	}
	pass, ok := s.saslResponse("", false, "Password:")
	if !ok {
		return "", "", false
	}
	return string(user), string(pass), true
}

// saslResponse returns the client's next response: the initial response
// given with AUTH, or the answer to a 334 challenge.
func (s *session) saslResponse(initial string, hasInitial bool, challenge string) ([]byte, bool) {
	line := initial
	if !hasInitial {
		s.reply(334, "", base64.StdEncoding.EncodeToString([]byte(challenge)))
		if !s.flush() {
			s.quit = true
			return nil, false
		}
		raw, err := s.readLongLine(maxAuthLine)
		if errors.Is(err, errLineTooLong) {
			s.reply(500, "5.5.6", "Authentication exchange line is too long")
			return nil, false
		}
		if err != nil {
			s.endOnReadError(err)
			s.quit = true
			return nil, false
		}
		line = strings.TrimRight(string(raw), "\r\n")
	}
	if line == "*" {
		s.reply(501, "5.0.0", "Authentication cancelled")
		return nil, false
	}
	if line == "=" {
		return nil, true
	}
	data, err := base64.StdEncoding.DecodeString(line)
	if err != nil {
		s.reply(501, "5.5.2", "Invalid base64 in the authentication exchange")
		return nil, false
	}
	return data, true
}

// startImplicitTLS runs the handshake of a submissions (port 465)
// connection before the greeting (RFC 8314 3.3).
func (s *session) startImplicitTLS() bool {
	if s.cfg.TLS == nil {
		s.result = "no certificate for implicit TLS"
		return false
	}
	tc := tls.Server(s.conn, s.cfg.TLS)
	s.conn.SetDeadline(time.Now().Add(30 * time.Second))
	err := tc.Handshake()
	s.conn.SetDeadline(time.Time{})
	if err != nil {
		s.result = "TLS handshake failed: " + err.Error()
		return false
	}
	st := tc.ConnectionState()
	s.info.TLS = &st
	s.conn = tc
	s.dc.Conn = tc
	s.r.Reset(s.dc)
	return true
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
