// Package queue runs the outbound queue: it claims due entries from the
// store, delivers each message once per destination domain, within
// limits in all, per domain and per minute, taking domains in turn, and
// records the outcome: delivered, deferred with exponential backoff and
// jitter, or failed (refused for good, or expired) with a report to the
// sender. The store's index finds the next due entry, so a large deferred
// queue costs nothing while idle.
package queue

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"mailroom/internal/delivery"
	"mailroom/internal/dsn"
	"mailroom/internal/metrics"
	"mailroom/internal/smtp"
	"mailroom/internal/store"
)

// Config is the retry policy and the limits.
type Config struct {
	RetryIntervals    []time.Duration // after attempt n, wait RetryIntervals[n-1]; the last repeats
	Expire            time.Duration   // after this long in the queue, a recipient fails
	DelayWarning      time.Duration   // warn the sender once after this long in the queue; 0: never
	MaxConcurrent     int             // deliveries at once, in all
	MaxPerDestination int             // deliveries at once to one domain
	// RateLimits caps the messages per minute to a domain ("*": to every
	// domain not listed); a domain at its limit waits, others go on.
	RateLimits map[string]float64
	// Backlog is how many claimed entries wait in memory for a free slot;
	// the rest stay in the store until there is room.
	Backlog int
	// Lease is how long a claim lasts unless renewed; the runner renews
	// the claims of the entries it holds every third of it, so that
	// another node takes a dead node's entries soon after, while a
	// delivery may take as long as it needs. 0 means 3 minutes.
	Lease time.Duration
}

// Notice is a recipient the sender is told about: failed for good, still
// waiting long after it was queued, or (NOTIFY=SUCCESS) relayed to a next
// hop that does not report on delivery itself.
type Notice struct {
	Entry  store.QueueEntry
	Result delivery.Outcome
	Action string // dsn.Failed, dsn.Delayed or dsn.Relayed
}

// job is one message for one domain.
type job struct {
	entries []store.QueueEntry
}

// destination is a domain's jobs waiting for a slot, and its limits.
type destination struct {
	name    string
	jobs    []*job
	active  int
	limiter *rate.Limiter // nil: no rate limit
}

// Runner is the queue's scheduler. It claims due entries from the store
// in batches, keeps them per destination domain, and starts deliveries
// in turn across destinations within the limits: in all, per domain, and
// per minute.
type Runner struct {
	store   store.Queue
	deliver func(context.Context, delivery.Job) []delivery.Outcome
	notify  func(context.Context, []Notice)
	cfg     atomic.Pointer[Config] // replaced on SIGHUP (SetConfig)
	log     *slog.Logger
	now     func() time.Time

	wake   chan struct{}
	queued atomic.Bool // Wake was called: new mail may be due
	more   bool        // the last claim was cut short by the backlog's room
	retry  time.Time   // the earliest retry of entries deferred since the last look
	mu     sync.Mutex
	dests  map[string]*destination
	turn   []string // destinations with waiting jobs, in turn order
	// known are the entries claimed and not yet finished, by row ID, with
	// their message's queue ID: the store reuses the row IDs of deleted
	// entries, so an ID alone may name a new entry.
	known   map[int64]string
	waiting int // entries in waiting jobs
	// started: entries of jobs started and not yet done, their attempt
	// under way or their outcomes being recorded (which holds no slot).
	// They count against the backlog, which so bounds every claimed entry
	// held in memory.
	started int
	active  int // deliveries under way
}

// New returns a runner; notify is told of recipients the sender should
// hear about (a failure, a delay, a relay without DSN).
func New(st store.Queue, deliver func(context.Context, delivery.Job) []delivery.Outcome, notify func(context.Context, []Notice), cfg Config, log *slog.Logger) *Runner {
	r := &Runner{store: st, deliver: deliver, notify: notify, log: log, now: time.Now,
		wake: make(chan struct{}, 1), dests: map[string]*destination{}, known: map[int64]string{}}
	r.cfg.Store(withDefaults(cfg))
	return r
}

