// Package auth checks logins for every protocol with one: submission now,
// IMAP and POP3 next. It holds the credential checks (argon2id passwords,
// app passwords, SCRAM-SHA-256 verifiers, CRAM-MD5 states), the server side
// of the SASL mechanisms (PLAIN, LOGIN, SCRAM-SHA-256(-PLUS), CRAM-MD5), and
// the one login limiter they all pass through. Its results are protocol
// neutral: each protocol turns ErrBadCredentials, *LimitedError and the rest
// into its own reply (SMTP 535, IMAP NO [AUTHENTICATIONFAILED], POP3 -ERR
// [AUTH]).
package auth

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"mailroom/internal/authlimit"
	"mailroom/internal/metrics"
	"mailroom/internal/password"
	"mailroom/internal/smtp"
	"mailroom/internal/store"
)

// Credentials is what auth reads from the store.
type Credentials interface {
	User(ctx context.Context, address string) (store.User, error)
	UserByAppPassword(ctx context.Context, hash string) (store.User, string, error)
}

// Client is who is logging in: where from, and over what.
type Client struct {
	Addr netip.Addr
	// Prefix is the client's address block, the unit the limiter counts
	// (listener.Prefixes: IPv4 /32 and IPv6 /64 by default).
	Prefix   netip.Prefix
	TLS      *tls.ConnectionState
	Protocol string // for the log: "submission", "imap"...
	// MainOnly takes the main password only: app passwords are for the mail
	// clients they were made for (the web dashboard signs in with the main
	// password).
	MainOnly bool
}

// Results a protocol turns into its own replies.
var (
	// ErrBadCredentials: a wrong name or password (never says which).
	ErrBadCredentials = errors.New("authentication credentials invalid")
	// ErrTooWeak: the password was right, but the account may use only
	// SCRAM or app passwords (SMTP 534 5.7.9).
	ErrTooWeak = errors.New("authentication mechanism too weak for this account")
	// ErrMalformed: the client's response does not follow the mechanism.
	ErrMalformed = errors.New("malformed authentication exchange")
	// ErrCancelled: the client cancelled the exchange ("*").
	ErrCancelled = errors.New("authentication cancelled")
	// ErrUnknownMechanism: a mechanism not offered.
	ErrUnknownMechanism = errors.New("unrecognized authentication mechanism")
	// ErrNeedsTLS13: SCRAM-SHA-256-PLUS without TLS 1.3 (tls-exporter).
	ErrNeedsTLS13 = errors.New("SCRAM-SHA-256-PLUS needs TLS 1.3 (tls-exporter channel binding)")
)

// LimitedError refuses a login before any check: the client's prefix is
// banned (the protocol closes the connection), or too many failures for
// this account came from it, or too many attempts are under way at once.
type LimitedError struct {
	Banned     bool
	RetryAfter time.Duration
}

func (e *LimitedError) Error() string {
	if e.Banned {
		return fmt.Sprintf("too many failed logins from this address: try again in %d minutes", int(e.RetryAfter.Minutes())+1)
	}
	return "too many failed logins: try again later"
}

// TemporaryError is a failure of ours (the store): try again later.
type TemporaryError struct{ Err error }

func (e *TemporaryError) Error() string { return "temporary authentication failure: " + e.Err.Error() }
func (e *TemporaryError) Unwrap() error { return e.Err }

// Service checks logins.
type Service struct {
	creds   Credentials
	limiter *authlimit.Limiter
	log     *slog.Logger
	// fakeSecret makes SCRAM verifiers for names that do not exist.
	fakeSecret []byte
	// hashes bounds the argon2id checks running at once, in all and per
	// client: each takes 64 MiB and a core for a tenth of a second.
	hashes *hashGate
	cache  atomic.Pointer[loginCache]
	// dummy is checked when the user does not exist (password.Dummy).
	dummy string
}

// New returns a service reading credentials from creds and limiting logins
// by policy. secret (32 bytes, kept across restarts) makes the made-up
// SCRAM verifiers of names that do not exist stable.
func New(creds Credentials, policy authlimit.Policy, secret []byte, log *slog.Logger) *Service {
	s := &Service{creds: creds, limiter: authlimit.New(policy, nil), log: log, fakeSecret: secret,
		hashes: newHashGate(max(runtime.NumCPU(), 2))}
	s.cache.Store(newLoginCache(0))
	if len(s.fakeSecret) == 0 {
		s.fakeSecret = make([]byte, 32)
		rand.Read(s.fakeSecret)
	}
	// Checked when the user does not exist, so that the time to answer does
	// not tell whether an account exists.
	s.dummy = password.Dummy()
	return s
}

// SetShared counts failed logins in sh too, so that the login limits hold
// across the nodes sharing a store.
func (s *Service) SetShared(sh authlimit.Shared) { s.limiter.SetShared(sh) }

// SetPolicy replaces the login limiter's policy (SIGHUP).
func (s *Service) SetPolicy(p authlimit.Policy) { s.limiter.SetPolicy(p) }

// SetCacheTime sets how long a proved main-password login is remembered
// (0: not at all); the cache starts empty.
func (s *Service) SetCacheTime(d time.Duration) {
	if s.cache.Load().ttl != d {
		s.cache.Store(newLoginCache(d))
	}
}

