package srs

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestForwardAndReverse(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	r := New([]byte("a secret of sixteen octets or more"))
	r.now = func() time.Time { return now }
	fwd := r.Forward("Alice@Example.com", "forwarder.test")
	if !strings.HasPrefix(fwd, "SRS0=") || !strings.HasSuffix(fwd, "=example.com=Alice@forwarder.test") {
		t.Fatalf("Forward = %q", fwd)
	}
	if back, err := r.Reverse(fwd); err != nil || back != "Alice@example.com" {
		t.Errorf("Reverse(%q) = %q, %v", fwd, back, err)
	}
	if back, err := r.Reverse(strings.ToLower(fwd)); err != nil || back != "alice@example.com" {
		t.Errorf("Reverse of the address lowered on the way = %q, %v", back, err)
	}
	for _, same := range []string{"", "bob@forwarder.test"} {
		if got := r.Forward(same, "forwarder.test"); got != same {
			t.Errorf("Forward(%q) = %q, want it unchanged", same, got)
		}
	}
	// Another forwarder's SRS0 address, forwarded again: SRS1, which
	// reverses to that forwarder's SRS0 address.
	other := New([]byte("another forwarder's secret, long"))
	other.now = r.now
	first := other.Forward("alice@example.com", "first.test")
	second := r.Forward(first, "forwarder.test")
	if !strings.HasPrefix(second, "SRS1=") {
		t.Fatalf("Forward of an SRS0 address = %q", second)
	}
	if back, err := r.Reverse(second); err != nil || back != first {
		t.Errorf("Reverse(%q) = %q, %v; want %q", second, back, err, first)
	}
	// Too old, forged, or not SRS at all.
	r.now = func() time.Time { return now.Add(MaxAge + 48*time.Hour) }
	if _, err := r.Reverse(fwd); err == nil || !strings.Contains(err.Error(), "older than") {
		t.Errorf("an address of 23 days ago: %v", err)
	}
	r.now = func() time.Time { return now }
	forged := "SRS0=AAAAAAAA" + fwd[13:]
	if _, err := r.Reverse(forged); err == nil || !strings.Contains(err.Error(), "not made here") {
		t.Errorf("a forged hash: %v", err)
	}
	if _, err := other.Reverse(fwd); err == nil {
		t.Error("another secret reversed our address")
	}
	for _, a := range []string{"alice@forwarder.test", "SRS0=x@forwarder.test", "SRS0@x", "nope"} {
		if _, err := r.Reverse(a); err == nil || (a == "alice@forwarder.test" && !errors.Is(err, ErrNotSRS)) {
			t.Errorf("Reverse(%q): %v", a, err)
		}
	}
}

// FuzzReverse: any address reverses to an error or to an address that
// is not empty, and never panics.
func FuzzReverse(f *testing.F) {
	r := New([]byte("a secret of sixteen octets or more"))
	f.Add(r.Forward("alice@example.com", "fwd.test"))
	f.Add("SRS1=XXXX=a.test==HHHH=TT=b.test=c@fwd.test")
	f.Fuzz(func(t *testing.T, addr string) {
		if back, err := r.Reverse(addr); err == nil && back == "" {
			t.Errorf("Reverse(%q) = empty", addr)
		}
	})
}
