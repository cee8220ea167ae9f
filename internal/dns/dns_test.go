package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"

	"mailroom/internal/dns/dnstest"
)

func TestLookupMX(t *testing.T) {
	addr := dnstest.Start(t, map[string][]string{
		"two.test. MX":       {"20 mx2.two.test.", "10 mx1.two.test."},
		"equal.test. MX":     {"10 a.equal.test.", "10 b.equal.test.", "10 c.equal.test.", "5 first.equal.test."},
		"nomx.test. A":       {"127.0.0.5"},
		"nullmx.test. MX":    {"0 ."},
		"mx1.two.test. A":    {"127.0.0.11"},
		"mx1.two.test. AAAA": {"::1"},
	}).Addr
	r, err := New(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cases := []struct {
		name   string
		domain string
		want   []string
		err    error
	}{
		{"exchangers come in preference order", "two.test", []string{"mx1.two.test", "mx2.two.test"}, nil},
		{"a domain without MX is its own exchanger", "nomx.test", []string{"nomx.test"}, nil},
		{"a null MX means no mail", "nullmx.test", nil, ErrNullMX},
		{"a domain that does not exist is permanent", "nowhere.test", nil, ErrNoDomain},
		{"SERVFAIL is temporary", "x.servfail.test", nil, ErrTemporary},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mxs, err := r.LookupMX(ctx, c.domain)
			if !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			var got []string
			for _, m := range mxs {
				got = append(got, m.Host)
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("got %v, want %v", got, c.want)
				}
			}
		})
	}
	t.Run("equal preferences come in every order over many lookups", func(t *testing.T) {
		seen := map[string]bool{}
		for i := 0; i < 200 && len(seen) < 6; i++ {
			mxs, err := r.LookupMX(ctx, "equal.test")
			if err != nil {
				t.Fatal(err)
			}
			if mxs[0].Host != "first.equal.test" {
				t.Fatalf("the lowest preference is not first: %v", mxs)
			}
			seen[mxs[1].Host+mxs[2].Host+mxs[3].Host] = true
		}
		if len(seen) < 6 {
			t.Errorf("only %d of 6 orders of equal exchangers in 200 lookups", len(seen))
		}
	})
	t.Run("addresses of a host, IPv6 and IPv4", func(t *testing.T) {
		ips, err := r.LookupIP(ctx, "mx1.two.test")
		if err != nil || len(ips) != 2 || ips[0] != netip.MustParseAddr("::1") || ips[1] != netip.MustParseAddr("127.0.0.11") {
			t.Errorf("LookupIP = %v, %v", ips, err)
		}
		if _, err := r.LookupIP(ctx, "mx2.two.test"); !errors.Is(err, ErrNoDomain) {
			t.Errorf("a host without records: %v", err)
		}
		if _, err := r.LookupIP(ctx, "h.servfail.test"); !errors.Is(err, ErrTemporary) {
			t.Errorf("SERVFAIL: %v", err)
		}
		if _, err := r.LookupIP(ctx, "nullmx.test"); !errors.Is(err, ErrNoAddress) {
			t.Errorf("an existing name without addresses: %v", err)
		}
	})
	t.Run("a server that does not answer is temporary", func(t *testing.T) {
		pc, _ := net.ListenPacket("udp", "127.0.0.1:0") // never answers
		defer pc.Close()
		r2, _ := New(pc.LocalAddr().String(), "")
		r2.timeout = 200e6
		if _, err := r2.LookupMX(ctx, "two.test"); !errors.Is(err, ErrTemporary) {
			t.Errorf("err = %v, want ErrTemporary", err)
		}
	})
}