func withDefaults(cfg Config) *Config {
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 100
	}
	if cfg.MaxPerDestination <= 0 {
		cfg.MaxPerDestination = 20
	}
	if cfg.Backlog <= 0 {
		cfg.Backlog = 2000
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 3 * time.Minute
	}
	if len(cfg.RetryIntervals) == 0 {
		cfg.RetryIntervals = []time.Duration{time.Minute}
	}
	return &cfg
}

// SetConfig replaces the limits, rate limits and retry schedule (SIGHUP):
// they apply to deliveries started and outcomes recorded from now on.
func (r *Runner) SetConfig(cfg Config) {
	c := withDefaults(cfg)
	r.mu.Lock()
	old := r.cfg.Swap(c)
	for name, d := range r.dests {
		if old.perMinute(name) != c.perMinute(name) { // an unchanged limit keeps its state
			d.limiter = c.limiter(name)
		}
	}
	r.mu.Unlock()
	r.nudge() // higher limits may let waiting jobs start
}

// limiter returns the rate limiter of a destination, or nil for none.
func (c *Config) limiter(name string) *rate.Limiter {
	if perMinute := c.perMinute(name); perMinute > 0 {
		return rate.NewLimiter(rate.Limit(perMinute/60), 1)
	}
	return nil
}

// perMinute is a destination's rate limit (0: none).
func (c *Config) perMinute(name string) float64 {
	if perMinute, ok := c.RateLimits[name]; ok {
		return perMinute
	}
	return c.RateLimits["*"]
}

// Wake makes the runner look for due entries now (a message was queued).
func (r *Runner) Wake() {
	r.queued.Store(true)
	r.nudge()
}

// nudge makes the runner start waiting jobs (a slot came free).
func (r *Runner) nudge() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run schedules deliveries until ctx ends, then waits for those under way
// and gives back the claims of jobs that did not start. It first releases
// the claims this node held when it stopped last: those deliveries may
// have been cut short, so they are made again (at least once).
func (r *Runner) Run(ctx context.Context) {
	if err := r.store.ReleaseClaims(ctx, nil, r.now()); err != nil && ctx.Err() == nil {
		r.log.Error("queue: releasing the claims of the last run", "err", err)
	}
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		r.releaseWaiting(context.WithoutCancel(ctx))
	}()
	wg.Go(func() { r.renew(ctx) })
	look := true // at the store: at start, when woken, when a timer fires
	var next time.Time
	// Once ctx has ended nothing is claimed or started, even when a slot
	// came free meanwhile (the select below may take the wake-up first): a
	// job started then would fail at once and count an attempt for a
	// message never tried.
	for ctx.Err() == nil {
		if look || r.queued.Swap(false) || r.more {
			r.mu.Lock()
			r.retry = time.Time{}
			r.mu.Unlock()
			next = time.Time{}
			// With the backlog full, entries already due wait for room,
			// which a finished delivery makes (and wakes the runner):
			// a timer for them would only spin.
			if r.fill(ctx) {
				if n, ok, err := r.store.NextDue(ctx); err == nil && ok {
					next = n
				}
			}
		}
		wait := r.start(ctx, &wg)
		r.mu.Lock()
		for _, t := range []time.Time{next, r.retry} {
			if !t.IsZero() {
				wait = min(wait, max(time.Until(t), 0))
			}
		}
		r.mu.Unlock()
		t := time.NewTimer(wait)
		look = false
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.wake:
		case <-t.C:
			look = true
		}
		t.Stop()
	}
}

// renew extends the claims of the entries this runner holds (waiting or
// under way) every third of the lease, until ctx ends.
func (r *Runner) renew(ctx context.Context) {
	for {
		lease := r.cfg.Load().Lease
		select {
		case <-ctx.Done():
			return
		case <-time.After(lease / 3):
		}
		r.mu.Lock()
		ids := make([]int64, 0, len(r.known))
		for id := range r.known {
			ids = append(ids, id)
		}
		r.mu.Unlock()
		if err := r.store.RenewClaims(ctx, ids, r.now().Add(lease)); err != nil && ctx.Err() == nil {
			r.log.Warn("queue: renewing the claims under way (another node may take them when they run out)", "entries", len(ids), "err", err)
		}
	}
}

