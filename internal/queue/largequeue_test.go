package queue

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mailroom/internal/delivery"
	"mailroom/internal/store"
	"mailroom/internal/store/sqlite"
	"mailroom/internal/store/sqlite/sqlitetest"
)

// countingQueue is a store.Queue that logs the scheduler's calls and the
// entries it claims.
type countingQueue struct {
	store.Queue
	mu      sync.Mutex
	calls   []string // in order
	claimed []string // the addresses of the entries ClaimDue returned
}

func (c *countingQueue) log(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, name)
}

func (c *countingQueue) ClaimDue(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]store.QueueEntry, error) {
	c.log("ClaimDue")
	es, err := c.Queue.ClaimDue(ctx, now, lease, limit)
	c.mu.Lock()
	for _, e := range es {
		c.claimed = append(c.claimed, e.Recipient.Address)
	}
	c.mu.Unlock()
	return es, err
}

func (c *countingQueue) NextDue(ctx context.Context) (time.Time, bool, error) {
	c.log("NextDue")
	return c.Queue.NextDue(ctx)
}

func (c *countingQueue) ReleaseClaims(ctx context.Context, ids []int64, at time.Time) error {
	c.log("ReleaseClaims")
	return c.Queue.ReleaseClaims(ctx, ids, at)
}

func (c *countingQueue) RecordResults(ctx context.Context, results []store.QueueResult) error {
	c.log("RecordResults")
	return c.Queue.RecordResults(ctx, results)
}

// reset returns the calls and claims so far and starts again from none.
func (c *countingQueue) reset() (calls, claimed []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	calls, claimed = c.calls, c.claimed
	c.calls, c.claimed = nil, nil
	return calls, claimed
}

// waitFor waits until the calls so far contain want, in that order, with
// any others between.
func (c *countingQueue) waitFor(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		rest := want
		for _, call := range c.calls {
			if len(rest) > 0 && call == rest[0] {
				rest = rest[1:]
			}
		}
		calls := strings.Join(c.calls, " ")
		c.mu.Unlock()
		if len(rest) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls after 10s: %s; want %s among them", calls, strings.Join(want, ", "))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLargeQueueIdleRunner: a runner over 100,000 deferred entries, due in
// an hour to five days, claims none of them, then sleeps without asking the
// store anything; a message accepted meanwhile is claimed and delivered
// alone; a restart releases the claims and sleeps again. (What each of these
// calls reads in the store is counted by sqlite's TestLargeQueue.)
func TestLargeQueueIdleRunner(t *testing.T) {
	sqlitetest.SkipIfRace(t)
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	if err := sqlitetest.AddDeferred(t.Context(), dir, sqlitetest.Deferred{Entries: 100_000, From: now.Add(time.Hour), To: now.Add(5 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	q := &countingQueue{Queue: st}
	delivered := make(chan string, 10)
	deliver := func(_ context.Context, j delivery.Job) []delivery.Outcome {
		out := make([]delivery.Outcome, len(j.Recipients))
		for i, r := range j.Recipients {
			delivered <- r.Address
			out[i] = delivery.Outcome{Delivered: true}
		}
		return out
	}
	var r *Runner
	run := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		r = New(q, deliver, nil, Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		done := make(chan struct{})
		go func() { r.Run(ctx); close(done) }()
		return func() { cancel(); <-done }
	}
	stop := run()
	defer func() { stop() }()
	// idle checks that the runner asks the store nothing for a while.
	idle := func(t *testing.T, d time.Duration) {
		t.Helper()
		time.Sleep(d)
		if calls, _ := q.reset(); len(calls) != 0 {
			t.Errorf("calls while idle for %v: %v", d, calls)
		}
	}

	t.Run("an idle runner claims nothing, then sleeps without asking the store", func(t *testing.T) {
		q.waitFor(t, "NextDue")
		calls, claimed := q.reset()
		if want := []string{"ReleaseClaims", "ClaimDue", "NextDue"}; !slices.Equal(calls, want) || len(claimed) != 0 {
			t.Errorf("at start: calls %v, %d entries claimed; want %v, nothing claimed", calls, len(claimed), want)
		}
		idle(t, 2*time.Second)
	})

	t.Run("a message accepted meanwhile is claimed and delivered alone", func(t *testing.T) {
		m := &store.Message{QueueID: store.NewQueueID(), SMTPEnvelope: store.SMTPEnvelope{MailFrom: "a@example.test"},
			Body: strings.NewReader("Subject: new\r\n\r\nx\r\n"), Remote: []store.QueuedRecipient{{Address: "new@up.example", Domain: "up.example"}}}
		if err := st.Accept(t.Context(), m); err != nil {
			t.Fatal(err)
		}
		r.Wake() // as the daemon's inbound path does
		select {
		case got := <-delivered:
			if got != "new@up.example" {
				t.Fatalf("delivered %s", got)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the new message was not delivered in 10s")
		}
		// Woken: one claim and a look at the next due time; after the
		// delivery only its results (a finished job does not send the
		// runner to the store again).
		q.waitFor(t, "ClaimDue", "NextDue", "RecordResults")
		calls, claimed := q.reset()
		if len(calls) > 3 || !slices.Equal(claimed, []string{"new@up.example"}) {
			t.Errorf("for one new message: calls %v, claimed %v", calls, claimed)
		}
		idle(t, time.Second)
	})

	t.Run("a restart releases the claims, claims nothing and sleeps", func(t *testing.T) {
		stop()
		q.reset()
		stop = run()
		q.waitFor(t, "NextDue")
		calls, claimed := q.reset()
		if want := []string{"ReleaseClaims", "ClaimDue", "NextDue"}; !slices.Equal(calls, want) || len(claimed) != 0 {
			t.Errorf("at restart: calls %v, %d entries claimed; want %v, nothing claimed", calls, len(claimed), want)
		}
		idle(t, time.Second)
	})
}
