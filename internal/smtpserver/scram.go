package smtpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"net/netip"
	"strings"

	"github.com/xdg-go/scram"

	"mailroom/internal/authlimit"
	"mailroom/internal/smtp"
)

// SCRAMAuthenticator is the optional part of a Backend that provides
// SCRAM-SHA-256 verifiers (RFC 5802, RFC 7677). For a name that does not
// exist it returns made-up verifiers and no error, so that the exchange
// fails only at the proof, as for a wrong password.
type SCRAMAuthenticator interface {
	SCRAMCredentials(ctx context.Context, s *SessionInfo, username string) (login string, creds scram.StoredCredentials, err error)
}

// errLimited stops a SCRAM exchange for a banned address or locked name.
var errLimited = errors.New("login limited")

// scramOffered returns the SCRAM mechanisms to offer now: the -PLUS one
// only where tls-exporter channel binding is defined (TLS 1.3, RFC 9266).
func (s *session) scramOffered() []string {
	if _, ok := s.srv.backend.(SCRAMAuthenticator); !ok {
		return nil
	}
	if s.info.TLS != nil && s.info.TLS.Version >= tls.VersionTLS13 {
		return []string{"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"}
	}
	return []string{"SCRAM-SHA-256"}
}

// saslSCRAM runs SCRAM-SHA-256 or SCRAM-SHA-256-PLUS and reports success
// with the login name; it sends every reply but the final 235.
func (s *session) saslSCRAM(mech, initial string, hasInitial bool) (string, bool) {
	sa := s.srv.backend.(SCRAMAuthenticator)
	ip := s.info.Remote.Addr()
	var login, account string
	var verdict authlimit.Verdict
	lookup := func(username string) (scram.StoredCredentials, error) {
		account = strings.ToLower(username)
		if verdict, _ = s.srv.authLimit.Check(ip, account); verdict != authlimit.Allow {
			return scram.StoredCredentials{}, errLimited
		}
		l, creds, err := sa.SCRAMCredentials(s.ctx(), &s.info, username)
		login = l
		return creds, err
	}
	server, err := scram.SHA256.NewServer(lookup)
	if err != nil {
		s.authFailed(err)
		return "", false
	}
	conv, ok := s.scramConversation(server, mech)
	if !ok {
		return "", false
	}
	c1, ok := s.saslResponse(initial, hasInitial, "")
	if !ok {
		return "", false
	}
	s1, err := conv.Step(string(c1))
	if err != nil {
		s.scramFailed(err, verdict, ip, account)
		return "", false
	}
	c2, ok := s.saslResponse("", false, s1)
	if !ok {
		return "", false
	}
	s2, err := conv.Step(string(c2))
	if err != nil || !conv.Valid() {
		s.scramFailed(errors.New("invalid proof"), verdict, ip, account)
		return "", false
	}
	// RFC 4954 4: the server's final message goes in a 334, answered empty.
	if _, ok := s.saslResponse("", false, s2); !ok {
		return "", false
	}
	s.srv.authLimit.Succeeded(account)
	return login, true
}

// scramConversation starts the server side, bound to this TLS connection
// when the client asks for channel binding (or could have).
func (s *session) scramConversation(server *scram.Server, mech string) (*scram.ServerConversation, bool) {
	plus := strings.HasSuffix(mech, "-PLUS")
	if s.info.TLS == nil || s.info.TLS.Version < tls.VersionTLS13 {
		if plus {
			s.reply(504, "5.5.4", "SCRAM-SHA-256-PLUS needs TLS 1.3 (tls-exporter channel binding)")
			return nil, false
		}
		return server.NewConversation(), true
	}
	cb, err := scram.NewTLSExporterBinding(s.info.TLS)
	if err != nil {
		s.authFailed(err)
		return nil, false
	}
	if plus {
		return server.NewConversationWithChannelBindingRequired(cb), true
	}
	// PLUS was offered: a client that could bind but did not ("y") is
	// refused as a downgrade (RFC 5802 6).
	return server.NewConversationWithChannelBinding(cb), true
}

// scramFailed answers a failed SCRAM exchange like any failed login.
func (s *session) scramFailed(err error, verdict authlimit.Verdict, ip netip.Addr, account string) {
	if errors.Is(err, errLimited) {
		s.answerLimited(verdict, ip, account)
		return
	}
	s.log.Info("SCRAM authentication failed", "err", err)
	s.delayFailure(ip, account)
	s.authFailed(errBadCredentials)
}

var errBadCredentials = &smtp.Reply{Code: 535, Enhanced: "5.7.8", Text: "Authentication credentials invalid"}
