package mailauth

import (
	"context"
	"crypto"
	"crypto/x509"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dmarc"

	"mailroom/internal/arc"
	"mailroom/internal/dkim"
	"mailroom/internal/dns"
	"mailroom/internal/dns/dnstest"
	"mailroom/internal/store"
)

type keys map[string][]store.DKIMKey

func (k keys) DKIMKeysOf(_ context.Context, domain string) ([]store.DKIMKey, error) {
	return k[domain], nil
}

// world is a DNS zone with the records of a few senders, and signed mail
// from them.
type world struct {
	checker *Checker
	zone    *dnstest.Zone
	signer  *dkim.Signer
}

func newWorld(t testing.TB) *world {
	t.Helper()
	now := time.Now()
	ks := keys{}
	records := map[string][]string{
		"sender.test. TXT":        {`"v=spf1 ip4:192.0.2.1 -all"`},
		"_dmarc.sender.test. TXT": {`"v=DMARC1; p=reject"`},
		"soft.test. TXT":          {`"v=spf1 ~all"`},
		"neutral.test. TXT":       {`"v=spf1 ?all"`},
		"two.test. TXT":           {`"v=spf1 -all"`, `"v=spf1 +all"`},
		"incl.test. TXT":          {`"v=spf1 include:sender.test -all"`},
		"voids.test. TXT":         {`"v=spf1 a:n1.voids.test a:n2.voids.test a:n3.voids.test -all"`},
		"helo.sender.test. TXT":   {`"v=spf1 ip4:192.0.2.1 -all"`},
		"_dmarc.quar.test. TXT":   {`"v=DMARC1; p=quarantine; pct=50"`},
		"quar.test. TXT":          {`"v=spf1 -all"`},
		"_dmarc.org.test. TXT":    {`"v=DMARC1; p=none; sp=reject; adkim=s"`},
		"sub.org.test. TXT":       {`"v=spf1 ip4:192.0.2.1 -all"`},
		"_dmarc.dup.test. TXT":    {`"v=DMARC1; p=reject"`, `"v=DMARC1; p=none"`},
	}
	for _, d := range []string{"sender.test", "org.test", "other.test"} {
		for _, alg := range dkim.Algorithms {
			k, err := dkim.NewKey(d, dkim.Selector(alg, now, ks[d]), alg, now, now)
			if err != nil {
				t.Fatal(err)
			}
			ks[d] = append(ks[d], k)
			rec, _ := dkim.Record(k)
			records[dkim.Name(k)+". TXT"] = []string{dkim.ZoneText(rec)}
		}
	}
	srv := dnstest.Start(t, records)
	r, err := dns.New(srv.Addr, "")
	if err != nil {
		t.Fatal(err)
	}
	return &world{checker: &Checker{DNS: r, Percent: func() int { return 99 }}, zone: srv.Zone, signer: dkim.NewSigner(ks)}
}

func (w *world) signed(t testing.TB, domain, msg string) string {
	t.Helper()
	f, err := w.signer.Sign(t.Context(), domain, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return string(f) + msg
}

var (
	inside  = netip.MustParseAddr("192.0.2.1")
	outside = netip.MustParseAddr("198.51.100.7")
)

func TestSPF(t *testing.T) {
	w := newWorld(t)
	for _, tc := range []struct {
		name     string
		ip       netip.Addr
		helo     string
		mailFrom string
		want     spf.Result
		heloWant spf.Result
	}{
		{"an address the record names passes", inside, "mx.x.test", "a@sender.test", spf.Pass, spf.None},
		{"another fails", outside, "mx.x.test", "a@sender.test", spf.Fail, spf.None},
		{"~all soft-fails", outside, "mx.x.test", "a@soft.test", spf.SoftFail, spf.None},
		{"?all is neutral", outside, "mx.x.test", "a@neutral.test", spf.Neutral, spf.None},
		{"no record is none", outside, "mx.x.test", "a@norecord.test", spf.None, spf.None},
		{"two records are a permerror", outside, "mx.x.test", "a@two.test", spf.PermError, spf.None},
		{"include: passes through", inside, "mx.x.test", "a@incl.test", spf.Pass, spf.None},
		{"more than two void lookups are a permerror", outside, "mx.x.test", "a@voids.test", spf.PermError, spf.None},
		{"a failing DNS is a temperror", outside, "mx.x.test", "a@x.servfail.test", spf.TempError, spf.None},
		{"the null sender is checked by its HELO name", inside, "helo.sender.test", "", spf.Pass, spf.Pass},
		{"an address literal HELO is not checked", inside, "[192.0.2.1]", "", spf.None, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := w.checker.Check(t.Context(), Input{IP: tc.ip, Helo: tc.helo, MailFrom: tc.mailFrom}, text("From: a@x.test\r\n\r\nx\r\n"))
			if r.SPF != tc.want || r.HeloSPF != tc.heloWant {
				t.Errorf("SPF %q, HELO %q; want %q, %q", r.SPF, r.HeloSPF, tc.want, tc.heloWant)
			}
		})
	}
}

