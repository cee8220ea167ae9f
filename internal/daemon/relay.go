package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"mailroom/internal/certs"
	"mailroom/internal/config"
	"mailroom/internal/delivery"
	"mailroom/internal/dkim"
	"mailroom/internal/dns"
	"mailroom/internal/dsn"
	"mailroom/internal/inbound"
	"mailroom/internal/mtasts"
	"mailroom/internal/queue"
	"mailroom/internal/store"
)

// queueWatcher is a store that says when another process made queue
// entries due.
type queueWatcher interface{ OnQueueDue(func()) }

// relay is the outbound side: the queue's scheduler, the deliverer and the
// reports to senders.
type relay struct {
	runner    *queue.Runner
	deliverer *delivery.Deliverer
	bouncer   *bouncer
	roots     *x509.CertPool // [outbound] ca_file's CAs at start (nil: the system's)
}

// startRelay prepares the outbound queue's scheduler; run runs it.
func startRelay(cfg *config.Config, st store.Store, backend *inbound.Backend, resolver *dns.Resolver, log *slog.Logger) (*relay, error) {
	dcfg, err := deliveryConfig(cfg)
	if err != nil {
		return nil, err
	}
	b := &bouncer{store: st, backend: backend, log: log}
	b.set(cfg)
	r := &relay{deliverer: delivery.New(dcfg, resolver), bouncer: b, roots: dcfg.Roots}
	r.deliverer.SetResigner(dkim.NewSigner(st).Resign)
	if cfg.Outbound.MTASTS {
		// The fetcher keeps the policies seen: made once, not at each
		// reload; its certificate authorities are those at start.
		f := mtasts.NewFetcher(resolver, dcfg.Roots, cfg.Outbound.MTASTSPort)
		f.KeepIn(st) // policies outlive a restart
		r.deliverer.SetMTASTS(f)
	}
	r.runner = queue.New(st, r.deliverer.Deliver, b.notify, queueConfig(cfg), log)
	backend.SetQueueNotifier(r.runner.Wake)
	if w, ok := st.(queueWatcher); ok {
		w.OnQueueDue(r.runner.Wake) // queue retry and release from the CLI
	}
	return r, nil
}

// run schedules deliveries until ctx ends.
func (r *relay) run(ctx context.Context) {
	r.runner.Run(ctx)
	r.deliverer.Close()
}

// check builds what apply would apply, reporting what is wrong with it
// (a smart host's unreadable password file) before anything changes.
func (r *relay) check(cfg *config.Config) error {
	_, err := deliveryConfig(cfg)
	return err
}

// apply takes [outbound] and [queue] from cfg (SIGHUP).
func (r *relay) apply(cfg *config.Config) error {
	dcfg, err := deliveryConfig(cfg)
	if err != nil {
		return err
	}
	r.deliverer.SetConfig(dcfg)
	r.runner.SetConfig(queueConfig(cfg))
	r.bouncer.set(cfg)
	return nil
}

func queueConfig(cfg *config.Config) queue.Config {
	var intervals []time.Duration
	for _, i := range cfg.Queue.RetryIntervals {
		intervals = append(intervals, i.D())
	}
	return queue.Config{RetryIntervals: intervals, Expire: cfg.Queue.Expire.D(),
		MaxConcurrent: cfg.Outbound.MaxConcurrent, MaxPerDestination: cfg.Outbound.MaxPerDestination,
		RateLimits: cfg.Outbound.RateLimits, DelayWarning: cfg.Queue.DelayWarning.D(), Lease: cfg.Queue.ClaimLease.D()}
}

func deliveryConfig(cfg *config.Config) (delivery.Config, error) {
	dcfg := delivery.Config{LocalName: cfg.Hostname, Port: cfg.Outbound.Port, Timeout: 5 * time.Minute, IdleTime: cfg.Outbound.ConnectionCacheTime.D(),
		SpoolDir: filepath.Join(cfg.DataDir, "tmp")}
	if dcfg.IdleTime == 0 {
		dcfg.IdleTime = -1 // 0 in the configuration turns reuse off
	}
	var err error
	if dcfg.Relays, err = relays(cfg.Outbound.Relay); err != nil {
		return dcfg, err
	}
	if cfg.Outbound.CAFile != "" {
		if dcfg.Roots, err = certs.Pool(cfg.Outbound.CAFile, "outbound.ca_file"); err != nil {
			return dcfg, err
		}
	}
	for _, p := range cfg.Outbound.Pool {
		sp := delivery.SourcePool{Name: p.Name, Senders: p.Senders}
		for _, a := range p.Addresses {
			sp.Addrs = append(sp.Addrs, netip.Addr(a))
		}
		dcfg.Pools = append(dcfg.Pools, sp)
	}
	return dcfg, nil
}

