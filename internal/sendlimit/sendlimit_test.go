package sendlimit

import (
	"errors"
	"testing"
	"time"

	"mailroom/internal/smtp"
)

func code(err error) int {
	var r *smtp.Reply
	if errors.As(err, &r) {
		return r.Code
	}
	return 0
}

func TestCounter(t *testing.T) {
	clock := time.Unix(1_000_000_000, 0)
	c := New(func() time.Time { return clock })
	l := Limits{MessagesPerHour: 2, MessagesPerDay: 3, RecipientsPerHour: 5, RecipientsPerDay: 8}

	steps := []struct {
		name    string
		advance time.Duration
		send    int // recipients of a message to record, 0 for none
		msg     int // expected reply code of AllowMessage
		rcpts   int // recipients asked for, and the expected code
		rcode   int
	}{
		{name: "a fresh user may send", msg: 0, rcpts: 5, rcode: 0},
		{name: "six recipients are over the hourly five", rcpts: 6, rcode: 450},
		{name: "after one message of 3, 2 more fit", send: 3, rcpts: 2, rcode: 0},
		{name: "and 3 do not", rcpts: 3, rcode: 450},
		{name: "a second message reaches the hourly limit", send: 1, msg: 450},
		{name: "an hour later the hour is free again", advance: 61 * time.Minute, msg: 0, rcpts: 4, rcode: 0},
		{name: "but the day counts all three messages", send: 1, msg: 550},
		{name: "and the day's recipients", msg: 550, rcpts: 4, rcode: 550},
		{name: "a day later everything is free", advance: 24 * time.Hour, msg: 0, rcpts: 5, rcode: 0},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			clock = clock.Add(s.advance)
			if s.send > 0 {
				c.Record("alice", s.send)
			}
			if got := code(c.AllowMessage("alice", l)); got != s.msg {
				t.Errorf("AllowMessage: %d, want %d", got, s.msg)
			}
			if s.rcpts > 0 {
				if got := code(c.AllowRecipients("alice", s.rcpts, l)); got != s.rcode {
					t.Errorf("AllowRecipients(%d): %d, want %d", s.rcpts, got, s.rcode)
				}
			}
			if code(c.AllowMessage("bob", l)) != 0 {
				t.Error("bob is limited by alice's mail")
			}
		})
	}
}

func TestNoLimits(t *testing.T) {
	c := New(nil)
	for i := 0; i < 1000; i++ {
		c.Record("alice", 100)
	}
	if c.AllowMessage("alice", Limits{}) != nil || c.AllowRecipients("alice", 1000, Limits{}) != nil {
		t.Error("zero limits refused something")
	}
}
