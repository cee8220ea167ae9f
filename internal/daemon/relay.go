package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"time"

	"mailroom/internal/config"
	"mailroom/internal/delivery"
	"mailroom/internal/dns"
	"mailroom/internal/dsn"
	"mailroom/internal/inbound"
	"mailroom/internal/queue"
	"mailroom/internal/store"
)

// startRelay starts the outbound queue's scheduler; it runs until ctx ends.
func startRelay(ctx context.Context, cfg *config.Config, st store.Store, backend *inbound.Backend, log *slog.Logger) (*queue.Runner, error) {
	resolver, err := dns.New(cfg.DNS.Resolver.String())
	if err != nil {
		return nil, err
	}
	d := delivery.New(delivery.Config{LocalName: cfg.Hostname, Port: cfg.Outbound.Port, Timeout: 5 * time.Minute}, resolver)
	var intervals []time.Duration
	for _, i := range cfg.Queue.RetryIntervals {
		intervals = append(intervals, i.D())
	}
	b := &bouncer{store: st, backend: backend, hostname: cfg.Hostname, log: log, suppressFor: cfg.Queue.SuppressFor.D()}
	b.expire = cfg.Queue.Expire.D()
	r := queue.New(st, d.Deliver, b.bounce, queue.Config{RetryIntervals: intervals, Expire: cfg.Queue.Expire.D(),
		MaxConcurrent: cfg.Outbound.MaxConcurrent, DelayWarning: cfg.Queue.DelayWarning.D()}, log)
	backend.SetQueueNotifier(r.Wake)
	return r, nil
}

// bouncer sends failure reports (RFC 3464) to the senders of messages
// that could not be delivered.
type bouncer struct {
	store       store.Store
	backend     *inbound.Backend
	hostname    string
	log         *slog.Logger
	suppressFor time.Duration // 0: no suppression list
	expire      time.Duration // for Will-Retry-Until in delay warnings
}

func (b *bouncer) bounce(ctx context.Context, failures []queue.Failure) {
	if !failures[0].Delayed {
		b.suppress(ctx, failures)
	}
	byMessage := map[int64][]queue.Failure{}
	var order []int64
	for _, f := range failures {
		if byMessage[f.Entry.MessageID] == nil {
			order = append(order, f.Entry.MessageID)
		}
		byMessage[f.Entry.MessageID] = append(byMessage[f.Entry.MessageID], f)
	}
	for _, id := range order {
		b.report(ctx, byMessage[id])
	}
}

// suppress puts addresses a next hop refused for good (5xx replies) on the
// suppression list; DNS failures and expiry are not about the address.
func (b *bouncer) suppress(ctx context.Context, failures []queue.Failure) {
	if b.suppressFor <= 0 {
		return
	}
	now := time.Now()
	for _, f := range failures {
		if !f.Result.Permanent || !strings.HasPrefix(f.Result.Detail, "5") || f.Result.RemoteMTA == "" {
			continue
		}
		sup := store.Suppression{Address: f.Entry.Recipient.Address, Reason: f.Result.Detail, Created: now, Until: now.Add(b.suppressFor)}
		if err := b.store.Suppress(ctx, sup); err != nil {
			b.log.Error("suppression list", "address", sup.Address, "err", err)
		}
	}
}

// report writes and sends one report for the failed recipients of one
// message. Never for a bounce (null sender), and not for recipients whose
// NOTIFY excludes failures (RFC 3461 4.1).
func (b *bouncer) report(ctx context.Context, fs []queue.Failure) {
	first := fs[0].Entry
	if first.MailFrom == "" {
		b.log.Info("no bounce for a message from the null sender", "queue_id", first.QueueID)
		return
	}
	r := &dsn.Report{ReportingMTA: b.hostname, To: first.MailFrom, Arrival: first.Created,
		Delayed: fs[0].Delayed, RetryUntil: first.Created.Add(b.expire)}
	want := "FAILURE"
	if r.Delayed {
		want = "DELAY"
	}
	for _, f := range fs {
		n := f.Entry.Recipient.Notify
		if len(n) > 0 && !slices.Contains(n, want) {
			continue
		}
		r.Recipients = append(r.Recipients, dsn.Recipient{Address: f.Entry.Recipient.Address, ORcpt: f.Entry.Recipient.ORcpt,
			Detail: f.Result.Detail, RemoteMTA: f.Result.RemoteMTA})
	}
	if len(r.Recipients) == 0 {
		return
	}
	env := b.envelope(first)
	r.EnvID, r.Full = env.EnvID, env.Ret == "FULL"
	original, err := b.store.OpenQueued(ctx, first.MessageID)
	if err != nil {
		b.log.Error("bounce: reading the original message", "queue_id", first.QueueID, "err", err)
		return
	}
	defer original.Close()
	var buf bytes.Buffer
	if err := r.Write(&buf, original, time.Now()); err != nil {
		b.log.Error("bounce: writing the report", "queue_id", first.QueueID, "err", err)
		return
	}
	if err := b.backend.Inject(ctx, first.MailFrom, buf.Bytes()); err != nil {
		b.log.Error("bounce: sending the report", "queue_id", first.QueueID, "to", first.MailFrom, "err", err)
		return
	}
	b.log.Info("delivery report sent", "queue_id", first.QueueID, "to", first.MailFrom, "recipients", len(r.Recipients), "delayed", r.Delayed)
}

// envelope reads the stored envelope of a queued message (RET, ENVID).
func (b *bouncer) envelope(e store.QueueEntry) store.Envelope {
	var env store.Envelope
	json.Unmarshal([]byte(e.Envelope), &env)
	return env
}