// relays turns the configured smart hosts into routes, reading their
// certificate authorities and passwords.
func relays(cfgs []config.Relay) ([]delivery.Relay, error) {
	var out []delivery.Relay
	for i, c := range cfgs {
		r := delivery.Relay{Domains: c.Domains, Host: c.Host, Port: c.Port, ImplicitTLS: c.TLS == "implicit", Username: c.Username}
		if c.TLS != "none" {
			r.TLS = &tls.Config{ServerName: c.Host, MinVersion: tls.VersionTLS12}
			if c.CAFile != "" {
				pool, err := certs.Pool(c.CAFile, fmt.Sprintf("outbound.relay[%d].ca_file", i))
				if err != nil {
					return nil, err
				}
				r.TLS.RootCAs = pool
			}
		}
		if c.PasswordFile != "" {
			pw, err := os.ReadFile(c.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("outbound.relay[%d].password_file: %w (make it readable by the user mailroom runs as)", i, err)
			}
			r.Password, _, _ = strings.Cut(string(pw), "\n")
			r.Password = strings.TrimSuffix(r.Password, "\r")
		}
		out = append(out, r)
	}
	return out, nil
}

// bouncer sends failure reports (RFC 3464) to the senders of messages
// that could not be delivered.
type bouncer struct {
	store    store.Store
	backend  *inbound.Backend
	log      *slog.Logger
	settings atomic.Pointer[bounceSettings]
}

// bounceSettings are the bouncer's part of the configuration.
type bounceSettings struct {
	hostname    string
	returnLimit int64         // what a report returns of the original at most
	suppressFor time.Duration // 0: no suppression list
	expire      time.Duration // for Will-Retry-Until in delay warnings
}

func (b *bouncer) set(cfg *config.Config) {
	b.settings.Store(&bounceSettings{hostname: cfg.Hostname, suppressFor: cfg.Queue.SuppressFor.D(), expire: cfg.Queue.Expire.D(),
		returnLimit: int64(cfg.Queue.ReportSizeLimit)})
}

func (b *bouncer) notify(ctx context.Context, failures []queue.Notice) {
	if failures[0].Action == dsn.Failed {
		b.suppress(ctx, failures)
	}
	byMessage := map[int64][]queue.Notice{}
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
func (b *bouncer) suppress(ctx context.Context, failures []queue.Notice) {
	suppressFor := b.settings.Load().suppressFor
	if suppressFor <= 0 {
		return
	}
	now := time.Now()
	for _, f := range failures {
		if !f.Result.Permanent || !strings.HasPrefix(f.Result.Detail, "5") || f.Result.RemoteMTA == "" {
			continue
		}
		sup := store.Suppression{Address: f.Entry.Recipient.Address, Reason: f.Result.Detail, Created: now, Until: now.Add(suppressFor)}
		if err := b.store.Suppress(ctx, sup); err != nil {
			b.log.Error("suppression list", "address", sup.Address, "err", err)
		}
	}
}

// report writes and sends one report for recipients of one message.
// Never for a bounce (null sender), and only for recipients whose NOTIFY
// asks for it (RFC 3461 4.1: no NOTIFY means failures and delays).
func (b *bouncer) report(ctx context.Context, fs []queue.Notice) {
	first := fs[0].Entry
	if first.MailFrom == "" {
		b.log.Info("no bounce for a message from the null sender", "queue_id", first.QueueID)
		return
	}
	set := b.settings.Load()
	r := &dsn.Report{ReportingMTA: set.hostname, To: first.MailFrom, Arrival: first.Created,
		Action: fs[0].Action, RetryUntil: first.Created.Add(set.expire), ReturnLimit: set.returnLimit, OriginalSize: first.Size}
	want := map[string]string{dsn.Failed: "FAILURE", dsn.Delayed: "DELAY", dsn.Relayed: "SUCCESS"}[r.Action]
	for _, f := range fs {
		n := f.Entry.Recipient.Notify
		if len(n) == 0 && want != "SUCCESS" || slices.Contains(n, want) {
			r.Recipients = append(r.Recipients, dsn.Recipient{Address: f.Entry.Recipient.Address, ORcpt: f.Entry.Recipient.ORcpt,
				Detail: f.Result.Detail, RemoteMTA: f.Result.RemoteMTA})
		}
	}
	if len(r.Recipients) == 0 {
		return
	}
	env := first.SMTPEnvelope
	// RET=FULL asks for the whole message back with a failure only (RFC
	// 3461 4.3): a delay warning or a success report returns the header.
	// A REQUIRETLS message (RFC 8689) is not returned whole: the report
	// may travel without the protection its sender asked for.
	r.EnvID, r.Full = env.EnvID, env.Ret == "FULL" && r.Action == dsn.Failed && !env.RequireTLS
	r.EightBit, r.SMTPUTF8 = env.Body == "8BITMIME", env.SMTPUTF8
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
	if err := b.backend.Inject(ctx, first.MailFrom, buf.Bytes(), r.International()); err != nil {
		b.log.Error("bounce: sending the report", "queue_id", first.QueueID, "to", first.MailFrom, "err", err)
		return
	}
	b.log.Info("delivery report sent", "queue_id", first.QueueID, "to", first.MailFrom, "recipients", len(r.Recipients), "action", r.Action)
}
