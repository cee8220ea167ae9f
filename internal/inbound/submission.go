package inbound

import (
	"context"
	"errors"
	"strings"
	"time"

	"mailroom/internal/sendlimit"
	"mailroom/internal/smtp"
	"mailroom/internal/store"
)

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
	_, domain, _ := strings.Cut(addr, "@")
	switch { // API keys of a domain, or of the server
	case strings.HasPrefix(user, "@"):
		return strings.EqualFold(domain, user[1:]), nil
	case user == "*":
		return b.isLocalDomain(ctx, strings.ToLower(domain))
	}
	grants, err := b.store.SenderGrants(ctx, user)
	if err != nil {
		return false, err
	}
	local, _, _ := strings.Cut(addr, "@")
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
// when it has none (RFC 5322 3.6 requires one): author's, the user's or
// (for a key with no address of its own) the envelope sender's.
func submissionFields(hdr headerInfo, author, queueID, hostname string, now time.Time) string {
	var b strings.Builder
	if hdr.Froms == 0 && author != "" {
		b.WriteString("From: <" + author + ">\r\n")
	}
	if !hdr.HasDate {
		b.WriteString("Date: " + now.Format(time.RFC1123Z) + "\r\n")
	}
	if !hdr.HasMessageID {
		b.WriteString("Message-ID: <" + queueID + "@" + hostname + ">\r\n")
	}
	return b.String()
}

// sendLimits are the server's limits with the user's own where set.
func (b *Backend) sendLimits(ctx context.Context, user string) (sendlimit.Limits, error) {
	l := b.cfg.Load().SendLimits
	if strings.HasPrefix(user, "@") || user == "*" {
		return l, nil // an API key of a domain or of the server: the server's limits, counted apart
	}
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
