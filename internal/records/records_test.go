package records

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"mailroom/internal/config"
	"mailroom/internal/dkim"
	"mailroom/internal/store"
)

func TestFor(t *testing.T) {
	now := time.Now()
	var keys []store.DKIMKey
	for _, tc := range []struct {
		sel      string
		from     time.Time
		retireAt time.Time
	}{
		{"gone", now.Add(-48 * time.Hour), now.Add(-time.Hour)},
		{"signs", now.Add(-24 * time.Hour), time.Time{}},
		{"soon", now.Add(24 * time.Hour), time.Time{}},
	} {
		k, err := dkim.NewKey("example.test", tc.sel, store.DKIMEd25519, now, tc.from)
		if err != nil {
			t.Fatal(err)
		}
		k.RetireAt = tc.retireAt
		keys = append(keys, k)
	}
	in := Inputs{Domain: "example.test", Hostname: "mx.example.test.", Keys: keys, Now: now,
		Listen:   config.Listen{Submissions: []config.HostPort{config.NewHostPort("0.0.0.0:465")}, IMAPS: []config.HostPort{config.NewHostPort("[::]:993")}},
		Outbound: []netip.Addr{netip.MustParseAddr("192.0.2.25"), netip.MustParseAddr("2001:db8::25")},
		Relays:   []string{"smtp.relay.example"}}
	rs, err := For(in)
	if err != nil {
		t.Fatal(err)
	}
	find := func(name, typ string) []Record {
		var out []Record
		for _, r := range rs {
			if r.Name == name && r.Type == typ {
				out = append(out, r)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name, typ, value, why string
	}{
		{"example.test", "MX", "10 mx.example.test.", ""},
		{"example.test", "TXT", "v=spf1 ip4:192.0.2.25 ip6:2001:db8::25 -all", ""},
		{"signs._domainkey.example.test", "TXT", "v=DKIM1; k=ed25519; p=", "signing"},
		{"soon._domainkey.example.test", "TXT", "v=DKIM1; k=ed25519; p=", "next) from "},
		{"_dmarc.example.test", "TXT", "v=DMARC1; p=quarantine;", ""},
		{"_smtp._tls.example.test", "TXT", "v=TLSRPTv1; rua=mailto:postmaster@example.test", ""},
		{"_submissions._tcp.example.test", "SRV", "0 1 465 mx.example.test.", ""},
		{"_imaps._tcp.example.test", "SRV", "0 1 993 mx.example.test.", ""},
		{"25.2.0.192.in-addr.arpa", "PTR", "mx.example.test.", ""},
		{"5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", "PTR", "mx.example.test.", ""},
	} {
		got := find(tc.name, tc.typ)
		if len(got) != 1 || !strings.HasPrefix(got[0].Value, tc.value) || !strings.Contains(got[0].Why, tc.why) {
			t.Errorf("%s %s: %+v, want one starting %q", tc.name, tc.typ, got, tc.value)
		}
	}
	if got := find("gone._domainkey.example.test", "TXT"); len(got) != 0 {
		t.Errorf("a retired key is still published: %+v", got)
	}
	if got := find("_imap._tcp.example.test", "SRV"); len(got) != 0 {
		t.Errorf("an SRV record for a service not listened on: %+v", got)
	}
	if spf := find("example.test", "TXT"); len(spf) != 1 || !strings.Contains(spf[0].Advice, "smtp.relay.example") {
		t.Errorf("SPF does not say the relay's include is needed: %+v", spf)
	}

	// Without known outbound addresses: "mx" in SPF, and a PTR to set for
	// the host's own addresses.
	in.Outbound, in.Relays = nil, nil
	rs, _ = For(in)
	if spf := find("example.test", "TXT"); len(spf) != 1 || spf[0].Value != "v=spf1 mx -all" || spf[0].Advice != "" {
		t.Errorf("SPF without outbound addresses: %+v", spf)
	}
	zone := Zone(rs)
	for _, want := range []string{"example.test.                            3600 IN MX    10 mx.example.test.\n",
		"; (each address, reversed)", "; DKIM key (ed25519, signing)\n"} {
		if !strings.Contains(zone, want) {
			t.Errorf("the zone text lacks %q:\n%s", want, zone)
		}
	}
}