func TestDKIMAndDMARC(t *testing.T) {
	w := newWorld(t)
	const body = "To: b@here.test\r\nSubject: hi\r\nDate: Sun, 06 Dec 2026 12:00:00 +0000\r\n\r\nhello\r\n"
	for _, tc := range []struct {
		name        string
		ip          netip.Addr
		mailFrom    string
		msg         string
		dkim        string // each signature's result, joined
		dmarc       string
		disposition dmarc.Policy
	}{
		{"aligned SPF passes DMARC without a signature", inside, "a@sender.test", "From: a@sender.test\r\n" + body, "", "pass", dmarc.PolicyNone},
		{"an aligned signature passes DMARC through a forwarder", outside, "fwd@other.test",
			w.signed(t, "sender.test", "From: a@sender.test\r\n"+body), "pass pass", "pass", dmarc.PolicyNone},
		{"a forged From fails DMARC, and the domain's p=reject applies", outside, "x@evil.test", "From: ceo@sender.test\r\n" + body, "", "fail", dmarc.PolicyReject},
		{"another domain's valid signature does not align", outside, "x@other.test",
			w.signed(t, "other.test", "From: ceo@sender.test\r\n"+body), "pass pass", "fail", dmarc.PolicyReject},
		{"a changed message fails its signatures", outside, "x@evil.test",
			strings.Replace(w.signed(t, "sender.test", "From: a@sender.test\r\n"+body), "hello", "pay now", 1), "fail fail", "fail", dmarc.PolicyReject},
		{"pct spares some mail: reject becomes quarantine, quarantine none", outside, "x@evil.test", "From: a@quar.test\r\n" + body, "", "fail", dmarc.PolicyNone},
		{"a subdomain gets the organizational domain's sp", outside, "x@evil.test", "From: a@sub.org.test\r\n" + body, "", "fail", dmarc.PolicyReject},
		{"relaxed SPF alignment: a subdomain's MAIL FROM aligns", inside, "bounce@sub.org.test", "From: a@org.test\r\n" + body, "", "pass", dmarc.PolicyNone},
		{"strict DKIM alignment: the parent's signature does not align", outside, "x@evil.test",
			w.signed(t, "org.test", "From: a@sub.org.test\r\n"+body), "pass pass", "fail", dmarc.PolicyReject},
		{"no DMARC record is none", outside, "x@evil.test", "From: a@norecord.test\r\n" + body, "", "none", ""},
		{"two DMARC records are as none", outside, "x@evil.test", "From: a@dup.test\r\n" + body, "", "none", ""},
		{"two From fields are a permerror", outside, "x@evil.test", "From: a@sender.test\r\nFrom: b@sender.test\r\n" + body, "", "permerror", ""},
		{"a failing DNS is a temperror", outside, "x@evil.test", "From: a@x.servfail.test\r\n" + body, "", "temperror", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := w.checker.Check(t.Context(), Input{IP: tc.ip, Helo: "mx.client.test", MailFrom: tc.mailFrom}, text(tc.msg))
			var got []string
			for _, d := range r.DKIM {
				got = append(got, d.Result)
			}
			if strings.Join(got, " ") != tc.dkim || r.DMARC.Result != tc.dmarc || r.DMARC.Disposition != tc.disposition {
				t.Errorf("DKIM %q, DMARC %q (%s) disposition %q; want %q, %q, %q", got, r.DMARC.Result, r.DMARC.Reason, r.DMARC.Disposition, tc.dkim, tc.dmarc, tc.disposition)
			}
		})
	}
	// pct's sample: a message inside it gets the policy itself.
	w.checker.Percent = func() int { return 0 }
	r := w.checker.Check(t.Context(), Input{IP: outside, Helo: "mx.client.test", MailFrom: "x@evil.test"}, text("From: a@quar.test\r\n"+body))
	if r.DMARC.Disposition != dmarc.PolicyQuarantine {
		t.Errorf("inside pct: disposition %q, want quarantine", r.DMARC.Disposition)
	}
}

