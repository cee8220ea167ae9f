package inbound

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/xdg-go/scram"

	"mailroom/internal/password"
	"mailroom/internal/sendlimit"
	"mailroom/internal/smtp"
	"mailroom/internal/smtpserver"
	"mailroom/internal/store"
)

var _ smtpserver.Authenticator = (*Backend)(nil)

// dummyHash is checked when the user does not exist, so that the time to
// answer does not tell whether an account exists.
// (Made on first use: hashing costs a tenth of a second, which every CLI
// command would otherwise pay at start.)
var dummyHash = sync.OnceValue(func() string {
	h, _ := password.Hash("mailroom-dummy-password")
	return h
})

var errBadCredentials = &smtp.Reply{Code: 535, Enhanced: "5.7.8", Text: "Authentication credentials invalid"}

// Authenticate checks a user's password for SMTP AUTH. The login name is
// the user's address, in any case.
func (b *Backend) Authenticate(ctx context.Context, s *smtpserver.SessionInfo, username, pw string) (string, error) {
	addr, err := smtp.ParseMailbox(username)
	if err != nil {
		password.Check(dummyHash(), pw)
		return "", errBadCredentials
	}
	login := strings.ToLower(addr.Local) + "@" + addr.Domain
	if u, app, err := b.store.UserByAppPassword(ctx, password.AppHash(pw)); err == nil && u.Address == login {
		b.log.Info("authenticated with an app password", "user", login, "app", app)
		return login, nil
	}
	u, err := b.store.User(ctx, login)
	hash := u.PasswordHash
	switch {
	case errors.Is(err, store.ErrNotFound) || err == nil && hash == "":
		hash = dummyHash()
	case err != nil:
		return "", tempAuthFailure(err)
	}
	ok, err := password.Check(hash, pw)
	if err != nil || !ok || hash == dummyHash() {
		b.log.Info("authentication failed", "client", s.Remote.Addr().String(), "user", login)
		return "", errBadCredentials
	}
	return login, strongOnly(u)
}

// errTooWeak refuses the main password over a mechanism that carries it,
// for a user who must use SCRAM. It is given only after the password was
// proven right, so it tells nothing to someone guessing.
var errTooWeak = &smtp.Reply{Code: 534, Enhanced: "5.7.9",
	Text: "Authentication mechanism is too weak for this account: use SCRAM-SHA-256, or an app password"}

func strongOnly(u store.User) error {
	if u.Settings.RequireSCRAM {
		return errTooWeak
	}
	return nil
}

func tempAuthFailure(err error) error {
	return &internalError{err}
}

// checkSender enforces the sender rule of submission: an authenticated
// user may send only as an address they own.
func (b *Backend) checkSender(ctx context.Context, user string, from smtp.Address) error {
	if from.IsNull() {
		return nil // bounces and auto-replies
	}
	ok, err := b.owns(ctx, user, strings.ToLower(from.Local)+"@"+from.Domain)
	if err != nil {
		return tempFailure(err)
	}
	if !ok {
		return smtp.Errorf(553, "5.7.1", "Sender address <%s> refused: you are logged in as %s and may send only as your own addresses", from, user)
	}
	return nil
}

// owns reports whether user may send as addr: it is their address (or a
// sub-address of it), an alias that delivers to them, or an address or
// domain an admin granted them.
func (b *Backend) owns(ctx context.Context, user, addr string) (bool, error) {
	cfg := b.cfg.Load()
	candidates := []string{addr}
	if sep := cfg.SubaddressSeparator; sep != "" {
		local, domain, _ := strings.Cut(addr, "@")
		if base, _, ok := strings.Cut(local, sep); ok && base != "" {
			candidates = append(candidates, base+"@"+domain)
		}
	}
	grants, err := b.store.SenderGrants(ctx, user)
	if err != nil {
		return false, err
	}
	_, domain, _ := strings.Cut(addr, "@")
	for _, g := range grants {
		if g == "*" || g == addr || g == "@"+domain {
			return true, nil
		}
	}
	for _, c := range candidates {
		if c == user {
			return true, nil
		}
		a, err := b.store.Alias(ctx, c)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return false, err
		}
		for _, t := range a.Targets {
			if strings.EqualFold(t, user) {
				return true, nil
			}
		}
	}
	return false, nil
}

