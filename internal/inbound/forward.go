package inbound

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"

	"mailroom/internal/arc"
	"mailroom/internal/smtp"
	"mailroom/internal/smtpserver"
	"mailroom/internal/spool"
	"mailroom/internal/srs"
	"mailroom/internal/store"
)

// SetSRSSecret turns forwarding to other domains on: aliases may name
// addresses elsewhere, and the forwarded mail's envelope sender is
// rewritten with this secret (SRS), which also lets bounces come back.
func (b *Backend) SetSRSSecret(secret []byte) { b.srs = srs.New(secret) }

// forward queues a message's copy for the addresses at other domains that
// local aliases lead to, with its envelope sender rewritten in the
// alias's domain (SRS): SPF at the final receiver then checks us, and a
// bounce comes back to us to be sent on. Mail that failed its author's
// DMARC policy of reject is not forwarded: the receiver would refuse it
// (and count the refusal against us); nor is mail failing a policy of
// quarantine, which the receiver would count as spam from us.
func (b *Backend) forward(ctx context.Context, env *smtpserver.Transaction, orig *store.Message, msg *spool.Spool, top string, to []string, domain string, from origin) error {
	if b.srs == nil {
		return nil
	}
	if from.reject || from.junk {
		policy := "quarantine"
		if from.reject {
			policy = "reject"
		}
		b.log.Info("not forwarded: the message fails its author's DMARC policy of "+policy, "queue_id", env.QueueID, "to", strings.Join(to, ","))
		return nil
	}
	m := &store.Message{
		QueueID:      store.NewQueueID(),
		SMTPEnvelope: orig.SMTPEnvelope,
		Received:     orig.Received,
		Body:         io.MultiReader(strings.NewReader(top), msg.Reader()),
		Size:         orig.Size,
		From:         orig.From,
		Subject:      orig.Subject,
	}
	if seal := b.seal(ctx, msg, top, domain, from); seal != nil {
		m.Body = io.MultiReader(bytes.NewReader(seal), m.Body)
		m.Size += int64(len(seal))
	}
	m.SMTPEnvelope.MailFrom = b.srs.Forward(env.From.String(), domain)
	m.SMTPEnvelope.Recipients = nil
	for _, a := range to {
		_, d, _ := strings.Cut(a, "@")
		m.Remote = append(m.Remote, store.QueuedRecipient{Address: a, Domain: d})
		m.SMTPEnvelope.Recipients = append(m.SMTPEnvelope.Recipients, store.SMTPRecipient{Address: a})
	}
	if err := b.store.Accept(ctx, m); err != nil {
		return tempFailure(err)
	}
	b.log.Info("forwarded", "queue_id", env.QueueID, "forward_id", m.QueueID, "to", strings.Join(to, ","), "mail_from", m.SMTPEnvelope.MailFrom)
	if b.queued != nil {
		b.queued()
	}
	return nil
}

// reverseSRS takes a recipient that is an SRS address of ours (a bounce
// of forwarded mail, from the null sender) to the address it stands for,
// queued to go there; ok is false for any other recipient. One that looks
// like ours but is forged, too old, or not a bounce is refused.
func (b *Backend) reverseSRS(to, from smtp.Address) (any, bool, error) {
	if b.srs == nil {
		return nil, false, nil
	}
	orig, err := b.srs.Reverse(to.String())
	switch {
	case errors.Is(err, srs.ErrNotSRS):
		return nil, false, nil
	case err != nil:
		return nil, true, smtp.Errorf(550, "5.1.1", "No such user here: <%s> is not a forwarding address this server made in the last 21 days", to)
	case !from.IsNull():
		// Only bounces (and auto-replies) go back through an SRS address:
		// anything else would be relaying.
		return nil, true, smtp.Errorf(550, "5.7.1", "<%s> is a forwarding address: it takes only bounces, from the null sender (MAIL FROM:<>)", to)
	}
	addr, perr := smtp.ParseMailbox(orig)
	if perr != nil {
		return nil, true, smtp.Errorf(550, "5.1.1", "No such user here: <%s> does not lead to a valid address", to)
	}
	return store.QueuedRecipient{Address: addr.String(), Domain: strings.ToLower(addr.Domain)}, true, nil
}

// seal returns the ARC set (RFC 8617) we add to a message we forward,
// signed with the forwarding domain's RSA key: our record of its
// authentication, for receivers after us whose SPF or DMARC check the
// forwarding breaks. nil when the domain has no RSA key or the message
// cannot be read (it is forwarded unsealed: a seal is a help, not a
// condition).
func (b *Backend) seal(ctx context.Context, msg *spool.Spool, top, domain string, from origin) []byte {
	d, selector, key, err := b.dkim.RSAKey(ctx, domain)
	if err != nil {
		return nil
	}
	data, unmap, err := msg.Map()
	if err != nil {
		return nil
	}
	defer unmap()
	full := make([]byte, 0, len(top)+len(data))
	full = append(append(full, top...), data...)
	aar := b.cfg.Load().Hostname + "; none" // mail from our own senders is not checked
	if from.field != "" {
		_, v, _ := strings.Cut(from.field, ":")
		aar = strings.Join(strings.Fields(v), " ")
	}
	chain := from.arc
	if chain.Value == "" {
		chain.Value = "none"
	}
	set, err := (&arc.Sealer{Domain: d, Selector: selector, Key: key}).Seal(full, aar, chain)
	if err != nil {
		b.log.Warn("ARC: the forwarded message could not be sealed; it goes unsealed", "domain", d, "err", err)
		return nil
	}
	return set
}
