package inbound

import (
	"context"
	"slices"
	"strings"
	"time"

	"mailroom/internal/arf"
	"mailroom/internal/smtpserver"
	"mailroom/internal/spool"
	"mailroom/internal/store"
)

// readComplaint reads an abuse feedback report (ARF) sent to one of the
// complaints addresses: a report about a message this server sent (its
// queue ID in our Received field, the recipient among the message's)
// becomes a complaint event and suppresses the recipient. A report that
// names no message of ours, or no recipient of it, changes nothing: a
// forged report cannot suppress an address it does not know a message to.
func (b *Backend) readComplaint(ctx context.Context, env *smtpserver.Transaction, msg *spool.Spool, now time.Time) {
	cfg := b.cfg.Load()
	if len(cfg.ComplaintsTo) == 0 || !slices.ContainsFunc(env.Recipients, func(r smtpserver.Recipient) bool {
		return slices.Contains(cfg.ComplaintsTo, strings.ToLower(r.Addr.String()))
	}) {
		return
	}
	rep, err := arf.Parse(msg.Reader())
	if err != nil {
		return // mail to the address, not a report
	}
	if rep.FeedbackType == "not-spam" {
		return // a message taken out of the spam folder: no complaint
	}
	for _, id := range rep.QueueIDs(cfg.Hostname) {
		ms, err := b.store.LoggedMessages(ctx, store.MessageQuery{QueueID: id, Direction: store.Outbound, Limit: 1})
		if err != nil || len(ms) == 0 {
			continue
		}
		m := ms[0]
		rcpts := rep.OriginalRcptTo
		if len(rcpts) == 0 && len(m.Recipients) == 1 { // the provider redacted it, and only one can have complained
			rcpts = m.Recipients
		}
		// One complaint is one recipient's: a report naming more is read for
		// its first (a recipient who saw the message's queue ID cannot
		// suppress all its co-recipients with one report).
		rcpts = rcpts[:min(len(rcpts), 1)]
		for _, r := range rcpts {
			if !slices.ContainsFunc(m.Recipients, func(x string) bool { return strings.EqualFold(x, r) }) {
				continue
			}
			detail := "feedback-type " + rep.FeedbackType
			if rep.ReportingMTA != "" {
				detail += " from " + rep.ReportingMTA
			}
			detail = logText(detail)
			ev := store.Event{Kind: store.EventComplained, Time: now, QueueID: m.QueueID, Recipient: r, Domain: m.Domain, Detail: detail}
			if err := b.store.AddEvents(ctx, []store.Event{ev}); err != nil {
				b.log.Warn("recording a complaint", "queue_id", m.QueueID, "err", err)
				return
			}
			if cfg.ComplaintSuppressFor > 0 {
				sup := store.Suppression{Address: strings.ToLower(r), Reason: "complaint (" + detail + ")", Created: now, Until: now.Add(cfg.ComplaintSuppressFor)}
				if err := b.store.Suppress(ctx, sup); err != nil {
					b.log.Warn("suppressing a complaining recipient", "address", r, "err", err)
				}
			}
			b.log.Info("complaint", "queue_id", m.QueueID, "recipient", r, "feedback_type", rep.FeedbackType, "reporting_mta", logText(rep.ReportingMTA))
		}
		return
	}
	b.log.Info("an abuse report about no message of ours was left as mail", "reporting_mta", logText(rep.ReportingMTA))
}