// checkFromHeader applies the sender rule to the From header field
// (RFC 5322 3.6.2): every author must be an address the user owns.
func (b *Backend) checkFromHeader(ctx context.Context, user string, hdr headerInfo) error {
	if hdr.FromRaw == "" {
		return nil // RFC 6409 8.1 lets the server leave it; nothing claimed
	}
	if len(hdr.FromAddrs) == 0 {
		return smtp.Errorf(550, "5.6.0", "The From header field is malformed: write it like From: Name <you@example.com>")
	}
	for _, a := range hdr.FromAddrs {
		ok, err := b.owns(ctx, user, strings.ToLower(a))
		if err != nil {
			return tempFailure(err)
		}
		if !ok {
			return smtp.Errorf(553, "5.7.1", "From: header address <%s> refused: you are logged in as %s and may send only as your own addresses", a, user)
		}
	}
	return nil
}

// submissionFields returns the Message-ID and Date fields a submitted
// message lacks (RFC 6409 8.2, 8.3).
func submissionFields(hdr headerInfo, queueID, hostname string, now time.Time) string {
	var b strings.Builder
	if !hdr.HasDate {
		b.WriteString("Date: " + now.Format(time.RFC1123Z) + "\r\n")
	}
	if !hdr.HasMessageID {
		b.WriteString("Message-ID: <" + queueID + "@" + hostname + ">\r\n")
	}
	return b.String()
}

var _ smtpserver.SCRAMAuthenticator = (*Backend)(nil)

// SCRAMCredentials returns a user's SCRAM-SHA-256 verifiers, or made-up
// ones for a name that does not exist or has none.
func (b *Backend) SCRAMCredentials(ctx context.Context, s *smtpserver.SessionInfo, username string) (string, scram.StoredCredentials, error) {
	login := strings.ToLower(username)
	if addr, err := smtp.ParseMailbox(username); err == nil {
		login = strings.ToLower(addr.Local) + "@" + addr.Domain
	}
	u, err := b.store.User(ctx, login)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", scram.StoredCredentials{}, tempAuthFailure(err)
	}
	if creds, perr := password.ParseSCRAM(u.SCRAMSHA256); err == nil && perr == nil {
		return login, creds, nil
	}
	return login, password.FakeSCRAM(b.fakeSecret, login), nil
}

var _ smtpserver.CRAMAuthenticator = (*Backend)(nil)

// CheckCRAMMD5 checks a CRAM-MD5 response against the user's stored
// HMAC-MD5 states. A user without them (password set while CRAM-MD5 was
// off) fails like a wrong password.
func (b *Backend) CheckCRAMMD5(ctx context.Context, s *smtpserver.SessionInfo, username, challenge, digest string) (string, error) {
	login := strings.ToLower(username)
	if addr, err := smtp.ParseMailbox(username); err == nil {
		login = strings.ToLower(addr.Local) + "@" + addr.Domain
	}
	u, err := b.store.User(ctx, login)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", tempAuthFailure(err)
	}
	if err != nil || !password.CheckCRAMMD5(u.CRAMMD5, challenge, digest) {
		b.log.Info("authentication failed", "client", s.Remote.Addr().String(), "user", login, "mechanism", "CRAM-MD5")
		return "", errBadCredentials
	}
	return login, strongOnly(u)
}

// sendLimits are the server's limits with the user's own where set.
func (b *Backend) sendLimits(ctx context.Context, user string) (sendlimit.Limits, error) {
	l := b.cfg.Load().SendLimits
	u, err := b.store.User(ctx, user)
	if err != nil {
		return l, tempFailure(err)
	}
	for _, o := range []struct {
		own int
		dst *int
	}{
		{u.Settings.MaxMessagesPerHour, &l.MessagesPerHour}, {u.Settings.MaxMessagesPerDay, &l.MessagesPerDay},
		{u.Settings.MaxRecipientsPerHour, &l.RecipientsPerHour}, {u.Settings.MaxRecipientsPerDay, &l.RecipientsPerDay},
	} {
		if o.own > 0 {
			*o.dst = o.own
		}
	}
	return l, nil
}