func TestHeader(t *testing.T) {
	w := newWorld(t)
	msg := w.signed(t, "sender.test", "From: A <a@sender.test>\r\nSubject: x\r\n\r\nbody\r\n")
	r := w.checker.Check(t.Context(), Input{IP: inside, Helo: "mx.sender.test", MailFrom: "a@sender.test"}, text(msg))
	h := r.Header("mx.here.test")
	for _, want := range []string{"Authentication-Results: mx.here.test;\r\n\t", "spf=pass smtp.mailfrom=sender.test",
		"dkim=pass header.d=sender.test", "dmarc=pass header.from=sender.test"} {
		if !strings.Contains(h, want) {
			t.Errorf("no %q in %q", want, h)
		}
	}
	if !strings.HasSuffix(h, "\r\n") || strings.Count(h, "dkim=pass") != 2 {
		t.Errorf("header: %q", h)
	}
	r = w.checker.Check(t.Context(), Input{IP: outside, Helo: "[198.51.100.7]"}, text("From: x@nowhere.test\r\n\r\nx\r\n"))
	h = r.Header("mx.here.test")
	for _, want := range []string{"spf=none", "dkim=none", "dmarc=none header.from=nowhere.test"} {
		if !strings.Contains(h, want) {
			t.Errorf("no %q in %q", want, h)
		}
	}
}

