package authlimit

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestLimiter(t *testing.T) {
	c1, c2 := pfx("192.0.2.1/32"), pfx("192.0.2.2/32")
	p := Policy{MaxFailures: 6, MaxPairFailures: 3, Window: 10 * time.Minute, BaseDelay: 100 * time.Millisecond, MaxDelay: 300 * time.Millisecond}

	t.Run("delays grow and are capped", func(t *testing.T) {
		l := New(p, (&clock{time.Unix(0, 0)}).now)
		var got []time.Duration
		for i := 0; i < 3; i++ {
			got = append(got, l.Failed(c1, "a"+string(rune('0'+i))))
		}
		want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("delays %v, want %v", got, want)
			}
		}
	})
	t.Run("a prefix is banned after the limit, then forgiven after the window", func(t *testing.T) {
		c := &clock{time.Unix(0, 0)}
		l := New(p, c.now)
		for i := 0; i < 6; i++ {
			acct := "user" + string(rune('a'+i))
			if v, _ := l.Begin(c1, acct); v != Allow {
				t.Fatalf("attempt %d refused early", i)
			}
			l.Failed(c1, acct)
		}
		if v, left := l.Begin(c1, "other"); v != ClientBanned || left != 10*time.Minute {
			t.Errorf("after 6 failures: %v, %v", v, left)
		}
		if v, _ := l.Begin(c2, "other"); v != Allow {
			t.Error("another prefix is banned too")
		}
		c.t = c.t.Add(11 * time.Minute)
		if v, _ := l.Begin(c1, "other"); v != Allow {
			t.Error("the ban did not end")
		}
	})
	t.Run("failures for one account lock only that account from that prefix", func(t *testing.T) {
		l := New(p, (&clock{time.Unix(0, 0)}).now)
		for i := 0; i < 3; i++ {
			l.Begin(c1, "bob")
			l.Failed(c1, "bob")
		}
		if v, _ := l.Begin(c1, "bob"); v != PairLocked {
			t.Errorf("bob from the guessing prefix: %v, want PairLocked", v)
		}
		if v, _ := l.Begin(c2, "bob"); v != Allow {
			t.Errorf("bob from another prefix: %v, want Allow", v)
		}
		if v, _ := l.Begin(c1, "alice"); v != Allow {
			t.Errorf("alice from the guessing prefix (not yet banned): %v, want Allow", v)
		}
	})
	t.Run("spraying one account from many prefixes never refuses it, only slows failures", func(t *testing.T) {
		l := New(p, (&clock{time.Unix(0, 0)}).now)
		var last time.Duration
		for i := 0; i < 50; i++ {
			c := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 32)
			if v, _ := l.Begin(c, "alice"); v != Allow {
				t.Fatalf("attempt %d from a fresh prefix refused: %v", i, v)
			}
			last = l.Failed(c, "alice")
		}
		if last != p.MaxDelay {
			t.Errorf("the 50th failure of a sprayed account waits %v, want the maximum %v", last, p.MaxDelay)
		}
		if v, _ := l.Begin(c2, "alice"); v != Allow {
			t.Errorf("alice from a clean prefix: %v, want Allow", v)
		}
	})
	t.Run("success forgets the pair's failures", func(t *testing.T) {
		l := New(p, (&clock{time.Unix(0, 0)}).now)
		for i := 0; i < 2; i++ {
			l.Begin(c1, "alice")
			l.Failed(c1, "alice")
		}
		l.Begin(c1, "alice")
		l.Succeeded(c1, "alice")
		for i := 0; i < 2; i++ {
			l.Begin(c1, "alice")
			l.Failed(c1, "alice")
		}
		if v, _ := l.Begin(c1, "alice"); v != Allow {
			t.Errorf("alice locked after a success: %v", v)
		}
	})
	t.Run("a zero policy never limits", func(t *testing.T) {
		l := New(Policy{}, nil)
		for i := 0; i < 100; i++ {
			if d := l.Failed(c1, "a"); d != 0 {
				t.Fatal("delay without a policy")
			}
		}
		if v, _ := l.Begin(c1, "a"); v != Allow {
			t.Error("ban without a policy")
		}
	})
}

func TestLimiterCountsAttemptsUnderWay(t *testing.T) {
	p := Policy{MaxFailures: 3, Window: time.Minute, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}
	l := New(p, nil)
	c := pfx("2001:db8:1:2::/64")
	for i := 0; i < 3; i++ {
		if v, _ := l.Begin(c, "a"+string(rune('0'+i))); v != Allow {
			t.Fatalf("attempt %d refused", i)
		}
	}
	if v, _ := l.Begin(c, "b"); v != Busy {
		t.Errorf("a fourth parallel attempt: %v, want Busy", v)
	}
	for i := 0; i < 3; i++ {
		l.Failed(c, "a"+string(rune('0'+i)))
	}
	if v, _ := l.Begin(c, "c"); v != ClientBanned {
		t.Errorf("after the failures: %v, want ClientBanned", v)
	}
	if v, _ := l.Begin(pfx("2001:db8:1:3::/64"), "c"); v != Allow {
		t.Errorf("another /64: %v, want Allow", v)
	}
}

// TestLimiterMemoryIsBounded: refused attempts, under any number of names,
// leave no records; attempts that end without a failure leave none either.
func TestLimiterMemoryIsBounded(t *testing.T) {
	p := Policy{MaxFailures: 2, MaxPairFailures: 2, Window: time.Minute, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}
	l := New(p, nil)
	banned, clean := pfx("192.0.2.1/32"), pfx("192.0.2.2/32")
	for i := 0; i < 2; i++ {
		l.Begin(banned, "x")
		l.Failed(banned, "x")
	}
	for i := 0; i < 10000; i++ {
		if v, _ := l.Begin(banned, fmt.Sprintf("name-%d", i)); v != ClientBanned {
			t.Fatalf("attempt %d from a banned prefix: %v", i, v)
		}
		if v, _ := l.Begin(clean, fmt.Sprintf("name-%d", i)); v != Allow {
			t.Fatalf("attempt %d from a clean prefix: %v", i, v)
		}
		l.Done(clean, fmt.Sprintf("name-%d", i)) // a cancelled exchange
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pairs) > 1 || len(l.clients) > 1 {
		t.Errorf("after 20,000 refused or cancelled attempts the limiter keeps %d pair and %d client records, want at most 1 each", len(l.pairs), len(l.clients))
	}
}

// TestLimiterPolicyOffWhileInFlight: an attempt begun while limiting was on
// and failed after it was turned off is still ended.
func TestLimiterPolicyOffWhileInFlight(t *testing.T) {
	p := Policy{MaxFailures: 1, Window: time.Minute, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}
	l := New(p, nil)
	c := pfx("192.0.2.3/32")
	l.Begin(c, "a")
	l.SetPolicy(Policy{})
	l.Failed(c, "a")
	l.SetPolicy(p)
	if n := l.UnderWay(); n != 0 {
		t.Errorf("%d attempts still under way", n)
	}
	if v, _ := l.Begin(c, "a"); v != Allow {
		t.Errorf("after the policy came back: %v, want Allow", v)
	}
}
