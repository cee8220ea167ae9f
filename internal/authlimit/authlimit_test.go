package authlimit

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

var ctx = context.Background()

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
			got = append(got, l.Failed(ctx, c1, "a"+string(rune('0'+i))))
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
			if v, _ := l.Begin(ctx, c1, acct); v != Allow {
				t.Fatalf("attempt %d refused early", i)
			}
			l.Failed(ctx, c1, acct)
		}
		if v, left := l.Begin(ctx, c1, "other"); v != ClientBanned || left != 10*time.Minute {
			t.Errorf("after 6 failures: %v, %v", v, left)
		}
		if v, _ := l.Begin(ctx, c2, "other"); v != Allow {
			t.Error("another prefix is banned too")
		}
		c.t = c.t.Add(11 * time.Minute)
		if v, _ := l.Begin(ctx, c1, "other"); v != Allow {
			t.Error("the ban did not end")
		}
	})
	t.Run("failures for one account lock only that account from that prefix", func(t *testing.T) {
		l := New(p, (&clock{time.Unix(0, 0)}).now)
		for i := 0; i < 3; i++ {
			l.Begin(ctx, c1, "bob")
			l.Failed(ctx, c1, "bob")
		}
		if v, _ := l.Begin(ctx, c1, "bob"); v != PairLocked {
			t.Errorf("bob from the guessing prefix: %v, want PairLocked", v)
		}
		if v, _ := l.Begin(ctx, c2, "bob"); v != Allow {
			t.Errorf("bob from another prefix: %v, want Allow", v)
		}
		if v, _ := l.Begin(ctx, c1, "alice"); v != Allow {
			t.Errorf("alice from the guessing prefix (not yet banned): %v, want Allow", v)
		}
	})
	t.Run("spraying one account from many prefixes never refuses it, only slows failures", func(t *testing.T) {
		l := New(p, (&clock{time.Unix(0, 0)}).now)
		var last time.Duration
		for i := 0; i < 50; i++ {
			c := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 32)
			if v, _ := l.Begin(ctx, c, "alice"); v != Allow {
				t.Fatalf("attempt %d from a fresh prefix refused: %v", i, v)
			}
			last = l.Failed(ctx, c, "alice")
		}
		if last != p.MaxDelay {
			t.Errorf("the 50th failure of a sprayed account waits %v, want the maximum %v", last, p.MaxDelay)
		}
		if v, _ := l.Begin(ctx, c2, "alice"); v != Allow {
			t.Errorf("alice from a clean prefix: %v, want Allow", v)
		}
	})
	t.Run("success forgets the pair's failures", func(t *testing.T) {
		l := New(p, (&clock{time.Unix(0, 0)}).now)
		for i := 0; i < 2; i++ {
			l.Begin(ctx, c1, "alice")
			l.Failed(ctx, c1, "alice")
		}
		l.Begin(ctx, c1, "alice")
		l.Succeeded(ctx, c1, "alice")
		for i := 0; i < 2; i++ {
			l.Begin(ctx, c1, "alice")
			l.Failed(ctx, c1, "alice")
		}
		if v, _ := l.Begin(ctx, c1, "alice"); v != Allow {
			t.Errorf("alice locked after a success: %v", v)
		}
	})
	t.Run("a zero policy never limits", func(t *testing.T) {
		l := New(Policy{}, nil)
		for i := 0; i < 100; i++ {
			if d := l.Failed(ctx, c1, "a"); d != 0 {
				t.Fatal("delay without a policy")
			}
		}
		if v, _ := l.Begin(ctx, c1, "a"); v != Allow {
			t.Error("ban without a policy")
		}
	})
}

