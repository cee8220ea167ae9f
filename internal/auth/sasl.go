package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/xdg-go/scram"

	"mailroom/internal/metrics"
	"mailroom/internal/password"
	"mailroom/internal/store"
)

// Ask sends a challenge to the client and returns its decoded response;
// the protocol frames it (SMTP "334 ", IMAP and POP3 "+ ") and returns
// ErrCancelled for "*", ErrMalformed for bad base64, or its I/O error.
type Ask func(challenge []byte) ([]byte, error)

// Options are a protocol's choices of what to offer.
type Options struct {
	// CRAMMD5 offers CRAM-MD5 (off by default: it needs a
	// password-equivalent secret per user).
	CRAMMD5 bool
	// Hostname goes into the CRAM-MD5 challenge.
	Hostname string
}

// Mechanisms lists the SASL mechanisms to offer a client, strongest first:
// SCRAM-SHA-256-PLUS only where tls-exporter binding is defined (TLS 1.3,
// RFC 9266).
func Mechanisms(c Client, o Options) []string {
	m := []string{"SCRAM-SHA-256"}
	if tls13(c) {
		m = append(m, "SCRAM-SHA-256-PLUS")
	}
	m = append(m, "PLAIN", "LOGIN")
	if o.CRAMMD5 {
		m = append(m, "CRAM-MD5")
	}
	return m
}

func tls13(c Client) bool { return c.TLS != nil && c.TLS.Version >= tls.VersionTLS13 }

// malformed is ErrMalformed with what was expected.
type malformed string

func (m malformed) Error() string        { return string(m) }
func (m malformed) Is(target error) bool { return target == ErrMalformed }

// Authenticate runs one SASL exchange (RFC 4422) and returns the login.
// initial is the initial response, when the client gave one (SASL-IR).
func (s *Service) Authenticate(ctx context.Context, c Client, mech string, initial []byte, hasInitial bool, o Options, ask Ask) (string, error) {
	first := func(challenge []byte) ([]byte, error) {
		if hasInitial {
			return initial, nil
		}
		return ask(challenge)
	}
	switch strings.ToUpper(mech) {
	case "PLAIN":
		return s.plain(ctx, c, first)
	case "LOGIN":
		user, err := first([]byte("Username:"))
		if err != nil {
			return "", err
		}
		pw, err := ask([]byte("Password:"))
		if err != nil {
			return "", err
		}
		return s.Password(ctx, c, string(user), string(pw))
	case "CRAM-MD5":
		if !o.CRAMMD5 {
			return "", ErrUnknownMechanism
		}
		if hasInitial {
			return "", malformed("CRAM-MD5 takes no initial response")
		}
		return s.cramMD5(ctx, c, o.Hostname, ask)
	case "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS":
		return s.scram(ctx, c, strings.ToUpper(mech), first, ask)
	}
	return "", ErrUnknownMechanism
}

// plain runs PLAIN (RFC 4616).
func (s *Service) plain(ctx context.Context, c Client, first Ask) (string, error) {
	resp, err := first(nil)
	if err != nil {
		return "", err
	}
	parts := bytes.Split(resp, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 {
		return "", malformed("Malformed PLAIN response: expected authzid NUL authcid NUL password")
	}
	authz, user, pw := string(parts[0]), string(parts[1]), string(parts[2])
	if authz != "" && authz != user {
		// Acting for another user is not supported; do not say more.
		return "", ErrBadCredentials
	}
	return s.Password(ctx, c, user, pw)
}

// cramMD5 runs CRAM-MD5 (RFC 2195): a challenge, then "user hex-digest",
// checked against the user's stored HMAC-MD5 states.
func (s *Service) cramMD5(ctx context.Context, c Client, hostname string, ask Ask) (string, error) {
	var nonce [12]byte
	rand.Read(nonce[:])
	challenge := fmt.Sprintf("<%s.%d@%s>", hex.EncodeToString(nonce[:]), time.Now().Unix(), hostname)
	resp, err := ask([]byte(challenge))
	if err != nil {
		return "", err
	}
	user, digest, found := strings.Cut(string(resp), " ")
	if !found || user == "" || len(digest) != 32 {
		return "", malformed("Malformed CRAM-MD5 response: expected the user name, a space and 32 hex digits")
	}
	return s.limited(ctx, c, user, "CRAM-MD5", func() (string, error) {
		login := Canonical(user)
		u, err := s.creds.User(ctx, login)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return "", &TemporaryError{err}
		}
		// A user without CRAM-MD5 states (password set while it was off)
		// fails like a wrong password.
		if err != nil || !password.CheckCRAMMD5(u.CRAMMD5, challenge, digest) {
			return "", ErrBadCredentials
		}
		if u.Settings.RequireSCRAM {
			return login, ErrTooWeak
		}
		return login, nil
	})
}

