package queue

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"mailroom/internal/delivery"
	"mailroom/internal/store"
	"mailroom/internal/store/sqlite"
)

// BenchmarkSchedule: messages to 50 domains through the scheduler and the
// store (claims, results, deletion of finished messages, fsync on), with
// a next hop that takes everything at once: the queue's own cost per
// message. Accepting the messages is not timed.
func BenchmarkSchedule(b *testing.B) {
	st, err := sqlite.Open(context.Background(), b.TempDir(), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	for i := range b.N {
		d := fmt.Sprintf("d%d.test", i%50)
		m := &store.Message{QueueID: fmt.Sprintf("m%d", i), Body: strings.NewReader("Subject: x\r\n\r\nx\r\n"),
			SMTPEnvelope: store.SMTPEnvelope{MailFrom: "a@example.test"}, Remote: []store.QueuedRecipient{{Address: "u@" + d, Domain: d}}}
		if err := st.Accept(context.Background(), m); err != nil {
			b.Fatal(err)
		}
	}
	done := make(chan struct{}, b.N)
	deliver := func(_ context.Context, j delivery.Job) []delivery.Outcome {
		done <- struct{}{}
		return []delivery.Outcome{{Delivered: true}}
	}
	r := New(st, deliver, nil, Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	go r.Run(ctx)
	for range b.N {
		select {
		case <-done:
		case <-time.After(time.Minute):
			b.Fatal("stalled")
		}
	}
	b.StopTimer()
}
