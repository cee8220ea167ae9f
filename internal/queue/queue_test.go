package queue

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"mailroom/internal/delivery"
	"mailroom/internal/store"
	"mailroom/internal/store/sqlite"
)

func TestRunner(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	queue := func(id, to string, received time.Time) {
		m := &store.Message{QueueID: id, Received: received, Body: strings.NewReader("Subject: x\r\n\r\nx\r\n"),
			Envelope: store.Envelope{MailFrom: "a@example.test"},
			Remote:   []store.QueuedRecipient{{Address: to, Domain: "remote.test", Notify: []string{"FAILURE"}}}}
		if err := st.Accept(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	tries := map[string]int{}
	var bounced []Failure
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
	bounce := func(_ context.Context, f []Failure) {
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
			if d := r.backoff(n); d < want*9/10 || d > want*11/10 {
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
	st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m := &store.Message{QueueID: "slow", Received: time.Now().Add(-2 * time.Hour), Body: strings.NewReader("Subject: x\r\n\r\nx\r\n"),
		Envelope: store.Envelope{MailFrom: "a@example.test"}, Remote: []store.QueuedRecipient{{Address: "x@remote.test", Domain: "remote.test"}}}
	if err := st.Accept(ctx, m); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	attempts, warnings := 0, 0
	deliver := func(context.Context, delivery.Job) []delivery.Outcome {
		mu.Lock()
		attempts++
		mu.Unlock()
		return []delivery.Outcome{{Detail: "451 4.3.0 later"}}
	}
	report := func(_ context.Context, fs []Failure) {
		mu.Lock()
		defer mu.Unlock()
		for _, f := range fs {
			if !f.Delayed {
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
