package dnstest

import (
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

func ask(t *testing.T, network, addr, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	c := &mdns.Client{Net: network, Timeout: 5 * time.Second}
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
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

// TestLargeAnswer: an answer too large for 512 octets is truncated over
// UDP (TC set, as a real server does) and comes whole over TCP.
func TestLargeAnswer(t *testing.T) {
	var txt []string
	for i := range 10 {
		txt = append(txt, `"`+strings.Repeat(string(rune('a'+i)), 200)+`"`)
	}
	s := Start(t, map[string][]string{"big.test. TXT": txt})
	udp := ask(t, "udp", s.Addr, "big.test.", mdns.TypeTXT)
	if !udp.Truncated || len(udp.Answer) == len(txt) {
		t.Errorf("UDP: truncated %v with %d answers; want truncated", udp.Truncated, len(udp.Answer))
	}
	tcp := ask(t, "tcp", s.Addr, "big.test.", mdns.TypeTXT)
	if tcp.Truncated || len(tcp.Answer) != len(txt) {
		t.Errorf("TCP: truncated %v with %d answers; want all %d", tcp.Truncated, len(tcp.Answer), len(txt))
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
	if err := z.Add("a.test. 60 IN MX"); err == nil {
		t.Error("Add of a record without data: no error")
	}
	for _, addr := range []string{"192.0.2.1:0", "localhost:0", "nonsense"} {
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