// Canonical is the name an account is counted and looked up under: the
// address with its local part in lower case, so that spellings of one name
// ("Alice@x", "\"alice\"@x") are one account.
// A name longer than any address (RFC 5321 4.5.3.1: 64 + 1 + 255 octets)
// is cut there: no account has it, and the limiter keeps no more of it.
func Canonical(user string) string {
	if len(user) > maxName {
		user = user[:maxName]
	}
	if a, err := smtp.ParseMailbox(user); err == nil {
		return strings.ToLower(a.Local) + "@" + a.Domain
	}
	return strings.ToLower(user)
}

// maxName is the longest name an account can have.
const maxName = 320

// Password checks a user name and password (SASL PLAIN and LOGIN, IMAP
// LOGIN, POP3 USER/PASS) within the login limits, and returns the login.
func (s *Service) Password(ctx context.Context, c Client, user, pw string) (string, error) {
	return s.limited(ctx, c, user, "password", func() (string, error) { return s.checkPassword(ctx, c, user, pw) })
}

// limited runs one credential check within the login limits: refused at
// once when limited, a failure answered only after the limiter's delay.
func (s *Service) limited(ctx context.Context, c Client, user, mech string, check func() (string, error)) (string, error) {
	account := Canonical(user)
	if err := s.begin(ctx, c, account); err != nil {
		return "", err
	}
	login, err := check()
	s.end(ctx, c, account, mech, err)
	return login, err
}

// busyWait bounds how long an attempt waits for one under way (from the
// same client, or for the same account from it) to end.
const busyWait = 10 * time.Second

// begin asks the limiter whether an attempt may go ahead. One beyond the
// attempts allowed under way at once waits for one to end (many right
// logins at once go through in turn; parallel guesses are held to the
// limit), for busyWait at most.
func (s *Service) begin(ctx context.Context, c Client, account string) (err error) {
	defer func() {
		if err != nil {
			metrics.Logins.WithLabelValues(c.Protocol, "limited").Inc()
		}
	}()
	deadline := time.Now().Add(busyWait)
	for {
		verdict, left := s.limiter.Begin(ctx, c.Prefix, account)
		switch verdict {
		case authlimit.Allow:
			return nil
		case authlimit.ClientBanned:
			s.log.Warn("login refused: client banned after failed logins", "protocol", c.Protocol, "client", c.Addr.String(), "user", account)
			return &LimitedError{Banned: true, RetryAfter: left}
		case authlimit.PairLocked:
			s.log.Warn("login refused: too many failed logins for this account from this client", "protocol", c.Protocol, "client", c.Addr.String(), "user", account)
			return &LimitedError{RetryAfter: left}
		}
		if time.Now().After(deadline) {
			return &LimitedError{}
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return &LimitedError{}
		}
	}
}

// end closes an attempt by its outcome; a failure waits out its delay.
func (s *Service) end(ctx context.Context, c Client, account, mech string, err error) {
	switch {
	case err == nil || errors.Is(err, ErrTooWeak): // the password was right
		metrics.Logins.WithLabelValues(c.Protocol, "ok").Inc()
		s.limiter.Succeeded(ctx, c.Prefix, account)
	case errors.Is(err, ErrBadCredentials):
		metrics.Logins.WithLabelValues(c.Protocol, "failed").Inc()
		delay := s.limiter.Failed(ctx, c.Prefix, account)
		s.log.Info("login failed", "protocol", c.Protocol, "client", c.Addr.String(), "user", account, "mechanism", mech, "delay", delay)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
		}
	default:
		metrics.Logins.WithLabelValues(c.Protocol, "error").Inc()
		s.limiter.Done(c.Prefix, account)
	}
}

// checkPassword checks an app password (unless c.MainOnly), then the main
// password.
func (s *Service) checkPassword(ctx context.Context, c Client, username, pw string) (string, error) {
	addr, err := smtp.ParseMailbox(username)
	if err != nil {
		s.argon(ctx, c, s.dummy, pw)
		return "", ErrBadCredentials
	}
	login := strings.ToLower(addr.Local) + "@" + addr.Domain
	if !c.MainOnly {
		if u, app, err := s.creds.UserByAppPassword(ctx, password.AppHash(pw)); err == nil && u.Address == login {
			s.log.Info("authenticated with an app password", "user", login, "app", app)
			return login, nil
		}
	}
	u, err := s.creds.User(ctx, login)
	hash := u.PasswordHash
	switch {
	case errors.Is(err, store.ErrNotFound) || err == nil && hash == "":
		hash = s.dummy
	case err != nil:
		return "", &TemporaryError{err}
	}
	cache := s.cache.Load()
	ok := hash != s.dummy && cache.proven(login, pw, hash, time.Now())
	if !ok {
		ok, err = s.argon(ctx, c, hash, pw)
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return "", &TemporaryError{err}
		}
		if err != nil || !ok || hash == s.dummy {
			return "", ErrBadCredentials
		}
		cache.remember(login, pw, hash, time.Now())
	}
	if u.Settings.RequireSCRAM {
		// Said only after the password was proven right, so it reveals no
		// more than a success would.
		return login, ErrTooWeak
	}
	return login, nil
}

// argon runs an argon2id check when a slot is free for the client.
func (s *Service) argon(ctx context.Context, c Client, hash, pw string) (bool, error) {
	release, err := s.hashes.acquire(ctx, c.Prefix)
	if err != nil {
		return false, err
	}
	defer release()
	return password.Check(hash, pw)
}