// fill claims due entries while there is room in the backlog, and sorts
// them into jobs per destination. It reports whether it had room.
func (r *Runner) fill(ctx context.Context) bool {
	r.mu.Lock()
	cfg := r.cfg.Load()
	room := cfg.Backlog - r.waiting - r.started
	r.mu.Unlock()
	if room < cfg.Backlog/4 {
		r.more = true
		return false // plenty waiting; claim in larger batches later
	}
	due, err := r.store.ClaimDue(ctx, r.now(), cfg.Lease, room)
	r.more = len(due) == room // there may be more due
	if err != nil {
		if ctx.Err() == nil {
			r.log.Error("queue: claiming due entries", "err", err)
		}
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	byMessage := map[string]*job{}
	for _, e := range due {
		if r.known[e.ID] == e.QueueID {
			continue // its earlier claim ran out while it waited here
		}
		r.known[e.ID] = e.QueueID
		r.waiting++
		k := e.QueueID + "|" + e.Recipient.Domain
		if j := byMessage[k]; j != nil {
			j.entries = append(j.entries, e)
			continue
		}
		j := &job{entries: []store.QueueEntry{e}}
		byMessage[k] = j
		d := r.dest(e.Recipient.Domain)
		if len(d.jobs) == 0 {
			r.turn = append(r.turn, d.name)
		}
		d.jobs = append(d.jobs, j)
	}
	return true
}

// dest returns the state of a destination, made on first use.
func (r *Runner) dest(name string) *destination {
	d := r.dests[name]
	if d == nil {
		d = &destination{name: name, limiter: r.cfg.Load().limiter(name)}
		r.dests[name] = d
	}
	return d
}

// start starts waiting jobs, taking destinations in turn, until the slots
// are full or every destination with jobs is at its limit. It returns how
// long until a rate-limited destination may go on (a minute if none).
func (r *Runner) start(ctx context.Context, wg *sync.WaitGroup) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	wait := time.Minute
	cfg := r.cfg.Load()
	for progress := true; progress && r.active < cfg.MaxConcurrent; {
		progress = false
		var keep []string
		for i, name := range r.turn {
			d := r.dests[name]
			if r.active >= cfg.MaxConcurrent {
				keep = append(keep, r.turn[i:]...)
				break
			}
			if d.active >= cfg.MaxPerDestination {
				keep = append(keep, name)
				continue
			}
			if d.limiter != nil {
				now := time.Now()
				if tokens := d.limiter.TokensAt(now); tokens < 1 {
					wait = min(wait, time.Duration((1-tokens)/float64(d.limiter.Limit())*float64(time.Second))+time.Millisecond)
					keep = append(keep, name)
					continue
				}
				d.limiter.AllowN(now, 1)
			}
			j := d.jobs[0]
			d.jobs = d.jobs[1:]
			d.active++
			r.active++
			r.waiting -= len(j.entries)
			r.started += len(j.entries)
			progress = true
			if len(d.jobs) > 0 {
				keep = append(keep, name)
			}
			wg.Go(func() {
				retry := r.work(ctx, j.entries, func() { r.leave(d) })
				r.done(j, retry)
			})
		}
		r.turn = keep
	}
	r.gc()
	return wait
}

// leave gives back a job's slots, its destination's and the one in all,
// once its attempt has ended. The limits bound attempts under way: the
// recording of their outcomes that follows (a commit, which waits its turn
// under load) holds no slot, or a busy destination waited on our own disk
// instead of its next hop. Its entries still count against the backlog.
func (r *Runner) leave(d *destination) {
	r.mu.Lock()
	d.active--
	r.active--
	r.mu.Unlock()
	r.nudge()
}

// done ends a job once its outcomes are recorded and lets the scheduler go
// on; retry is when a deferred entry of the job is due again, or zero.
func (r *Runner) done(j *job, retry time.Time) {
	r.mu.Lock()
	if !retry.IsZero() && (r.retry.IsZero() || retry.Before(r.retry)) {
		r.retry = retry
	}
	r.started -= len(j.entries)
	for _, e := range j.entries {
		if r.known[e.ID] == e.QueueID {
			delete(r.known, e.ID)
		}
	}
	r.mu.Unlock()
	r.nudge()
}

