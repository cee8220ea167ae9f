package inbound

import (
	"bytes"
	"context"
	"io"
	"slices"
	"time"

	"mailroom/internal/dsn"
	"mailroom/internal/smtpserver"
)

// reportDelivered sends the sender a "delivered" report (RFC 3461 4.1,
// RFC 3464) for the local recipients whose NOTIFY asked for SUCCESS. It
// runs after the message is committed; should it fail, the message stays
// delivered and the failure is logged. smtputf8 says whether the message
// needs SMTPUTF8 (not merely whether the client gave it).
func (b *Backend) reportDelivered(ctx context.Context, env *smtpserver.Transaction, arrival time.Time, original io.Reader, size int64, smtputf8 bool) {
	if env.From.IsNull() {
		return
	}
	cfg := b.cfg.Load()
	r := &dsn.Report{ReportingMTA: cfg.Hostname, To: env.From.String(), EnvID: env.Params.EnvID,
		Arrival: arrival, Action: dsn.Delivered, ReturnLimit: cfg.ReportSizeLimit, OriginalSize: size, EightBit: env.Params.Body == "8BITMIME", SMTPUTF8: smtputf8}
	for _, rc := range env.Recipients {
		if found, isLocal := rc.Target.(local); isLocal && len(found.users) > 0 && slices.Contains(rc.Params.Notify, "SUCCESS") {
			r.Recipients = append(r.Recipients, dsn.Recipient{Address: rc.Addr.String(), ORcpt: rc.Params.ORcpt,
				Detail: "2.0.0 delivered to the mailbox"}) // no SMTP reply: not "smtp; 250"
		}
	}
	if len(r.Recipients) == 0 {
		return
	}
	var buf bytes.Buffer
	err := r.Write(&buf, original, time.Now())
	if err == nil {
		err = b.Inject(context.WithoutCancel(ctx), r.To, buf.Bytes(), r.International())
	}
	if err != nil {
		b.log.Error("success report not sent", "queue_id", env.QueueID, "to", r.To, "err", err)
		return
	}
	b.log.Info("delivery report sent", "queue_id", env.QueueID, "to", r.To, "recipients", len(r.Recipients), "action", dsn.Delivered)
}