func TestLookupTXTAndPTR(t *testing.T) {
	long := ""
	for range 30 {
		long += "0123456789"
	}
	addr := dnstest.Start(t, map[string][]string{
		"spf.test. TXT":               {`"v=spf1 " "-all"`, `"other"`},
		"long.test. TXT":              {`"` + long + `" "` + long + `"`},
		"a.only.test. A":              {"127.0.0.9"},
		"9.0.0.127.in-addr.arpa. PTR": {"Host.Example.Test."},
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa. PTR": {"six.test."},
	}).Addr
	r, err := New(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		want []string
		err  error
	}{
		{"spf.test", []string{"v=spf1 -all", "other"}, nil},
		{"long.test", []string{long + long}, nil}, // over UDP's size: read again over TCP
		{"a.only.test", nil, nil},
		{"nowhere.test", nil, ErrNoDomain},
		{"x.servfail.test", nil, ErrTemporary},
	} {
		got, err := r.LookupTXT(ctx, tc.name)
		if !errors.Is(err, tc.err) || len(got) != len(tc.want) {
			t.Errorf("LookupTXT(%s) = %q, %v; want %q, %v", tc.name, got, err, tc.want, tc.err)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("LookupTXT(%s) = %q, want %q", tc.name, got, tc.want)
			}
		}
	}
	for ip, want := range map[string]string{"127.0.0.9": "host.example.test", "::1": "six.test", "127.0.0.10": ""} {
		names, err := r.LookupPTR(ctx, netip.MustParseAddr(ip))
		if err != nil || (want == "") != (len(names) == 0) || (want != "" && names[0] != want) {
			t.Errorf("LookupPTR(%s) = %q, %v; want %q", ip, names, err, want)
		}
	}
}

func TestTrustAD(t *testing.T) {
	tests := []struct {
		server, mode string
		want         bool
	}{
		{"127.0.0.1:53", "auto", true},
		{"[::1]:53", "", true},
		{"192.0.2.53:53", "auto", false}, // an AD bit from afar could be forged on the way
		{"192.0.2.53:53", "on", true},
		{"127.0.0.1:53", "off", false},
	}
	for _, tt := range tests {
		r, err := New(tt.server, tt.mode)
		if err != nil {
			t.Fatal(err)
		}
		if r.Validating() != tt.want {
			t.Errorf("New(%q, %q).Validating() = %v, want %v", tt.server, tt.mode, r.Validating(), tt.want)
		}
	}
	if _, err := New("127.0.0.1:53", "maybe"); err == nil {
		t.Error("New with dnssec \"maybe\": no error")
	}
	f := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(f, []byte("nameserver 192.0.2.1\noptions edns0 trust-ad\n"), 0o600)
	if !resolvConfTrustsAD(f) {
		t.Error("options trust-ad not seen")
	}
}

// TestSecureAddresses: addresses count as validated when every answer
// that gave some was; a family whose lookup failed gives none and does not
// make the other's validated addresses unvalidated (or whoever can break
// one lookup could turn DANE off), and an unvalidated answer that gives
// addresses makes them all unvalidated.
func TestSecureAddresses(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		switch {
		case strings.HasPrefix(q.Name, "aaaa-fails.") && q.Qtype == mdns.TypeAAAA:
			m.Rcode = mdns.RcodeServerFailure
		case q.Qtype == mdns.TypeA:
			m.AuthenticatedData = !strings.HasPrefix(q.Name, "a-insecure.")
			rr, _ := mdns.NewRR(q.Name + " 60 IN A 192.0.2.1")
			m.Answer = append(m.Answer, rr)
		case q.Qtype == mdns.TypeAAAA:
			m.AuthenticatedData = true
			rr, _ := mdns.NewRR(q.Name + " 60 IN AAAA 2001:db8::1")
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	defer srv.Shutdown()
	r, err := New(pc.LocalAddr().String(), "auto")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		host   string
		n      int
		secure bool
	}{
		{"both.test", 2, true},
		{"aaaa-fails.test", 1, true},
		{"a-insecure.test", 2, false},
	} {
		addrs, secure, err := r.LookupIPSecure(t.Context(), tt.host)
		if err != nil || len(addrs) != tt.n || secure != tt.secure {
			t.Errorf("LookupIPSecure(%s) = %v, %v, %v; want %d addresses, secure %v", tt.host, addrs, secure, err, tt.n, tt.secure)
		}
	}
}
