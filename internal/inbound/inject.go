package inbound

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"mailroom/internal/message"
	"mailroom/internal/smtp"
	"mailroom/internal/store"
)

// Inject accepts a message the server writes itself (a report), from the
// null sender to one address: local users get it in their mailbox, other
// domains through the outbound queue, with SMTPUTF8 when international
// (an RFC 6533 report). Reports to one other domain are limited per hour
// (Config.MaxReportsPerHour).
func (b *Backend) Inject(ctx context.Context, to string, body []byte, international bool) error {
	cfg := b.cfg.Load()
	addr, err := smtp.ParseMailbox(to)
	if err != nil {
		return fmt.Errorf("inject to %q: %w", to, err)
	}
	// A report on a forwarded copy goes to its SRS sender: back to the
	// original sender.
	if t, ok, err := b.reverseSRS(addr, smtp.Address{}); ok {
		if err != nil {
			return fmt.Errorf("inject to %s: %w", addr, err)
		}
		if addr, err = smtp.ParseMailbox(t.(store.QueuedRecipient).Address); err != nil {
			return fmt.Errorf("inject to %s: %w", to, err)
		}
	}
	now := time.Now()
	id := store.NewQueueID()
	top := fmt.Sprintf("Received: by %s (Mailroom) id %s;\r\n\t%s\r\n", cfg.Hostname, id, now.Format(time.RFC1123Z))
	hdr, _ := scanHeader(bytes.NewReader(body))
	local, err := b.isLocalDomain(ctx, addr.Domain)
	if err != nil {
		return err
	}
	if !local { // signed by our domain, as our users' mail is
		top += string(b.sign(ctx, hdr, "", bytes.NewReader(body)))
	}
	full := append([]byte(top), body...)
	m := &store.Message{QueueID: id, Received: now, Body: bytes.NewReader(full), Size: int64(len(full)),
		SMTPEnvelope: store.SMTPEnvelope{Recipients: []store.SMTPRecipient{{Address: addr.String()}}}, From: hdr.From, Subject: hdr.Subject}
	if slices.ContainsFunc(full, func(c byte) bool { return c >= 0x80 }) {
		m.SMTPEnvelope.Body = "8BITMIME" // sent on as such, or converted for a next hop without it
	}
	// An internationalized report (RFC 6533) needs SMTPUTF8 from the next
	// hop, as the writer of the report says.
	m.SMTPEnvelope.SMTPUTF8 = international
	// A report that says "TLS-Required: No" (a TLS report, RFC 8460 3)
	// goes whatever the recipient's TLS policies say (RFC 8689 5).
	m.SMTPEnvelope.TLSOptional = hdr.TLSOptional
	if !local { // reports to our own users are not backscatter
		if err := b.reports.allow(addr.Domain, cfg.MaxReportsPerHour, now); err != nil {
			return err
		}
	}
	if local {
		found, err := b.resolve(ctx, cfg, addr)
		if err != nil {
			return fmt.Errorf("inject to %s: %w", addr, err)
		}
		for _, u := range found.users {
			m.Local = append(m.Local, store.LocalTarget{UserID: u.ID, Mailbox: store.Inbox, Prefix: deliveryPrefix(smtp.Address{}, u.Address)})
		}
		// An alias that forwards elsewhere: the report follows (from the
		// null sender, it needs no rewriting).
		for _, f := range found.forwards {
			_, d, _ := strings.Cut(f, "@")
			m.Remote = append(m.Remote, store.QueuedRecipient{Address: f, Domain: d})
		}
		root := message.Parse(full)
		m.Summary = message.Encode(root, full[:root.BodyStart])
	} else {
		m.Remote = []store.QueuedRecipient{{Address: addr.String(), Domain: strings.ToLower(addr.Domain)}}
	}
	if err := b.store.Accept(ctx, m); err != nil {
		return err
	}
	if len(m.Remote) > 0 && b.queued != nil {
		b.queued()
	}
	return nil
}
