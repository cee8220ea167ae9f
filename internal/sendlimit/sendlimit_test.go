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
	l := Limits{MessagesPerHour: 2, MessagesPerDay: 3, RecipientsPerHour: 3, RecipientsPerDay: 4}
	take := func(msgs, rcpts int) []int {
		var codes []int
		for i := 0; i < msgs; i++ {
			codes = append(codes, code(c.TakeMessage("alice", l)))
		}
		for i := 0; i < rcpts; i++ {
			codes = append(codes, code(c.TakeRecipient("alice", l)))
		}
		return codes
	}
	steps := []struct {
		name    string
		advance time.Duration
		msgs    int
		rcpts   int
		want    []int
	}{
		{"two messages and three recipients fit the hour", 0, 2, 3, []int{0, 0, 0, 0, 0}},
		{"a third message and a fourth recipient do not", 0, 1, 1, []int{450, 450}},
		{"an hour later the hour is free, but the day has one message and one recipient left", 61 * time.Minute, 2, 2, []int{0, 550, 0, 550}},
		{"a day later all is free", 24 * time.Hour, 1, 1, []int{0, 0}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			clock = clock.Add(s.advance)
			got := take(s.msgs, s.rcpts)
			for i := range got {
				if got[i] != s.want[i] {
					t.Fatalf("codes %v, want %v", got, s.want)
				}
			}
			if code(c.TakeMessage("bob", l)) != 0 {
				t.Error("bob is limited by alice's mail")
			}
		})
	}
}

func TestNoLimits(t *testing.T) {
	c := New(nil)
	for i := 0; i < 1000; i++ {
		if c.TakeMessage("alice", Limits{}) != nil || c.TakeRecipient("alice", Limits{}) != nil {
			t.Fatal("zero limits refused something")
		}
	}
}
