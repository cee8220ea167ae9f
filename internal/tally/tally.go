// Package tally counts events toward the reports this server sends
// (TLS-RPT, DMARC aggregate): counts gather in memory, one per report row,
// and are added to the store's (store.Tallies) every few seconds, so that
// counting costs a map update per event and one write per flush, not one
// per event. Counts belong to periods of a fixed length aligned on the
// epoch (a day: UTC midnight to midnight).
package tally

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"mailroom/internal/store"
)

// maxRows bounds the rows held between flushes: beyond it, new rows are
// dropped (and counted as dropped), so that a flood of distinct rows
// cannot grow memory while the store is slow or failing. MaxReportRows
// bounds one domain's report of one period: the rows with the largest
// counts (a sender can make rows distinct at will: source addresses).
const (
	maxRows       = 100_000
	MaxReportRows = 10_000
)

type key struct {
	period time.Time
	domain string
	row    string
}

// Recorder gathers one kind's counts.
type Recorder struct {
	kind    string
	period  time.Duration
	flushMu sync.Mutex // one flush at a time: a report is read after a whole flush
	mu      sync.Mutex // guards counts and dropped
	counts  map[key]int64
	dropped int64
}

// New returns a recorder of kind counting in periods of the given length.
func New(kind string, period time.Duration) *Recorder {
	return &Recorder{kind: kind, period: period, counts: map[key]int64{}}
}

// Period returns the start of the period now falls in.
func (r *Recorder) Period(now time.Time) time.Time { return now.UTC().Truncate(r.period) }

// Length returns the length of a period.
func (r *Recorder) Length() time.Duration { return r.period }

// Add counts one event of row (marshalled to JSON: equal rows add up) in
// domain's report.
func (r *Recorder) Add(domain string, row any, now time.Time) {
	b, err := json.Marshal(row)
	if err != nil {
		return
	}
	k := key{r.Period(now), domain, string(b)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.counts[k]; !ok && len(r.counts) >= maxRows {
		r.dropped++
		return
	}
	r.counts[k]++
}

// Flush adds the counts gathered to the store's; on failure they are kept
// for the next flush.
func (r *Recorder) Flush(ctx context.Context, st store.Tallies) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	r.mu.Lock()
	counts := r.counts
	r.counts = map[key]int64{}
	r.mu.Unlock()
	ts := make([]store.Tally, 0, len(counts))
	for k, n := range counts {
		ts = append(ts, store.Tally{Kind: r.kind, Period: k.period, Domain: k.domain, Key: k.row, Count: n})
	}
	if err := st.AddTallies(ctx, ts); err != nil {
		r.mu.Lock()
		for k, n := range counts {
			if _, ok := r.counts[k]; !ok && len(r.counts) >= maxRows {
				r.dropped += n
				continue
			}
			r.counts[k] += n
		}
		r.mu.Unlock()
		return err
	}
	return nil
}

// Run flushes every interval until ctx ends, and once more then.
func (r *Recorder) Run(ctx context.Context, st store.Tallies, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			if err := r.Flush(fctx, st); err != nil {
				log.Error("report counts not saved at shutdown", "kind", r.kind, "err", err)
			}
			cancel()
			return
		case <-t.C:
			if err := r.Flush(ctx, st); err != nil {
				log.Warn("report counts not saved (kept for the next try)", "kind", r.kind, "err", err)
			}
			r.mu.Lock()
			if r.dropped > 0 {
				log.Warn("report rows dropped: too many distinct rows between two flushes", "kind", r.kind, "dropped", r.dropped)
				r.dropped = 0
			}
			r.mu.Unlock()
		}
	}
}

// Report is one domain's rows of one period.
type Report struct {
	Domain     string
	Begin, End time.Time
	Rows       []store.Tally
}

// Due returns the reports of periods that have ended by now, oldest first.
func (r *Recorder) Due(ctx context.Context, st store.Tallies, now time.Time) ([]Report, error) {
	ts, err := st.TalliesOf(ctx, r.kind, r.Period(now), MaxReportRows)
	if err != nil {
		return nil, err
	}
	var out []Report
	for _, t := range ts {
		if n := len(out); n == 0 || !out[n-1].Begin.Equal(t.Period) || out[n-1].Domain != t.Domain {
			out = append(out, Report{Domain: t.Domain, Begin: t.Period.UTC(), End: t.Period.UTC().Add(r.period)})
		}
		out[len(out)-1].Rows = append(out[len(out)-1].Rows, t)
	}
	return out, nil
}

// Done forgets a report's rows (sent, or nobody wants it).
func (r *Recorder) Done(ctx context.Context, st store.Tallies, rep Report) error {
	return st.DeleteTallies(ctx, r.kind, rep.Begin, rep.Domain)
}
