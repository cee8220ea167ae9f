package queue

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailroom/internal/delivery"
	"mailroom/internal/dsn"
	"mailroom/internal/store"
	"mailroom/internal/store/sqlite"
)

// openStore opens an empty store for the test.
func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// enqueue queues a small message from a@example.test to one recipient.
func enqueue(t *testing.T, st store.Store, id string, received time.Time, to store.QueuedRecipient) {
	t.Helper()
	m := &store.Message{QueueID: id, Received: received, Body: strings.NewReader("Subject: x\r\n\r\nx\r\n"),
		SMTPEnvelope: store.SMTPEnvelope{MailFrom: "a@example.test"}, Remote: []store.QueuedRecipient{to}}
	if err := st.Accept(context.Background(), m); err != nil {
		t.Error(err)
	}
}

func TestRunner(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := openStore(t)
	queue := func(id, to string, received time.Time) {
		enqueue(t, st, id, received, store.QueuedRecipient{Address: to, Domain: "remote.test", Notify: []string{"FAILURE"}})
	}
	var mu sync.Mutex
	tries := map[string]int{}
	var bounced []Notice
	deliver := func(_ context.Context, j delivery.Job) []delivery.Outcome {
		mu.Lock()
		defer mu.Unlock()
		addr := j.Recipients[0].Address
		tries[addr]++
		if j.Recipients[0].Params != "NOTIFY=FAILURE" {
			t.Errorf("recipient params %q", j.Recipients[0].Params)
		}
		b, err := j.Open()
		if err != nil {
			t.Errorf("a message was delivered again after its results: %v", err)
			return []delivery.Outcome{{Detail: "4.3.0 " + err.Error()}}
		}
		io.ReadAll(b)
		b.Close()
		switch {
		case addr == "ok@remote.test", addr == "flaky@remote.test" && tries[addr] > 1:
			return []delivery.Outcome{{Delivered: true}}
		case addr == "gone@remote.test":
			return []delivery.Outcome{{Permanent: true, Detail: "550 5.1.1 no such user"}}
		}
		return []delivery.Outcome{{Detail: "451 4.3.0 later"}}
	}
	bounce := func(_ context.Context, f []Notice) {
		mu.Lock()
		bounced = append(bounced, f...)
		mu.Unlock()
	}
	now := time.Now()
	queue("q1", "ok@remote.test", now)
	queue("q2", "flaky@remote.test", now)
	queue("q3", "gone@remote.test", now)
	queue("q4", "stale@remote.test", now.Add(-2*time.Hour))
	r := New(st, deliver, bounce, Config{RetryIntervals: []time.Duration{100 * time.Millisecond}, Expire: time.Hour},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	go r.Run(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		es, _ := st.QueueEntries(ctx, "")
		if len(es) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue not drained: %+v", es)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if tries["ok@remote.test"] != 1 || tries["flaky@remote.test"] != 2 || tries["gone@remote.test"] != 1 || tries["stale@remote.test"] != 1 {
		t.Errorf("attempts: %v", tries)
	}
	if len(bounced) != 2 {
		t.Fatalf("bounced %d, want gone and stale", len(bounced))
	}
	for _, b := range bounced {
		if b.Entry.Recipient.Address == "stale@remote.test" && !strings.Contains(b.Result.Detail, "expired") {
			t.Errorf("the stale recipient's failure does not say it expired: %q", b.Result.Detail)
		}
	}
}

func TestBackoff(t *testing.T) {
	r := New(nil, nil, nil, Config{RetryIntervals: []time.Duration{time.Minute, 10 * time.Minute}}, nil)
	for n, want := range map[int]time.Duration{1: time.Minute, 2: 10 * time.Minute, 7: 10 * time.Minute} {
		for i := 0; i < 20; i++ {
			if d := r.cfg.Load().backoff(n); d < want*9/10 || d > want*11/10 {
				t.Errorf("backoff(%d) = %v, want %v ±10%%", n, d, want)
			}
		}
	}
}

// TestDelayWarning: a recipient still waiting after DelayWarning gets one
// warning, not one per attempt.
func TestDelayWarning(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := openStore(t)
	enqueue(t, st, "slow", time.Now().Add(-2*time.Hour), store.QueuedRecipient{Address: "x@remote.test", Domain: "remote.test"})
	var mu sync.Mutex
	attempts, warnings := 0, 0
	deliver := func(context.Context, delivery.Job) []delivery.Outcome {
		mu.Lock()
		attempts++
		mu.Unlock()
		return []delivery.Outcome{{Detail: "451 4.3.0 later"}}
	}
	report := func(_ context.Context, fs []Notice) {
		mu.Lock()
		defer mu.Unlock()
		for _, f := range fs {
			if f.Action != dsn.Delayed {
				t.Errorf("a failure report for a deferred recipient: %+v", f)
			}
			warnings++
		}
	}
	r := New(st, deliver, report, Config{RetryIntervals: []time.Duration{50 * time.Millisecond}, Expire: 24 * time.Hour, DelayWarning: time.Hour},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	go r.Run(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := attempts
		mu.Unlock()
		if n >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("too few attempts")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	mu.Lock()
	defer mu.Unlock()
	if warnings != 1 {
		t.Errorf("%d delay warnings over %d attempts, want 1", warnings, attempts)
	}
}

// newStore opens a store with n messages queued for each domain given.
func newStore(t *testing.T, perDomain map[string]int) store.Store {
	st := openStore(t)
	for domain, n := range perDomain {
		for i := range n {
			enqueue(t, st, fmt.Sprintf("%s-%d", domain, i), time.Time{}, store.QueuedRecipient{Address: fmt.Sprintf("u%d@%s", i, domain), Domain: domain})
		}
	}
	return st
}

// runUntilDrained runs a Runner over st until the queue is empty.
func runUntilDrained(t *testing.T, st store.Store, deliver func(context.Context, delivery.Job) []delivery.Outcome, cfg Config) {
	t.Helper()
	r := New(st, deliver, nil, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go r.Run(ctx)
	drained(t, st)
}

func drained(t *testing.T, st store.Store) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		es, _ := st.QueueEntries(t.Context(), "")
		if len(es) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue not drained: %d left", len(es))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLimits: deliveries stay within the limits in all and per domain,
// and a domain with a long queue does not keep another one waiting until
// it is done.
func TestLimits(t *testing.T) {
	st := newStore(t, map[string]int{"big.test": 40, "small.test": 3})
	var mu sync.Mutex
	active := map[string]int{}
	total, maxTotal, maxBig, bigDone, smallAfterBig := 0, 0, 0, 0, -1
	deliver := func(_ context.Context, j delivery.Job) []delivery.Outcome {
		mu.Lock()
		active[j.Domain]++
		total++
		maxTotal, maxBig = max(maxTotal, total), max(maxBig, active["big.test"])
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		active[j.Domain]--
		total--
		if j.Domain == "big.test" {
			bigDone++
		} else if smallAfterBig < bigDone {
			smallAfterBig = bigDone
		}
		mu.Unlock()
		return []delivery.Outcome{{Delivered: true}}
	}
	runUntilDrained(t, st, deliver, Config{MaxConcurrent: 3, MaxPerDestination: 2, Backlog: 100})
	mu.Lock()
	defer mu.Unlock()
	if maxTotal > 3 || maxBig > 2 {
		t.Errorf("at most %d at once in all and %d to big.test; limits 3 and 2", maxTotal, maxBig)
	}
	if maxTotal < 3 {
		t.Errorf("never more than %d at once: the free slot went unused", maxTotal)
	}
	if smallAfterBig >= 30 {
		t.Errorf("small.test waited until %d of 40 big.test messages were done", smallAfterBig)
	}
}

// heldRecords holds every RecordResults until Release (at the latest when
// the test ends), and closes recording when the first one begins.
type heldRecords struct {
	store.Store
	once, released sync.Once
	recording      chan struct{}
	release        chan struct{}
}

func newHeldRecords(t *testing.T, st store.Store) *heldRecords {
	h := &heldRecords{Store: st, recording: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(h.Release) // before the store closes (cleanups run last first)
	return h
}

// Release lets the held recordings, and all later ones, through.
func (h *heldRecords) Release() { h.released.Do(func() { close(h.release) }) }

func (h *heldRecords) RecordResults(ctx context.Context, rs []store.QueueResult) error {
	h.once.Do(func() { close(h.recording) })
	<-h.release
	return h.Store.RecordResults(ctx, rs)
}

// TestConnectionBackAfterRecording: the connection of an answered
// transaction is given back (for the next message) only once its outcome
// is recorded, never before: a crash then repeats at most one answered
// transaction per connection.
func TestConnectionBackAfterRecording(t *testing.T) {
	st := newHeldRecords(t, newStore(t, map[string]int{"one.test": 1}))
	released := make(chan struct{})
	deliver := func(_ context.Context, j delivery.Job) []delivery.Outcome {
		j.Held(func() { close(released) })
		return []delivery.Outcome{{Delivered: true}}
	}
	r := New(st, deliver, nil, Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go r.Run(ctx)
	select {
	case <-st.recording:
	case <-time.After(5 * time.Second):
		t.Fatal("the outcome was not recorded")
	}
	select {
	case <-released:
		t.Fatal("the connection came back while the outcome was still being recorded")
	case <-time.After(200 * time.Millisecond):
	}
	st.Release()
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection did not come back after the recording")
	}
}

// TestSlotFreeWhileRecording: a destination's slot is free once the
// attempt there has ended. With one delivery at a time to a domain, the
// second message goes out while the first one's outcome is still being
// recorded (a commit that, under load, waits its turn).
func TestSlotFreeWhileRecording(t *testing.T) {
	st := newHeldRecords(t, newStore(t, map[string]int{"one.test": 2}))
	attempts := make(chan string, 2)
	deliver := func(_ context.Context, j delivery.Job) []delivery.Outcome {
		attempts <- j.Recipients[0].Address
		return []delivery.Outcome{{Delivered: true}}
	}
	r := New(st, deliver, nil, Config{MaxConcurrent: 10, MaxPerDestination: 1}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go r.Run(ctx)
	var first string
	select {
	case first = <-attempts:
	case <-time.After(5 * time.Second):
		t.Fatal("no attempt")
	}
	select {
	case <-st.recording:
	case <-time.After(5 * time.Second):
		t.Fatal("the first outcome was not recorded")
	}
	select {
	case second := <-attempts:
		if second == first {
			t.Errorf("the same message twice: %s", first)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the second message waited for the first one's outcome to be recorded")
	}
	st.Release()
	drained(t, st)
}

// TestRecordingCountsAgainstBacklog: jobs recording their outcomes hold
// no slot but count against the backlog, so a store slower than the
// attempts does not let claimed work pile up without bound in memory.
func TestRecordingCountsAgainstBacklog(t *testing.T) {
	st := newHeldRecords(t, newStore(t, map[string]int{"fast.test": 20}))
	var attempts atomic.Int32
	deliver := func(context.Context, delivery.Job) []delivery.Outcome {
		attempts.Add(1)
		return []delivery.Outcome{{Delivered: true}}
	}
	const backlog = 4
	r := New(st, deliver, nil, Config{MaxConcurrent: 10, MaxPerDestination: 10, Backlog: backlog}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go r.Run(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for attempts.Load() < backlog && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // room for more, were they allowed
	if n := attempts.Load(); n != backlog {
		t.Errorf("%d attempts while every recording was held; want the backlog, %d", n, backlog)
	}
	st.Release()
	drained(t, st)
	if n := attempts.Load(); n != 20 {
		t.Errorf("%d attempts in all, want 20", n)
	}
}

// TestRateLimit: a rate-limited domain gets its messages spaced out while
// another domain goes on at once.
func TestRateLimit(t *testing.T) {
	st := newStore(t, map[string]int{"slow.test": 4, "fast.test": 4})
	var mu sync.Mutex
	starts := map[string][]time.Time{}
	deliver := func(_ context.Context, j delivery.Job) []delivery.Outcome {
		mu.Lock()
		starts[j.Domain] = append(starts[j.Domain], time.Now())
		mu.Unlock()
		return []delivery.Outcome{{Delivered: true}}
	}
	runUntilDrained(t, st, deliver, Config{RateLimits: map[string]float64{"slow.test": 600}})
	mu.Lock()
	defer mu.Unlock()
	slow, fast := starts["slow.test"], starts["fast.test"]
	for i := 1; i < len(slow); i++ {
		if gap := slow[i].Sub(slow[i-1]); gap < 90*time.Millisecond {
			t.Errorf("slow.test: %v between messages %d and %d; 600 a minute is one per 100ms", gap, i-1, i)
		}
	}
	if len(fast) != 4 || fast[3].After(slow[2]) {
		t.Errorf("fast.test was held up by slow.test's rate: %v vs %v", fast, slow)
	}
}

// TestShutdownReleasesClaims: entries claimed but not started when the
// runner stops are due again at once, with no attempt counted.
func TestShutdownReleasesClaims(t *testing.T) {
	st := newStore(t, map[string]int{"a.test": 5})
	started := make(chan struct{}, 5)
	deliver := func(ctx context.Context, j delivery.Job) []delivery.Outcome {
		started <- struct{}{}
		<-ctx.Done()
		return []delivery.Outcome{{Detail: "4.4.2 shutting down"}}
	}
	r := New(st, deliver, nil, Config{MaxConcurrent: 1}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	<-started
	cancel()
	<-done
	es, _ := st.QueueEntries(t.Context(), "")
	waiting := 0
	for _, e := range es {
		if e.Active {
			t.Errorf("still claimed after shutdown: %+v", e)
		}
		if e.Attempts == 0 {
			waiting++
			if e.NextAttempt.After(time.Now()) {
				t.Errorf("an entry that never started is not due: %v", e.NextAttempt)
			}
		}
	}
	if waiting != 4 {
		t.Errorf("%d entries untried, want 4", waiting)
	}
}

// reusingStore queues a new message while the results of the first
// delivery are being recorded, after its row is gone: SQLite gives the
// new entry the same row ID, before the runner has finished the old one.
type reusingStore struct {
	store.Store
	t     *testing.T
	r     *Runner
	once  sync.Once
	queue func(id, to string, received time.Time)
}

func (s *reusingStore) RecordResults(ctx context.Context, res []store.QueueResult) error {
	err := s.Store.RecordResults(ctx, res)
	s.once.Do(func() {
		s.queue("second", "b@remote.test", time.Now())
		s.r.Wake()
		time.Sleep(200 * time.Millisecond) // the runner claims it meanwhile
	})
	return err
}

// TestRowIDReuse: an entry whose row ID was a finished entry's is
// delivered at once, not left claimed until its lease runs out.
func TestRowIDReuse(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := openStore(t)
	queue := func(id, to string, received time.Time) {
		enqueue(t, st, id, received, store.QueuedRecipient{Address: to, Domain: "remote.test"})
	}
	queue("first", "a@remote.test", time.Now())
	rs := &reusingStore{Store: st, t: t, queue: queue}
	delivered := make(chan string, 2)
	deliver := func(_ context.Context, j delivery.Job) []delivery.Outcome {
		delivered <- j.Recipients[0].Address
		return []delivery.Outcome{{Delivered: true}}
	}
	rs.r = New(rs, deliver, nil, Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	go rs.r.Run(ctx)
	for _, want := range []string{"a@remote.test", "b@remote.test"} {
		select {
		case got := <-delivered:
			if got != want {
				t.Fatalf("delivered %s, want %s", got, want)
			}
		case <-time.After(5 * time.Second):
			es, _ := st.QueueEntries(ctx, "")
			t.Fatalf("%s not delivered; queue: %+v", want, es)
		}
	}
}

// TestFullBacklogDoesNotSpin: with more due entries than the backlog
// holds and every slot busy, the runner waits for a delivery to finish
// instead of asking the store again and again.
func TestFullBacklogDoesNotSpin(t *testing.T) {
	st := newStore(t, map[string]int{"slow.test": 50})
	q := &countingQueue{Queue: st}
	release := make(chan struct{})
	deliver := func(ctx context.Context, j delivery.Job) []delivery.Outcome {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return []delivery.Outcome{{Delivered: true}}
	}
	r := New(q, deliver, nil, Config{MaxConcurrent: 2, Backlog: 8}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go r.Run(ctx)
	time.Sleep(100 * time.Millisecond) // claimed a backlog; both slots busy
	q.reset()
	time.Sleep(300 * time.Millisecond)
	if calls, _ := q.reset(); len(calls) > 5 {
		t.Errorf("%d store calls in 300ms while waiting for a slot: %v", len(calls), calls[:5])
	}
	close(release)
	drained(t, st)
}

// TestClaimsRenewed: a delivery that lasts longer than the lease keeps
// its claim ahead of the clock: the runner renews it every third of the
// lease (waiting for it to run out, as a re-claim would, leaves a moment
// in which another node could take the entry).
func TestClaimsRenewed(t *testing.T) {
	st := openStore(t)
	enqueue(t, st, "slow", time.Now(), store.QueuedRecipient{Address: "a@slow.example", Domain: "slow.example"})
	started, release := make(chan struct{}), make(chan struct{})
	deliver := func(ctx context.Context, j delivery.Job) []delivery.Outcome {
		close(started)
		<-release
		return []delivery.Outcome{{Delivered: true, Detail: "250 ok"}}
	}
	const lease = 600 * time.Millisecond
	r := New(st, deliver, nil, Config{Lease: lease}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	<-started
	least := lease
	for range 20 { // 2 s: over three leases
		time.Sleep(100 * time.Millisecond)
		es, err := st.QueueEntries(t.Context(), "slow")
		if err != nil || len(es) != 1 || !es[0].Active {
			t.Fatalf("entries under way: %+v, %v", es, err)
		}
		least = min(least, time.Until(es[0].NextAttempt))
	}
	if least < lease/3 {
		t.Errorf("the claim came within %v of running out; renewed every third of the lease, it keeps more than %v", least, lease/3)
	}
	close(release)
	cancel()
	<-done
}

func TestBounceClass(t *testing.T) {
	for _, c := range []struct{ detail, want string }{
		{"550 5.1.1 No such user", "hard"},
		{"550 5.1.10 Null MX", "hard"},
		{"5.1.2 no MX for the domain", "hard"},
		{"550 5.2.1 Mailbox disabled", "hard"},
		{"550 5.1.8 Bad sender's domain", "soft"},
		{"552 5.2.2 Mailbox full", "soft"},
		{"550 5.7.1 Rejected by policy", "soft"},
		{"554 Transaction failed", "soft"},
		{"", "soft"},
	} {
		if got := BounceClass(c.detail); got != c.want {
			t.Errorf("BounceClass(%q) = %q, want %q", c.detail, got, c.want)
		}
	}
}
