// Package sendlimit counts what each user sends through submission, over
// the past hour and the past day, so that a compromised account or a
// runaway script is stopped before it does much harm. Counts are kept in
// five-minute buckets: in memory for a node alone, in the shared store
// (Shared) when several nodes share one, so that the limits hold whichever
// node a client reaches.
package sendlimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"mailroom/internal/smtp"
)

// Limits are maxima per user; 0 means no limit.
type Limits struct {
	MessagesPerHour   int
	MessagesPerDay    int
	RecipientsPerHour int
	RecipientsPerDay  int
}

const (
	bucket      = 5 * time.Minute
	dayBuckets  = int(24 * time.Hour / bucket)
	hourBuckets = int(time.Hour / bucket)
)

// Counter keeps the counts of every user.
type Counter struct {
	now    func() time.Time
	mu     sync.Mutex
	users  map[string]*usage
	shared Shared // nil: counts in memory
}

// Shared counts across nodes (store.SharedCounters).
type Shared interface {
	TakeCount(ctx context.Context, key string, now time.Time, perHour, perDay int) (hour, day int, taken bool, err error)
}

// SetShared makes the counter count in sh, shared by every node, instead
// of in memory.
func (c *Counter) SetShared(sh Shared) { c.shared = sh }

type usage struct {
	msgs    [dayBuckets]int
	rcpts   [dayBuckets]int
	current int64 // bucket index of the last update
}

// New returns a counter; now is the clock (time.Now when nil).
func New(now func() time.Time) *Counter {
	if now == nil {
		now = time.Now
	}
	return &Counter{now: now, users: map[string]*usage{}}
}

// advance clears the buckets that fell out of the day since the last use.
func (u *usage) advance(idx int64) {
	if idx-u.current >= int64(dayBuckets) {
		u.msgs, u.rcpts = [dayBuckets]int{}, [dayBuckets]int{}
	} else {
		for i := u.current + 1; i <= idx; i++ {
			u.msgs[i%int64(dayBuckets)], u.rcpts[i%int64(dayBuckets)] = 0, 0
		}
	}
	u.current = idx
}

func (c *Counter) get(user string) *usage {
	idx := c.now().UnixNano() / int64(bucket)
	u := c.users[user]
	if u == nil {
		u = &usage{current: idx}
		c.users[user] = u
	}
	u.advance(idx)
	return u
}

// TakeMessage counts one more message for user, at MAIL, unless that
// would pass a limit. Counting when the transaction starts, not when it
// ends, keeps parallel sessions from slipping past a limit together; a
// message that then fails still counts, which is right for a limit meant
// to stop abuse. The reply for an hourly limit is temporary (450 4.7.1),
// for a daily one permanent (550 5.7.1), as the big providers answer.
func (c *Counter) TakeMessage(user string, l Limits) error {
	return c.take(user, "messages", l.MessagesPerHour, l.MessagesPerDay, func(u *usage) *[dayBuckets]int { return &u.msgs })
}

// TakeRecipient counts one more recipient for user, at RCPT, unless that
// would pass a limit.
func (c *Counter) TakeRecipient(user string, l Limits) error {
	return c.take(user, "recipients", l.RecipientsPerHour, l.RecipientsPerDay, func(u *usage) *[dayBuckets]int { return &u.rcpts })
}

func (c *Counter) take(user, what string, perHour, perDay int, counts func(*usage) *[dayBuckets]int) error {
	if c.shared != nil {
		if perHour <= 0 && perDay <= 0 {
			return nil // nothing to hold
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hour, day, taken, err := c.shared.TakeCount(ctx, "send:"+what+":"+user, c.now(), perHour, perDay)
		switch {
		case err != nil:
			return &smtp.Reply{Code: 451, Enhanced: "4.3.0", Text: "The sending limits could not be checked; try again in a few minutes"}
		case taken:
			return nil
		case over(hour+1, perHour):
			return limitReply(450, "4.7.1", what, hour, perHour, "hour")
		}
		return limitReply(550, "5.7.1", what, day, perDay, "day")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.get(user)
	b := counts(u)
	hour, day := sum(b, u.current, hourBuckets), sum(b, u.current, dayBuckets)
	switch {
	case over(hour+1, perHour):
		return limitReply(450, "4.7.1", what, hour, perHour, "hour")
	case over(day+1, perDay):
		return limitReply(550, "5.7.1", what, day, perDay, "day")
	}
	b[u.current%int64(dayBuckets)]++
	return nil
}

// sum adds the last n buckets up to current.
func sum(b *[dayBuckets]int, current int64, n int) int {
	total := 0
	for i := 0; i < n; i++ {
		total += b[(current-int64(i))%int64(dayBuckets)]
	}
	return total
}

func over(n, limit int) bool { return limit > 0 && n > limit }

// ErrLimit marks a refusal by the sending limits (errors.Is), beside its
// SMTP reply (errors.As): the HTTP API answers it 429.
var ErrLimit = errors.New("sending limit reached")

// limitError is a sending limit's refusal: its reply, and ErrLimit.
type limitError struct{ *smtp.Reply }

func (e limitError) Unwrap() []error { return []error{e.Reply, ErrLimit} }

func limitReply(code int, enh, what string, n, limit int, period string) error {
	return limitError{&smtp.Reply{Code: code, Enhanced: enh, Text: fmt.Sprintf(
		"Sending limit reached: %d %s in the past %s, and the limit is %d; try again later or ask your administrator", n, what, period, limit)}}
}