func TestOrganizationalDomain(t *testing.T) {
	for in, want := range map[string]string{
		"mail.example.com": "example.com", "a.b.example.co.uk": "example.co.uk", "Example.COM.": "example.com",
		"co.uk": "co.uk", "localhost": "localhost", "x.sender.test": "sender.test",
	} {
		if got := OrganizationalDomain(in); got != want {
			t.Errorf("OrganizationalDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidSPF(t *testing.T) {
	for rec, want := range map[string]bool{
		"v=spf1":      true,
		"v=spf1 -all": true,
		"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx/24 a:x.test/24//64 ptr ptr:x.test ~all":    true,
		"v=spf1 include:_spf.x.test exists:%{i}.%{l1r-}.x.test redirect=x.test exp=explain.x.test": true,
		"v=spf1 +mx -ip4:192.0.2.1 ?all unknown-mod=%{d}":                                          true,
		"V=SPF1 IP4:192.0.2.1 -ALL":              true,
		"v=spf1 ip4:127.0.0.1 bogus -all":        false, // an unknown mechanism
		"v=spf1 ip4:300.0.0.1 -all":              false,
		"v=spf1 ip4:192.0.2.0/33":                false,
		"v=spf1 ip4:2001:db8::1":                 false,
		"v=spf1 ip6:192.0.2.1":                   false,
		"v=spf1 include: -all":                   false,
		"v=spf1 exists:%{z}.x.test":              false, // no such macro letter
		"v=spf1 exists:%{i.x.test":               false,
		"v=spf1 a:x.test%":                       false,
		"v=spf1 redirect=a.test redirect=b.test": false,
		"v=spf1 -redirect=a.test":                false, // a qualifier on a modifier
		"v=spf1 all/24":                          false,
		"v=spf1 1bad=x":                          false,
	} {
		if got := validSPF(rec); got != want {
			t.Errorf("validSPF(%q) = %v, want %v", rec, got, want)
		}
	}
}

// BenchmarkCheck: the checks of one signed message from outside, with a
// DNS server on loopback (no cache: each check asks it again).
func BenchmarkCheck(b *testing.B) {
	w := newWorld(b)
	msg := w.signed(b, "sender.test", "From: a@sender.test\r\nSubject: x\r\n\r\n"+strings.Repeat("a line of text of some sixty octets, as mail bodies have\r\n", 170))
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		r := w.checker.Check(context.Background(), Input{IP: inside, Helo: "mx.sender.test", MailFrom: "a@sender.test"}, text(msg))
		if r.DMARC.Result != "pass" {
			b.Fatalf("DMARC %s", r.DMARC.Result)
		}
	}
}

// text is a message to check, as Check opens it.
func text(s string) func() io.Reader {
	return func() io.Reader { return strings.NewReader(s) }
}

// TestARCOverride: a message whose DMARC fails after a forwarder, with a
// passing ARC chain sealed by that forwarder, is spared its policy when
// the sealer is trusted, and only then; the chain's result is recorded.
func TestARCOverride(t *testing.T) {
	w := newWorld(t)
	k, err := dkim.NewKey("lists.test", "s1", store.DKIMRSA, time.Now(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := dkim.Record(k)
	w.zone.Set("s1._domainkey.lists.test.", "TXT", dkim.ZoneText(rec))
	key, _ := x509.ParsePKCS8PrivateKey(k.PrivateKey)
	sealer := &arc.Sealer{Domain: "lists.test", Selector: "s1", Key: key.(crypto.Signer)}
	msg := "From: a@sender.test\r\nSubject: via the list\r\n\r\nhello\r\n"
	seal, err := sealer.Seal([]byte(msg), "lists.test; spf=pass smtp.mailfrom=sender.test; dmarc=pass header.from=sender.test", arc.Result{Value: "none"})
	if err != nil {
		t.Fatal(err)
	}
	sealed := string(seal) + msg
	in := Input{IP: outside, Helo: "mx.lists.test", MailFrom: "bounce@lists.test"}
	r := w.checker.Check(t.Context(), in, text(sealed))
	if r.ARC.Value != "pass" || r.DMARC.Result != "fail" || r.DMARC.Disposition != dmarc.PolicyReject || !strings.Contains(r.Header("mx.here.test"), "arc=pass") {
		t.Fatalf("an untrusted sealer: ARC %+v, DMARC %+v", r.ARC, r.DMARC)
	}
	w.checker.TrustedSealers = []string{"lists.test"}
	r = w.checker.Check(t.Context(), in, text(sealed))
	if r.DMARC.Disposition != dmarc.PolicyNone || !r.DMARC.Overridden || !strings.Contains(r.DMARC.Reason, "trusted lists.test") {
		t.Errorf("a trusted sealer: DMARC %+v", r.DMARC)
	}
	// A trusted sealer that saw DMARC fail itself vouches for nothing.
	spoofSeal, err := sealer.Seal([]byte(msg), "lists.test; dmarc=fail header.from=sender.test", arc.Result{Value: "none"})
	if err != nil {
		t.Fatal(err)
	}
	if r := w.checker.Check(t.Context(), in, text(string(spoofSeal)+msg)); r.ARC.Value != "pass" || r.DMARC.Disposition != dmarc.PolicyReject {
		t.Errorf("a trusted sealer's own dmarc=fail: ARC %+v, DMARC %+v", r.ARC, r.DMARC)
	}
	// A chain broken on the way is no reason to spare the message.
	r = w.checker.Check(t.Context(), in, text(strings.Replace(sealed, "hello", "pay now", 1)))
	if r.ARC.Value != "fail" || r.DMARC.Disposition != dmarc.PolicyReject {
		t.Errorf("a broken chain: ARC %+v, DMARC %+v", r.ARC, r.DMARC)
	}
}

// TestHeaderNotForgeable: a MAIL FROM or HELO full of quotes and
// semicolons cannot add results to the field we write.
func TestHeaderNotForgeable(t *testing.T) {
	w := newWorld(t)
	for _, in := range []Input{
		{IP: outside, Helo: "mx.client.test", MailFrom: `"a\"; dmarc=pass header.from=paypal.com; x=\""@evil.test`},
		{IP: outside, Helo: `evil.test;dmarc=pass`},
	} {
		h := w.checker.Check(t.Context(), in, text("From: ceo@sender.test\r\n\r\nx\r\n")).Header("mx.here.test")
		_, results, err := authres.Parse(strings.TrimSpace(strings.TrimPrefix(strings.ReplaceAll(h, "\r\n\t", " "), "Authentication-Results:")))
		if err != nil {
			t.Fatalf("our field does not parse: %v\n%s", err, h)
		}
		for _, r := range results {
			if d, ok := r.(*authres.DMARCResult); ok && d.Value == authres.ResultPass {
				t.Errorf("a forged dmarc=pass in %q", h)
			}
		}
		if strings.Contains(h, "paypal") {
			t.Errorf("the sender's text reached the field: %q", h)
		}
	}
}
