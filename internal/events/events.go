// Package events keeps the message log's statistics and age: it adds new
// events up into the counts per minute that charts and the statistics API
// read, and deletes events, log entries and counts older than the
// retention with the webhook deliveries done with (and the API's
// idempotency keys after a day). On a store shared by several nodes each node runs it: the
// store counts each event once whoever asks (store.Events.CountEvents).
package events

import (
	"context"
	"log/slog"
	"time"

	"mailroom/internal/store"
)

// Store is what the keeper needs of the store.
type Store interface {
	CountEvents(ctx context.Context, limit int) (int, error)
	DeleteEvents(ctx context.Context, before time.Time, limit int) (int, error)
	DeleteIdempotent(ctx context.Context, before time.Time) (int, error)
	DeleteHookDeliveries(ctx context.Context, before time.Time, limit int) (int, error)
	DeleteSessions(ctx context.Context, user string, before time.Time) (int, error)
}

// sessionLifetime is a dashboard session's longest life: sessions not
// seen for that long are swept.
const sessionLifetime = 12 * time.Hour

// batch bounds one transaction of counting or deleting.
const batch = 1000

// Keeper counts and sweeps events.
type Keeper struct {
	st   Store
	keep func() time.Duration // the retention, read at each sweep; 0 keeps everything
	log  *slog.Logger
	// Every is how often new events are counted; Sweep how often old ones
	// are deleted.
	Every, Sweep time.Duration
	// Counted, when set, is called after events were counted (and their
	// webhook deliveries made): it wakes the webhook sender.
	Counted func()
}

// New returns a keeper that counts every two seconds and sweeps hourly.
func New(st Store, keep func() time.Duration, log *slog.Logger) *Keeper {
	return &Keeper{st: st, keep: keep, log: log, Every: 2 * time.Second, Sweep: time.Hour}
}

// Run counts and sweeps until ctx ends.
func (k *Keeper) Run(ctx context.Context) {
	count := time.NewTicker(k.Every)
	defer count.Stop()
	sweep := time.NewTimer(time.Minute) // the first a minute after the start
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-count.C:
			k.Count(ctx)
		case <-sweep.C:
			k.SweepOld(ctx, time.Now())
			sweep.Reset(k.Sweep)
		}
	}
}

// Count adds up the events not yet counted, a batch at a time.
func (k *Keeper) Count(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := k.st.CountEvents(ctx, batch)
		if err != nil {
			k.log.Warn("counting events for the statistics (tried again shortly)", "err", err)
			return
		}
		if n > 0 && k.Counted != nil {
			k.Counted()
		}
		if n < batch {
			return
		}
	}
}

// SweepOld deletes what is older than the retention, a batch at a time,
// and the API's idempotency keys past store.IdempotencyTTL.
func (k *Keeper) SweepOld(ctx context.Context, now time.Time) {
	if _, err := k.st.DeleteIdempotent(ctx, now.Add(-store.IdempotencyTTL)); err != nil {
		k.log.Warn("deleting old idempotency keys (tried again at the next sweep)", "err", err)
	}
	if _, err := k.st.DeleteSessions(ctx, "", now.Add(-sessionLifetime)); err != nil {
		k.log.Warn("deleting old dashboard sessions (tried again at the next sweep)", "err", err)
	}
	keep := k.keep()
	if keep <= 0 {
		return
	}
	total := 0
	for ctx.Err() == nil {
		n, err := k.st.DeleteEvents(ctx, now.Add(-keep), batch)
		if err == nil {
			var hooks int
			hooks, err = k.st.DeleteHookDeliveries(ctx, now.Add(-keep), batch)
			n += hooks
		}
		if err != nil {
			k.log.Warn("deleting old events (tried again at the next sweep)", "err", err)
			break
		}
		total += n
		if n == 0 {
			break
		}
	}
	if total > 0 {
		k.log.Info("old events deleted", "rows", total, "older_than", now.Add(-keep).UTC().Format(time.RFC3339))
	}
}

var _ Store = store.Store(nil)
