package authlimit

import (
	"net/netip"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestLimiter(t *testing.T) {
	ip1, ip2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	p := Policy{MaxFailures: 4, Window: 10 * time.Minute, BaseDelay: 100 * time.Millisecond, MaxDelay: 300 * time.Millisecond}

	t.Run("delays grow and are capped", func(t *testing.T) {
		l := New(p, (&clock{time.Unix(0, 0)}).now)
		var got []time.Duration
		for i := 0; i < 3; i++ {
			got = append(got, l.Failed(ip1, "a"+string(rune('0'+i))))
		}
		want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("delays %v, want %v", got, want)
			}
		}
	})
	t.Run("an IP is banned after the limit, then forgiven after the window", func(t *testing.T) {
		c := &clock{time.Unix(0, 0)}
		l := New(p, c.now)
		for i := 0; i < 4; i++ {
			acct := "user" + string(rune('a'+i))
			if v, _ := l.Begin(ip1, acct); v != Allow {
				t.Fatalf("attempt %d refused early", i)
			}
			l.Failed(ip1, acct)
		}
		if v, left := l.Begin(ip1, "other"); v != IPBanned || left != 10*time.Minute {
			t.Errorf("after 4 failures: %v, %v", v, left)
		}
		if v, _ := l.Begin(ip2, "other"); v != Allow {
			t.Error("another IP is banned too")
		}
		c.t = c.t.Add(11 * time.Minute)
		if v, _ := l.Begin(ip1, "other"); v != Allow {
			t.Error("the ban did not end")
		}
	})
	t.Run("an account is locked by failures from many IPs", func(t *testing.T) {
		l := New(p, (&clock{time.Unix(0, 0)}).now)
		for i := 0; i < 4; i++ {
			l.Failed(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), "alice")
		}
		if v, _ := l.Begin(ip2, "alice"); v != AccountLocked {
			t.Errorf("alice not locked: %v", v)
		}
		if v, _ := l.Begin(ip2, "bob"); v != Allow {
			t.Errorf("bob locked: %v", v)
		}
	})
	t.Run("success forgets the account's failures", func(t *testing.T) {
		l := New(p, (&clock{time.Unix(0, 0)}).now)
		for i := 0; i < 3; i++ {
			l.Failed(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), "alice")
		}
		l.Succeeded(ip1, "alice")
		l.Failed(ip2, "alice")
		if v, _ := l.Begin(ip1, "alice"); v != Allow {
			t.Errorf("alice locked after a success: %v", v)
		}
	})
	t.Run("a zero policy never limits", func(t *testing.T) {
		l := New(Policy{}, nil)
		for i := 0; i < 100; i++ {
			if d := l.Failed(ip1, "a"); d != 0 {
				t.Fatal("delay without a policy")
			}
		}
		if v, _ := l.Begin(ip1, "a"); v != Allow {
			t.Error("ban without a policy")
		}
	})
}

func TestLimiterCountsAttemptsUnderWay(t *testing.T) {
	p := Policy{MaxFailures: 3, Window: time.Minute, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}
	l := New(p, nil)
	ip := netip.MustParseAddr("2001:db8:1:2::10")
	for i := 0; i < 3; i++ {
		if v, _ := l.Begin(ip, "a"); v != Allow {
			t.Fatalf("attempt %d refused", i)
		}
	}
	if v, _ := l.Begin(ip, "b"); v != Busy {
		t.Errorf("a fourth parallel attempt: %v, want Busy", v)
	}
	for i := 0; i < 3; i++ {
		l.Failed(ip, "a")
	}
	if v, _ := l.Begin(netip.MustParseAddr("2001:db8:1:2::99"), "c"); v != IPBanned {
		t.Errorf("another address in the same /64: %v, want IPBanned", v)
	}
	if v, _ := l.Begin(netip.MustParseAddr("2001:db8:1:3::10"), "c"); v != Allow {
		t.Errorf("another /64: %v, want Allow", v)
	}
}