// gc forgets destinations with nothing waiting or under way, unless they
// are rate limited (their limiter remembers recent sends).
func (r *Runner) gc() {
	if len(r.dests) < 1000 {
		return
	}
	for name, d := range r.dests {
		if d.active == 0 && len(d.jobs) == 0 && d.limiter == nil {
			delete(r.dests, name)
		}
	}
}

// releaseWaiting gives back the claims of jobs that did not start, so
// they are due at once when the queue runs again.
func (r *Runner) releaseWaiting(ctx context.Context) {
	r.mu.Lock()
	var ids []int64
	for _, d := range r.dests {
		for _, j := range d.jobs {
			for _, e := range j.entries {
				ids = append(ids, e.ID)
			}
		}
		d.jobs = nil
	}
	r.turn, r.waiting = nil, 0
	r.mu.Unlock()
	if len(ids) > 0 {
		if err := r.store.ReleaseClaims(ctx, ids, r.now()); err != nil {
			r.log.Error("queue: releasing claims at shutdown (they run out after the lease)", "err", err)
		}
	}
}

// work delivers one message to one domain and records the outcomes,
// calling attempted once the attempt has ended, before the recording. It
// returns the earliest next attempt of the entries it deferred, or zero.
func (r *Runner) work(ctx context.Context, entries []store.QueueEntry, attempted func()) (retry time.Time) {
	first := entries[0]
	env := first.SMTPEnvelope
	job := delivery.Job{Domain: first.Recipient.Domain, MailFrom: first.MailFrom, Size: first.Size,
		Ret: env.Ret, EnvID: env.EnvID, EightBit: env.Body == "8BITMIME", SMTPUTF8: env.SMTPUTF8,
		RequireTLS: env.RequireTLS, TLSOptional: env.TLSOptional && !env.RequireTLS,
		Open: func() (io.ReadCloser, error) { return r.store.OpenQueued(ctx, first.MessageID) }}
	for _, e := range entries {
		job.Recipients = append(job.Recipients, delivery.Recipient{Address: e.Recipient.Address, Params: rcptParams(e.Recipient)})
	}
	// The connection serves its next message only once these outcomes are
	// on record: a crash then repeats at most one answered transaction per
	// connection.
	var release func()
	job.Held = func(f func()) { release = f }
	defer func() {
		if release != nil {
			release()
		}
	}()
	start := time.Now()
	outcomes := r.deliver(ctx, job)
	attempted()
	took := time.Since(start).Seconds()
	dest := metrics.Destination(first.Recipient.Domain)
	now, cfg := r.now(), r.cfg.Load()
	results := make([]store.QueueResult, len(entries))
	var failed, delayed, relayed []Notice
	for i, e := range entries {
		o := outcomes[i]
		res := store.QueueResult{ID: e.ID, Error: o.Detail}
		switch {
		case o.Delivered:
			res.State = store.StateDelivered
			// RFC 3461 5.2.2: a next hop that took the DSN parameters
			// reports success itself; else we say it was relayed.
			if !o.DSN && slices.Contains(e.Recipient.Notify, "SUCCESS") {
				relayed = append(relayed, Notice{Entry: e, Result: o, Action: dsn.Relayed})
			}
		case o.Permanent:
			res.State = store.StateFailed
		case now.Sub(e.Created) >= cfg.Expire:
			res.State = store.StateFailed
			o.Detail = "4.4.7 expired after " + cfg.Expire.String() + " in the queue; last error: " + o.Detail
			res.Error = o.Detail
		default:
			res.State, res.NextAttempt = store.StateDeferred, now.Add(cfg.backoff(e.Attempts+1))
			if retry.IsZero() || res.NextAttempt.Before(retry) {
				retry = res.NextAttempt
			}
			if cfg.DelayWarning > 0 && !e.Warned && now.Sub(e.Created) >= cfg.DelayWarning {
				res.Warned = true
				delayed = append(delayed, Notice{Entry: e, Result: o, Action: dsn.Delayed})
			}
		}
		if res.State == store.StateFailed {
			failed = append(failed, Notice{Entry: e, Result: o, Action: dsn.Failed})
		}
		res.Event = resultEvent(e, res, o, now)
		results[i] = res
		metrics.Deliveries.WithLabelValues(res.State, dest).Inc()
		if res.State != store.StateDeferred {
			metrics.DeliveryDelaySeconds.WithLabelValues(res.State).Observe(max(0, now.Sub(e.Created).Seconds()))
		}
		r.log.Info("delivery", "queue_id", e.QueueID, "to", e.Recipient.Address, "state", res.State, "detail", o.Detail,
			"remote", o.RemoteMTA, "tls", o.TLS, "attempt", e.Attempts+1)
	}
	metrics.AttemptSeconds.WithLabelValues(results[0].State).Observe(took) // one attempt, whatever its recipients
	// Report first, while the message is still there to quote; should
	// recording fail, the attempt and so the report may come again (at
	// least once, never lost).
	if r.notify != nil {
		for _, ns := range [][]Notice{failed, delayed, relayed} {
			if len(ns) > 0 {
				r.notify(context.WithoutCancel(ctx), ns)
			}
		}
	}
	if err := r.store.RecordResults(context.WithoutCancel(ctx), results); err != nil {
		r.log.Error("queue: recording results (the attempt will be repeated)", "queue_id", first.QueueID, "err", err)
	}
	return retry
}

