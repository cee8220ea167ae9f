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
		b.checkPassword(ctx, dummyHash(), pw)
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
	ok, err := b.checkPassword(ctx, hash, pw)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "", tempAuthFailure(err)
	}
	if err != nil || !ok || hash == dummyHash() {
		b.log.Info("authentication failed", "client", s.Remote.Addr().String(), "user", login)
		return "", errBadCredentials
	}
	return login, strongOnly(u)
}

// errTooWeak refuses the main password over a mechanism that carries it,
// for a user who must use SCRAM. It is given only after the password was
// proven right, so it reveals no more than a 235 would.
var errTooWeak = &smtp.Reply{Code: 534, Enhanced: "5.7.9",
	Text: "Authentication mechanism is too weak for this account: use SCRAM-SHA-256, or an app password"}

func strongOnly(u store.User) error {
	if u.Settings.RequireSCRAM {
		return errTooWeak
	}
	return nil
}

// checkPassword runs an argon2id check when a slot is free.
func (b *Backend) checkPassword(ctx context.Context, hash, pw string) (bool, error) {
	select {
	case b.hashSlots <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-b.hashSlots }()
	return password.Check(hash, pw)
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
	grants, err := b.store.SenderGrants(ctx, user)
	if err != nil {
		return false, err
	}
	local, domain, _ := strings.Cut(addr, "@")
	for _, g := range grants {
		if g == "*" || g == addr || g == "@"+domain {
			return true, nil
		}
	}
	// The address itself decides when it exists; only an address that is
	// neither a user nor an alias falls back to its base (user+tag), as
	// delivery does, so "alice+payroll" that is another user stays theirs.
	if ok, exists, err := b.ownsExact(ctx, user, addr); ok || exists || err != nil {
		return ok, err
	}
	if sep := b.cfg.Load().SubaddressSeparator; sep != "" {
		if base, _, found := strings.Cut(local, sep); found && base != "" {
			ok, _, err := b.ownsExact(ctx, user, base+"@"+domain)
			return ok, err
		}
	}
	return false, nil
}

// ownsExact reports whether addr is user or an alias delivering to user,
// and whether addr exists at all as a user or an alias.
func (b *Backend) ownsExact(ctx context.Context, user, addr string) (owned, exists bool, err error) {
	if addr == user {
		return true, true, nil
	}
	a, err := b.store.Alias(ctx, addr)
	switch {
	case err == nil:
		for _, t := range a.Targets {
			if strings.EqualFold(t, user) {
				return true, true, nil
			}
		}
		return false, true, nil
	case !errors.Is(err, store.ErrNotFound):
		return false, false, err
	}
	_, err = b.store.User(ctx, addr)
	switch {
	case err == nil:
		return false, true, nil
	case errors.Is(err, store.ErrNotFound):
		return false, false, nil
	}
	return false, false, err
}

// checkFromHeader applies the sender rule to the header (RFC 5322
// 3.6.2): exactly one From field, and every address in From, Sender,
// Resent-From and Resent-Sender one the user owns. It fails closed: a
// header too large to read whole, or an author field that does not parse,
// refuses the message.
func (b *Backend) checkFromHeader(ctx context.Context, user string, hdr headerInfo) error {
	switch {
	case !hdr.Complete:
		return smtp.Errorf(552, "5.6.0", "The header section is too large to check (over %d KiB)", maxHeaderScan>>10)
	case hdr.Froms > 1:
		return smtp.Errorf(550, "5.6.0", "The message has %d From header fields; RFC 5322 allows one", hdr.Froms)
	}
	for _, f := range hdr.Authors {
		addrs, ok := authorAddresses(f.Value)
		if !ok {
			return smtp.Errorf(550, "5.6.0", "The %s header field is malformed: write it like %s: Name <you@example.com>", headerName(f.Name), headerName(f.Name))
		}
		for _, a := range addrs {
			ok, err := b.owns(ctx, user, strings.ToLower(a))
			if err != nil {
				return tempFailure(err)
			}
			if !ok {
				return smtp.Errorf(553, "5.7.1", "%s: header address <%s> refused: you are logged in as %s and may send only as your own addresses", headerName(f.Name), a, user)
			}
		}
	}
	return nil
}

func headerName(lower string) string {
	parts := strings.Split(lower, "-")
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, "-")
}

// submissionFields returns the Message-ID and Date fields a submitted
// message lacks (RFC 6409 8.2, 8.3), and a From with the user's address
// when it has none (RFC 5322 3.6 requires one).
func submissionFields(hdr headerInfo, user, queueID, hostname string, now time.Time) string {
	var b strings.Builder
	if hdr.Froms == 0 {
		b.WriteString("From: <" + user + ">\r\n")
	}
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
