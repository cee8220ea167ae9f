package webhook

import (
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"
)

// TestAllowed: a webhook connects to public addresses, never to this side's
// (loopback, private, link-local, multicast, unspecified) unless its
// network is allowed.
func TestAllowed(t *testing.T) {
	s := New(nil, Config{Timeout: time.Second, AllowNetworks: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}, slog.New(slog.DiscardHandler))
	for _, c := range []struct {
		addr string
		ok   bool
	}{
		{"93.184.216.34:443", true},
		{"[2606:4700::1111]:443", true},
		{"127.0.0.1:8080", false},
		{"[::1]:80", false},
		{"10.2.3.4:80", false},
		{"10.1.3.4:80", true},
		{"192.168.1.1:80", false},
		{"169.254.169.254:80", false},
		{"[fe80::1]:80", false},
		{"[::ffff:127.0.0.1]:80", false},
		{"0.0.0.0:80", false},
		{"224.0.0.1:80", false},
	} {
		err := s.allowed("tcp", c.addr, nil)
		if (err == nil) != c.ok || err != nil && !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("allowed(%s) = %v, want ok %v", c.addr, err, c.ok)
		}
	}
}

func TestSignVerify(t *testing.T) {
	body := []byte(`{"id":1}`)
	now := time.Now()
	h := Sign([]string{"new", "old"}, now, body)
	for _, secret := range []string{"new", "old"} {
		if err := Verify(h, secret, body, now, time.Minute); err != nil {
			t.Errorf("Verify with %q: %v", secret, err)
		}
	}
	if err := Verify(h, "other", body, now, time.Minute); !errors.Is(err, ErrSignature) {
		t.Errorf("a wrong secret: %v", err)
	}
	if err := Verify(h, "new", []byte(`{"id":2}`), now, time.Minute); !errors.Is(err, ErrSignature) {
		t.Errorf("a changed body: %v", err)
	}
	if err := Verify(h, "new", body, now.Add(time.Hour), time.Minute); err == nil {
		t.Error("an old signature was taken")
	}
}