// resultEvent is the event an attempt's result records: delivered with
// the next hop's reply, deferred with the reason (delayed when the sender
// is warned of the delay with it), bounced (hard when the address is at
// fault, else soft) or expired.
func resultEvent(e store.QueueEntry, res store.QueueResult, o delivery.Outcome, now time.Time) *store.Event {
	ev := &store.Event{Time: now, QueueID: e.QueueID, Recipient: e.Recipient.Address, Domain: senderDomain(e.MailFrom),
		Detail: o.Detail, Remote: o.RemoteMTA, Attempt: e.Attempts + 1}
	switch {
	case res.State == store.StateDelivered:
		ev.Kind = store.EventDelivered
	case res.State == store.StateDeferred && res.Warned:
		ev.Kind = store.EventDelayed // the sender is told now (RFC 3464 delay)
	case res.State == store.StateDeferred:
		ev.Kind = store.EventDeferred
	case !o.Permanent:
		ev.Kind, ev.Class = store.EventExpired, "soft"
	default:
		ev.Kind, ev.Class = store.EventBounced, BounceClass(o.Detail)
	}
	return ev
}

// BounceClass classifies a permanent failure by its enhanced status code
// (RFC 3463): "hard" when the address is at fault (5.1.x: no such
// mailbox, no such domain, bad syntax, but for 5.1.7 and 5.1.8, the
// sender's; 5.2.1: the mailbox is disabled), and
// sending to it again would fail again; "soft" otherwise (policy, content,
// size, a full mailbox, the network).
func BounceClass(detail string) string {
	code := detail
	if len(code) > 4 && code[3] == ' ' && code[0] >= '0' && code[0] <= '9' {
		code = code[4:] // "550 5.1.1 ..."
	}
	code, _, _ = strings.Cut(code, " ")
	switch {
	case code == "5.1.7" || code == "5.1.8": // the sender's address is at fault, not the recipient's
		return "soft"
	case strings.HasPrefix(code, "5.1.") || code == "5.2.1":
		return "hard"
	}
	return "soft"
}

// senderDomain is the domain of an envelope sender, lower case; "" for the
// null sender.
func senderDomain(mailFrom string) string {
	_, d, _ := strings.Cut(mailFrom, "@")
	return strings.ToLower(d)
}

// backoff is the wait after attempt n, with ±10% jitter so that a burst
// of deferrals does not come back all at once.
func (c *Config) backoff(n int) time.Duration {
	d := c.RetryIntervals[min(n, len(c.RetryIntervals))-1]
	jitter := time.Duration(rand.Int64N(int64(d)/5+1)) - d/10
	return d + jitter
}

// rcptParams writes a recipient's DSN parameters (RFC 3461 4.1, 4.2).
func rcptParams(q store.QueuedRecipient) string {
	var p []string
	if len(q.Notify) > 0 {
		p = append(p, "NOTIFY="+strings.Join(q.Notify, ","))
	}
	if q.ORcpt != "" {
		typ, addr, _ := strings.Cut(q.ORcpt, ";")
		p = append(p, "ORCPT="+typ+";"+smtp.EncodeXtext(addr))
	}
	return strings.Join(p, " ")
}
