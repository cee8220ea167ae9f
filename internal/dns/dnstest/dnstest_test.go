package dnstest

import (
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

func ask(t *testing.T, network, addr, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	return askEDNS(t, network, addr, name, qtype, 0)
}

// askEDNS asks with an EDNS0 UDP size (RFC 6891), none for 0.
func askEDNS(t *testing.T, network, addr, name string, qtype uint16, size uint16) *mdns.Msg {
	t.Helper()
	c := &mdns.Client{Net: network, Timeout: 5 * time.Second, UDPSize: size}
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	if size > 0 {
		m.SetEdns0(size, false)
	}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, mdns.TypeToString[qtype], err)
	}
	return resp
}

func answers(m *mdns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		out = append(out, strings.TrimPrefix(rr.String(), rr.Header().String()))
	}
	return out
}

func TestZoneAnswers(t *testing.T) {
	s := Start(t, map[string][]string{
		"example.test. MX":    {"10 mx.example.test."},
		"mx.example.test. A":  {"127.0.0.7", "127.0.0.8"},
		"empty.test. A":       nil,
		"Mixed.Test. TXT":     {`"v=spf1 -all"`},
		"servfail.test. A":    {"127.0.0.9"},
		"b.servfail.test. MX": {"10 x.test."},
	})
	cases := []struct {
		name    string
		qtype   uint16
		rcode   int
		answers []string
	}{
		{"example.test.", mdns.TypeMX, mdns.RcodeSuccess, []string{"10 mx.example.test."}},
		{"mx.example.test.", mdns.TypeA, mdns.RcodeSuccess, []string{"127.0.0.7", "127.0.0.8"}},
		{"MX.Example.TEST.", mdns.TypeA, mdns.RcodeSuccess, []string{"127.0.0.7", "127.0.0.8"}},
		{"example.test.", mdns.TypeA, mdns.RcodeSuccess, nil}, // NODATA
		{"empty.test.", mdns.TypeA, mdns.RcodeSuccess, nil},   // exists, no records
		{"mixed.test.", mdns.TypeTXT, mdns.RcodeSuccess, []string{`"v=spf1 -all"`}},
		{"nowhere.test.", mdns.TypeA, mdns.RcodeNameError, nil},
		{"test.", mdns.TypeA, mdns.RcodeNameError, nil}, // a parent is not a name
		{"servfail.test.", mdns.TypeA, mdns.RcodeServerFailure, nil},
		{"b.servfail.test.", mdns.TypeMX, mdns.RcodeServerFailure, nil},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, c := range cases {
			resp := ask(t, network, s.Addr, c.name, c.qtype)
			if resp.Rcode != c.rcode || strings.Join(answers(resp), "|") != strings.Join(c.answers, "|") {
				t.Errorf("%s %s %s: rcode %s, answers %q; want %s, %q", network, c.name, mdns.TypeToString[c.qtype],
					mdns.RcodeToString[resp.Rcode], answers(resp), mdns.RcodeToString[c.rcode], c.answers)
			}
			if !resp.Authoritative {
				t.Errorf("%s %s: not authoritative", network, c.name)
			}
		}
	}
}

// TestZoneChanges: records set, added and deleted while the server runs
// are answered at once; a name whose last record goes stops existing.
func TestZoneChanges(t *testing.T) {
	s := Start(t, map[string][]string{"a.test. A": {"127.0.0.1"}})
	if err := s.Zone.Set("a.test.", "A", "127.0.0.2"); err != nil {
		t.Fatal(err)
	}
	if got := answers(ask(t, "udp", s.Addr, "a.test.", mdns.TypeA)); strings.Join(got, ",") != "127.0.0.2" {
		t.Errorf("after Set: %q", got)
	}
	if err := s.Zone.Add("a.test. 300 IN AAAA ::1"); err != nil {
		t.Fatal(err)
	}
	if got := answers(ask(t, "udp", s.Addr, "a.test.", mdns.TypeAAAA)); strings.Join(got, ",") != "::1" {
		t.Errorf("after Add: %q", got)
	}
	s.Zone.Delete("a.test.", "A")
	if resp := ask(t, "udp", s.Addr, "a.test.", mdns.TypeA); resp.Rcode != mdns.RcodeSuccess || len(resp.Answer) != 0 {
		t.Errorf("A deleted, AAAA left: rcode %s, %d answers; want NOERROR, none", mdns.RcodeToString[resp.Rcode], len(resp.Answer))
	}
	s.Zone.Delete("a.test.", "AAAA")
	if resp := ask(t, "udp", s.Addr, "a.test.", mdns.TypeA); resp.Rcode != mdns.RcodeNameError {
		t.Errorf("all deleted: rcode %s, want NXDOMAIN", mdns.RcodeToString[resp.Rcode])
	}
	s.Zone.Fail("a.test.")
	if resp := ask(t, "udp", s.Addr, "x.a.test.", mdns.TypeA); resp.Rcode != mdns.RcodeServerFailure {
		t.Errorf("after Fail: rcode %s, want SERVFAIL", mdns.RcodeToString[resp.Rcode])
	}
}