// errLimited stops a SCRAM exchange inside the library's lookup.
var errLimited = errors.New("login limited")

// scram runs SCRAM-SHA-256 or SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677). For
// a name that does not exist it uses made-up verifiers, so that the
// exchange fails only at the proof, as for a wrong password.
func (s *Service) scram(ctx context.Context, c Client, mech string, first, ask Ask) (string, error) {
	var login, account string
	var limitErr error
	begun := false
	lookup := func(username string) (scram.StoredCredentials, error) {
		account = Canonical(username)
		if limitErr = s.begin(ctx, c, account); limitErr != nil {
			return scram.StoredCredentials{}, errLimited
		}
		begun = true
		login = account
		u, err := s.creds.User(ctx, login)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return scram.StoredCredentials{}, &TemporaryError{err}
		}
		if creds, perr := password.ParseSCRAM(u.SCRAMSHA256); err == nil && perr == nil {
			return creds, nil
		}
		return password.FakeSCRAM(s.fakeSecret, login), nil
	}
	server, err := scram.SHA256.NewServer(lookup)
	if err != nil {
		return "", &TemporaryError{err}
	}
	conv, err := conversation(server, c, mech)
	if err != nil {
		return "", err
	}
	// done closes an attempt that stops before its verdict.
	done := func(err error) (string, error) {
		if begun {
			s.limiter.Done(c.Prefix, account)
		}
		return "", err
	}
	c1, err := first(nil)
	if err != nil {
		return "", err
	}
	s1, err := conv.Step(string(c1))
	switch {
	case limitErr != nil: // errLimited, however the library wraps it
		return "", limitErr
	case err != nil:
		var temp *TemporaryError
		if errors.As(err, &temp) {
			return done(temp)
		}
		return done(malformed("Malformed SCRAM client-first message"))
	}
	c2, err := ask([]byte(s1))
	if err != nil {
		return done(err)
	}
	s2, err := conv.Step(string(c2))
	if err != nil || !conv.Valid() || conv.AuthzID() != "" && Canonical(conv.AuthzID()) != account {
		// A wrong proof, a wrong channel binding, or acting for another
		// user (not supported): a failed login like a wrong password.
		s.end(ctx, c, account, mech, ErrBadCredentials)
		return "", ErrBadCredentials
	}
	// The server's final message goes in a challenge, answered empty
	// (RFC 4954 4, RFC 9051 6.2.2).
	if _, err := ask([]byte(s2)); err != nil {
		return done(err)
	}
	metrics.Logins.WithLabelValues(c.Protocol, "ok").Inc()
	s.limiter.Succeeded(ctx, c.Prefix, account)
	return login, nil
}

// conversation starts the server side, bound to the client's TLS
// connection when it asks for channel binding (or could have).
func conversation(server *scram.Server, c Client, mech string) (*scram.ServerConversation, error) {
	plus := strings.HasSuffix(mech, "-PLUS")
	if !tls13(c) {
		if plus {
			return nil, ErrNeedsTLS13
		}
		return server.NewConversation(), nil
	}
	cb, err := scram.NewTLSExporterBinding(c.TLS)
	if err != nil {
		return nil, &TemporaryError{err}
	}
	if plus {
		return server.NewConversationWithChannelBindingRequired(cb), nil
	}
	// PLUS was offered: a client that could bind but did not ("y") is
	// refused as a downgrade (RFC 5802 6).
	return server.NewConversationWithChannelBinding(cb), nil
}
