package smtpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"time"

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
	var left time.Duration
	begun := false
	lookup := func(username string) (scram.StoredCredentials, error) {
		account = canonicalAccount(username)
		if verdict, left = s.srv.authLimit.Begin(ip, account); verdict != authlimit.Allow {
			return scram.StoredCredentials{}, errLimited
		}
		begun = true
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
	// end closes the attempt when the exchange stops before its verdict.
	end := func() {
		if begun {
			s.srv.authLimit.Done(ip, account)
		}
	}
	s1, err := conv.Step(string(c1))
	switch {
	case err != nil && !begun && verdict != authlimit.Allow: // errLimited, however the library wraps it
		s.answerLimited(verdict, left, ip, account)
		return "", false
	case err != nil:
		end()
		s.reply(501, "5.5.2", "Malformed SCRAM client-first message")
		return "", false
	}
	c2, ok := s.saslResponse("", false, s1)
	if !ok {
		end()
		return "", false
	}
	s2, err := conv.Step(string(c2))
	if err != nil || !conv.Valid() || conv.AuthzID() != "" && canonicalAccount(conv.AuthzID()) != account {
		// A wrong proof, a wrong channel binding, or acting for another
		// user (not supported): a failed login like a wrong password.
		s.log.Info("SCRAM authentication failed", "err", err)
		s.delayFailure(ip, account)
		s.authFailed(errBadCredentials)
		return "", false
	}
	// RFC 4954 4: the server's final message goes in a 334, answered empty.
	if _, ok := s.saslResponse("", false, s2); !ok {
		end()
		return "", false
	}
	s.srv.authLimit.Succeeded(ip, account)
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

var errBadCredentials = &smtp.Reply{Code: 535, Enhanced: "5.7.8", Text: "Authentication credentials invalid"}