// TestLargeAnswer: over UDP an answer larger than the client takes (512
// octets, or its EDNS0 size) is truncated, TC set, as a real server does;
// over TCP it comes whole.
func TestLargeAnswer(t *testing.T) {
	txt := func(n int) []string { // n strings of 200 octets: ~205 n octets of answer
		var out []string
		for i := range n {
			out = append(out, `"`+strings.Repeat(string(rune('a'+i)), 200)+`"`)
		}
		return out
	}
	s := Start(t, map[string][]string{"four.test. TXT": txt(4), "ten.test. TXT": txt(10)})
	cases := []struct {
		network   string
		name      string
		edns      uint16
		truncated bool
		answers   int
	}{
		{"udp", "four.test.", 0, true, -1},    // ~850 octets > 512
		{"udp", "four.test.", 1232, false, 4}, // fits the resolver's EDNS0 size
		{"udp", "ten.test.", 1232, true, -1},  // ~2,100 octets > 1232
		{"tcp", "ten.test.", 0, false, 10},    // TCP takes it all
		{"tcp", "ten.test.", 1232, false, 10},
	}
	for _, c := range cases {
		resp := askEDNS(t, c.network, s.Addr, c.name, mdns.TypeTXT, c.edns)
		if resp.Truncated != c.truncated || (c.answers >= 0 && len(resp.Answer) != c.answers) {
			t.Errorf("%s %s EDNS0 %d: truncated %v with %d answers; want truncated %v, %d answers",
				c.network, c.name, c.edns, resp.Truncated, len(resp.Answer), c.truncated, c.answers)
		}
		if (c.edns > 0) != (resp.IsEdns0() != nil) {
			t.Errorf("%s %s EDNS0 %d: answer's OPT record %v", c.network, c.name, c.edns, resp.IsEdns0())
		}
	}
}

func TestBadInput(t *testing.T) {
	z := NewZone()
	for _, c := range []struct{ name, typ, data string }{
		{"a.test.", "NOPE", "x"},
		{"a.test.", "MX", "not a preference"},
		{"a.test.", "A", "300.1.1.1"},
		{"a.test.", "A", " "},
	} {
		if err := z.Set(c.name, c.typ, c.data); err == nil {
			t.Errorf("Set(%q, %q, %q): no error", c.name, c.typ, c.data)
		}
	}
	for _, rr := range []string{"a.test. 60 IN MX", "a.test. 60 IN A", "a.test. IN TXT", "a.test. 60 IN MX ; comment"} {
		if err := z.Add(rr); err == nil {
			t.Errorf("Add(%q), a record without data: no error", rr)
		}
	}
	if err := z.Add("a.test. 60 IN MX 0 ."); err != nil {
		t.Errorf("Add of a null MX: %v", err)
	}
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", "192.0.2.1:0", "localhost:0", "nonsense"} {
		if s, err := Serve(z, addr); err == nil {
			s.Close()
			t.Errorf("Serve(%q): no error, want loopback addresses only", addr)
		}
	}
	// A query with no question gets FORMERR.
	s, err := Serve(z, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := &mdns.Client{Timeout: 5 * time.Second}
	m := new(mdns.Msg)
	m.Id = mdns.Id()
	resp, _, err := c.Exchange(m, s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Rcode != mdns.RcodeFormatError {
		t.Errorf("no question: rcode %s, want FORMERR", mdns.RcodeToString[resp.Rcode])
	}
}
