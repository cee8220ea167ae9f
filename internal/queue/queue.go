// Package queue runs the outbound queue: it takes due entries from the
// store, delivers each message once per destination domain (with limited
// concurrency), and records the outcome: delivered, deferred with
// exponential backoff and jitter, or failed (refused for good, or expired)
// with a bounce to the sender. The store's index finds the next due entry,
// so a large deferred queue costs nothing while idle.
package queue

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"mailroom/internal/delivery"
	"mailroom/internal/smtp"
	"mailroom/internal/store"
)

// Config is the retry policy and the limits.
type Config struct {
	RetryIntervals []time.Duration // after attempt n, wait RetryIntervals[n-1]; the last repeats
	Expire         time.Duration   // after this long in the queue, a recipient fails
	MaxConcurrent  int             // deliveries at once
	DelayWarning   time.Duration   // warn the sender once after this long in the queue; 0: never
	BatchSize      int             // entries fetched per round
}

// Failure is a recipient that failed for good (or, with Delayed, is still
// waiting long after it was queued), for the report to the sender.
type Failure struct {
	Entry   store.QueueEntry
	Result  delivery.Outcome
	Delayed bool
}

// Runner is the queue's scheduler.
type Runner struct {
	store   store.Queue
	deliver func(context.Context, delivery.Job) []delivery.Outcome
	bounce  func(context.Context, []Failure)
	cfg     Config
	log     *slog.Logger
	now     func() time.Time

	wake     chan struct{}
	mu       sync.Mutex
	inflight map[int64]bool // entry IDs being delivered
	// finished are entries whose results are recorded; they leave inflight
	// only in dispatch, before it reads the store, so that a read taken
	// before the results were committed cannot send them again.
	finished []int64
}

// New returns a runner; bounce is told of recipients that failed for good.
func New(st store.Queue, deliver func(context.Context, delivery.Job) []delivery.Outcome, bounce func(context.Context, []Failure), cfg Config, log *slog.Logger) *Runner {
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 20
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 200
	}
	if len(cfg.RetryIntervals) == 0 {
		cfg.RetryIntervals = []time.Duration{time.Minute}
	}
	return &Runner{store: st, deliver: deliver, bounce: bounce, cfg: cfg, log: log, now: time.Now,
		wake: make(chan struct{}, 1), inflight: map[int64]bool{}}
}

// Wake makes the runner look for due entries now (a message was queued).
func (r *Runner) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run schedules deliveries until ctx ends, then waits for those under way.
func (r *Runner) Run(ctx context.Context) {
	sem := make(chan struct{}, r.cfg.MaxConcurrent)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		started := r.dispatch(ctx, sem, &wg)
		wait := time.Minute
		if !started {
			if next, ok, err := r.store.NextDue(ctx); err == nil && ok {
				wait = min(max(time.Until(next), 0), time.Minute)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// dispatch starts deliveries for the due entries not already under way
// and reports whether it started any.
func (r *Runner) dispatch(ctx context.Context, sem chan struct{}, wg *sync.WaitGroup) bool {
	r.mu.Lock()
	for _, id := range r.finished {
		delete(r.inflight, id)
	}
	r.finished = r.finished[:0]
	r.mu.Unlock()
	due, err := r.store.DueEntries(ctx, r.now(), r.cfg.BatchSize)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Error("queue: reading due entries", "err", err)
		}
		return false
	}
	groups := map[string][]store.QueueEntry{}
	var order []string
	r.mu.Lock()
	for _, e := range due {
		if r.inflight[e.ID] {
			continue
		}
		r.inflight[e.ID] = true
		k := e.QueueID + "|" + e.Recipient.Domain
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], e)
	}
	r.mu.Unlock()
	for _, k := range order {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			r.finish(groups[k])
			return false
		}
		wg.Add(1)
		go func(entries []store.QueueEntry) {
			defer wg.Done()
			defer func() { <-sem }()
			r.work(ctx, entries)
			r.finish(entries)
			r.Wake()
		}(groups[k])
	}
	return len(order) > 0
}

// finish marks entries as done; dispatch lets them go.
func (r *Runner) finish(entries []store.QueueEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range entries {
		r.finished = append(r.finished, e.ID)
	}
}

// work delivers one message to one domain and records the outcomes.
func (r *Runner) work(ctx context.Context, entries []store.QueueEntry) {
	first := entries[0]
	var env store.Envelope
	json.Unmarshal([]byte(first.Envelope), &env)
	job := delivery.Job{Domain: first.Recipient.Domain, MailFrom: first.MailFrom, Size: first.Size,
		Ret: env.Ret, EnvID: env.EnvID, EightBit: env.Body == "8BITMIME", SMTPUTF8: env.SMTPUTF8,
		Open: func() (io.ReadCloser, error) { return r.store.OpenQueued(ctx, first.MessageID) }}
	for _, e := range entries {
		job.Recipients = append(job.Recipients, delivery.Recipient{Address: e.Recipient.Address, Params: rcptParams(e.Recipient)})
	}
	outcomes := r.deliver(ctx, job)
	now := r.now()
	results := make([]store.QueueResult, len(entries))
	var failed, delayed []Failure
	for i, e := range entries {
		o := outcomes[i]
		res := store.QueueResult{ID: e.ID, Error: o.Detail}
		switch {
		case o.Delivered:
			res.State = store.StateDelivered
		case o.Permanent:
			res.State = store.StateFailed
		case now.Sub(e.Created) >= r.cfg.Expire:
			res.State = store.StateFailed
			o.Detail = "4.4.7 expired after " + r.cfg.Expire.String() + " in the queue; last error: " + o.Detail
			res.Error = o.Detail
		default:
			res.State, res.NextAttempt = store.StateDeferred, now.Add(r.backoff(e.Attempts+1))
			if r.cfg.DelayWarning > 0 && !e.Warned && now.Sub(e.Created) >= r.cfg.DelayWarning {
				res.Warned = true
				delayed = append(delayed, Failure{Entry: e, Result: o, Delayed: true})
			}
		}
		if res.State == store.StateFailed {
			failed = append(failed, Failure{Entry: e, Result: o})
		}
		results[i] = res
		r.log.Info("delivery", "queue_id", e.QueueID, "to", e.Recipient.Address, "state", res.State, "detail", o.Detail,
			"remote", o.RemoteMTA, "tls", o.TLS, "attempt", e.Attempts+1)
	}
	// Bounce first, while the message is still there to quote; should
	// recording fail, the attempt and so the bounce may come again
	// (at least once, never lost).
	if r.bounce != nil {
		for _, fs := range [][]Failure{failed, delayed} {
			if len(fs) > 0 {
				r.bounce(context.WithoutCancel(ctx), fs)
			}
		}
	}
	if err := r.store.RecordResults(context.WithoutCancel(ctx), results); err != nil {
		r.log.Error("queue: recording results (the attempt will be repeated)", "queue_id", first.QueueID, "err", err)
	}
}

// backoff is the wait after attempt n, with ±10% jitter so that a burst
// of deferrals does not come back all at once.
func (r *Runner) backoff(n int) time.Duration {
	d := r.cfg.RetryIntervals[min(n, len(r.cfg.RetryIntervals))-1]
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
