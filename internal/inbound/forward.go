package inbound

import (
	"context"
	"errors"
	"io"
	"strings"

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
// (and count the refusal against us).
func (b *Backend) forward(ctx context.Context, env *smtpserver.Transaction, orig *store.Message, msg *spool.Spool, top string, to []string, domain string, from origin) error {
	if b.srs == nil {
		return nil
	}
	if from.reject {
		b.log.Info("not forwarded: the message fails its author's DMARC policy of reject", "queue_id", env.QueueID, "to", strings.Join(to, ","))
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
// of forwarded mail) to the address it stands for, queued to go there;
// ok is false for any other recipient. One that looks like ours but is
// forged or too old is refused.
func (b *Backend) reverseSRS(to smtp.Address) (any, bool, error) {
	if b.srs == nil {
		return nil, false, nil
	}
	orig, err := b.srs.Reverse(to.String())
	switch {
	case errors.Is(err, srs.ErrNotSRS):
		return nil, false, nil
	case err != nil:
		return nil, true, smtp.Errorf(550, "5.1.1", "No such user here: <%s> is not a forwarding address this server made in the last 21 days", to)
	}
	addr, perr := smtp.ParseMailbox(orig)
	if perr != nil {
		return nil, true, smtp.Errorf(550, "5.1.1", "No such user here: <%s> does not lead to a valid address", to)
	}
	return store.QueuedRecipient{Address: addr.String(), Domain: strings.ToLower(addr.Domain)}, true, nil
}