func TestLimiterCountsAttemptsUnderWay(t *testing.T) {
	p := Policy{MaxFailures: 3, Window: time.Minute, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}
	l := New(p, nil)
	c := pfx("2001:db8:1:2::/64")
	for i := 0; i < 3; i++ {
		if v, _ := l.Begin(ctx, c, "a"+string(rune('0'+i))); v != Allow {
			t.Fatalf("attempt %d refused", i)
		}
	}
	if v, _ := l.Begin(ctx, c, "b"); v != Busy {
		t.Errorf("a fourth parallel attempt: %v, want Busy", v)
	}
	for i := 0; i < 3; i++ {
		l.Failed(ctx, c, "a"+string(rune('0'+i)))
	}
	if v, _ := l.Begin(ctx, c, "c"); v != ClientBanned {
		t.Errorf("after the failures: %v, want ClientBanned", v)
	}
	if v, _ := l.Begin(ctx, pfx("2001:db8:1:3::/64"), "c"); v != Allow {
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
		l.Begin(ctx, banned, "x")
		l.Failed(ctx, banned, "x")
	}
	for i := 0; i < 10000; i++ {
		if v, _ := l.Begin(ctx, banned, fmt.Sprintf("name-%d", i)); v != ClientBanned {
			t.Fatalf("attempt %d from a banned prefix: %v", i, v)
		}
		if v, _ := l.Begin(ctx, clean, fmt.Sprintf("name-%d", i)); v != Allow {
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
	l.Begin(ctx, c, "a")
	l.SetPolicy(Policy{})
	l.Failed(ctx, c, "a")
	l.SetPolicy(p)
	if n := l.UnderWay(); n != 0 {
		t.Errorf("%d attempts still under way", n)
	}
	if v, _ := l.Begin(ctx, c, "a"); v != Allow {
		t.Errorf("after the policy came back: %v, want Allow", v)
	}
}

// counts is a store of shared failures for two limiters in one test (the
// PostgreSQL store's own is tested in its package and across real nodes
// in tests/postgres_test.go).
type counts map[string][]time.Time

func (c counts) AddLoginFailures(_ context.Context, keys []string, now time.Time, window time.Duration) ([]int, error) {
	for _, k := range keys {
		c[k] = append(c[k], now)
	}
	return c.LoginFailureCounts(context.Background(), keys, now, window)
}

func (c counts) LoginFailureCounts(_ context.Context, keys []string, now time.Time, window time.Duration) ([]int, error) {
	n := make([]int, len(keys))
	for i, k := range keys {
		for _, t := range c[k] {
			if now.Sub(t) < window {
				n[i]++
			}
		}
	}
	return n, nil
}

func (c counts) ForgetLoginFailures(_ context.Context, key string) error {
	delete(c, key)
	return nil
}

// TestLimiterShared: two nodes' limiters sharing their failures ban a
// prefix and lock a pair once the failures on both reach the limits, grow
// the delay with them, and a right password on one forgets the pair's on
// both.
func TestLimiterShared(t *testing.T) {
	c1, c2 := pfx("192.0.2.1/32"), pfx("192.0.2.2/32")
	p := Policy{MaxFailures: 6, MaxPairFailures: 3, Window: 10 * time.Minute, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}
	clk := &clock{time.Unix(0, 0)}
	sh := counts{}
	a, b := New(p, clk.now), New(p, clk.now)
	a.SetShared(sh)
	b.SetShared(sh)
	fail := func(l *Limiter, c netip.Prefix, acct string) time.Duration {
		if v, _ := l.Begin(ctx, c, acct); v != Allow {
			t.Fatalf("attempt for %s refused: %v", acct, v)
		}
		return l.Failed(ctx, c, acct)
	}
	fail(a, c1, "bob")
	if d := fail(b, c1, "bob"); d != 200*time.Millisecond {
		t.Errorf("the second failure of the pair (on the other node) waits %v, want 200ms", d)
	}
	if v, _ := b.Begin(ctx, c1, "bob"); v != Allow {
		t.Fatalf("third attempt: %v", v)
	}
	b.Succeeded(ctx, c1, "bob") // the right password forgets the pair's failures everywhere
	fail(a, c1, "bob")
	fail(b, c1, "bob")
	if v, _ := a.Begin(ctx, c1, "bob"); v != Allow {
		t.Errorf("after a right password, two more failures lock the pair: %v", v)
	} else {
		a.Done(c1, "bob")
	}
	fail(a, c1, "bob")
	if v, _ := b.Begin(ctx, c1, "bob"); v != PairLocked {
		t.Errorf("three failures of the pair on two nodes: %v, want PairLocked", v)
	}
	if v, _ := b.Begin(ctx, c2, "bob"); v != Allow {
		t.Errorf("bob from another prefix: %v, want Allow", v)
	} else {
		b.Done(c2, "bob")
	}
	fail(b, c1, "carol") // the prefix's sixth failure
	for _, l := range []*Limiter{a, b} {
		if v, left := l.Begin(ctx, c1, "dave"); v != ClientBanned || left != p.Window {
			t.Errorf("after six failures from the prefix on two nodes: %v %v, want ClientBanned for the window", v, left)
		}
	}
	clk.t = clk.t.Add(p.Window)
	if v, _ := a.Begin(ctx, c1, "dave"); v != Allow {
		t.Errorf("a window later: %v, want Allow", v)
	}
}

// TestLimiterSharedOff: with limiting off, a shared store refuses nobody.
func TestLimiterSharedOff(t *testing.T) {
	l := New(Policy{}, nil)
	l.SetShared(counts{})
	if v, _ := l.Begin(ctx, pfx("192.0.2.1/32"), "bob"); v != Allow {
		t.Errorf("limiting off: %v, want Allow", v)
	}
}

// TestLimiterSharedUnderWay: attempts under way on this node count against
// what the failures on every node leave: with one failure left, a second
// attempt at once waits (Busy).
func TestLimiterSharedUnderWay(t *testing.T) {
	c1 := pfx("192.0.2.1/32")
	clk := &clock{time.Unix(0, 0)}
	p := Policy{MaxFailures: 4, Window: time.Minute, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}
	sh := counts{}
	other := New(p, clk.now)
	other.SetShared(sh)
	for i := range 3 {
		other.Begin(ctx, c1, fmt.Sprint("a", i))
		other.Failed(ctx, c1, fmt.Sprint("a", i))
	}
	l := New(p, clk.now)
	l.SetShared(sh)
	if v, _ := l.Begin(ctx, c1, "b1"); v != Allow {
		t.Fatalf("the last attempt left: %v", v)
	}
	if v, _ := l.Begin(ctx, c1, "b2"); v != Busy {
		t.Errorf("a second attempt at once with one left: %v, want Busy", v)
	}
	l.Failed(ctx, c1, "b1")
	if v, _ := l.Begin(ctx, c1, "b3"); v != ClientBanned {
		t.Errorf("after the fourth failure: %v, want ClientBanned", v)
	}
	sh["c "+c1.String()] = nil // even if the store forgot: remembered here
	if v, _ := l.Begin(ctx, c1, "b4"); v != ClientBanned {
		t.Errorf("the ban kept here: %v, want ClientBanned", v)
	}
}
