// Package mailauth checks where inbound mail comes from: SPF (RFC 7208)
// for the envelope sender and the HELO name, the DKIM signatures (RFC
// 6376), and DMARC (RFC 7489) on the author's domain, with the policy that
// domain asks for; the verdict is written as an Authentication-Results
// field (RFC 8601). SPF is blitiri.com.ar/go/spf's, DKIM and the DMARC
// record's syntax go-msgauth's; DMARC's evaluation (organizational domain,
// alignment, pct) is ours (docs/design/0010).
package mailauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mailroom/internal/arc"
	"math/rand/v2"
	"net"
	"net/mail"
	"net/netip"
	"slices"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"
	msgdkim "github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// maxARCMessage bounds the message read whole to verify an ARC chain.
const maxARCMessage = 64 << 20

// MaxSignatures bounds the DKIM signatures verified per message (each may
// cost a DNS query and an RSA verification); later ones are not checked.
const MaxSignatures = 5

// Checker runs the checks.
type Checker struct {
	DNS Resolver
	// TrustedSealers are ARC sealers (their d= domains) whose record of a
	// message's authentication is believed when DMARC fails here: the
	// forwarders and lists a site relies on (RFC 8617 7.2).
	TrustedSealers []string
	// Percent returns a number in [0, 100) for DMARC's pct; random unless
	// a test sets it.
	Percent func() int
}

// Input is what the SMTP session knew of a message.
type Input struct {
	IP       netip.Addr
	Helo     string // as the client said it
	MailFrom string // local@domain, "" for the null sender
}

// Result is what the checks found.
type Result struct {
	SPF      spf.Result // of MAIL FROM, or of the HELO name for the null sender
	SPFFrom  string     // the identity SPF checked: the MAIL FROM address, or postmaster@HELO
	nullFrom bool       // SPF checked the HELO name: not for DMARC (DMARCbis)
	HeloSPF  spf.Result // of the HELO name ("" when it is an address literal)
	Helo     string
	DKIM     []DKIMResult
	DMARC    DMARCResult
	ARC      arc.Result
	FromHead string // the author's domain (RFC5322.From), "" when there is not exactly one
}

// DKIMResult is one signature's verdict.
type DKIMResult struct {
	Result string // pass, fail, neutral, temperror, permerror
	Domain string // d=
	Reason string
}

// DMARCResult is DMARC's verdict on the author's domain.
type DMARCResult struct {
	Result string // pass, fail, none, temperror, permerror
	// Policy is what the domain asks for failing mail (p, or sp for a
	// subdomain), "" without a record; Disposition is what applies to
	// this message: Policy unless pct spared it, none when it passed.
	Policy      dmarc.Policy
	Disposition dmarc.Policy
	Reason      string
	Overridden  bool // the policy was not applied: a trusted ARC chain passed
	// For aggregate reports: the domain whose record applied (the
	// author's, or its organizational domain's), the record, and which of
	// SPF and DKIM passed aligned.
	PolicyDomain            string
	Record                  *dmarc.Record
	SPFAligned, DKIMAligned bool
}

// Check runs every check on a message: open returns a reader of its header
// and body as received, read once, and again for ARC when the message
// carries a chain.
func (c *Checker) Check(ctx context.Context, in Input, open func() io.Reader) Result {
	var res Result
	res.Helo = strings.TrimSuffix(in.Helo, ".")
	if isDomainName(res.Helo) {
		res.HeloSPF, _ = CheckSPF(ctx, c.DNS, in.IP, res.Helo, "postmaster@"+res.Helo)
	}
	if in.MailFrom != "" {
		res.SPFFrom = in.MailFrom
		res.SPF, _ = CheckSPF(ctx, c.DNS, in.IP, res.Helo, in.MailFrom)
	} else if res.HeloSPF != "" {
		// RFC 7208 2.4: for the null sender, the HELO identity is checked.
		res.SPFFrom, res.SPF, res.nullFrom = "postmaster@"+res.Helo, res.HeloSPF, true
	} else {
		res.SPF, res.nullFrom = spf.None, true
	}

	// DKIM reads the message; the From field is taken on the way.
	hr := &headerTap{r: open()}
	vs, err := msgdkim.VerifyWithOptions(hr, &msgdkim.VerifyOptions{LookupTXT: lookupTXT(ctx, c.DNS), MaxVerifications: MaxSignatures})
	if err != nil && !errors.Is(err, msgdkim.ErrTooManySignatures) {
		res.DKIM = append(res.DKIM, DKIMResult{Result: "permerror", Reason: err.Error()})
	}
	for _, v := range vs {
		res.DKIM = append(res.DKIM, dkimResult(v))
	}
	io.Copy(io.Discard, hr) // the rest, when the verifier stopped early
	res.ARC = arc.Result{Value: "none"}
	if strings.Contains(strings.ToLower(hr.header.String()), "\narc-seal:") || strings.HasPrefix(strings.ToLower(hr.header.String()), "arc-seal:") {
		whole, err := io.ReadAll(io.LimitReader(open(), maxARCMessage))
		if err == nil && len(whole) < maxARCMessage {
			// Up to 51 keys to look up: bounded as a whole, not only each.
			actx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			res.ARC = arc.Verify(actx, func(ctx context.Context, name string) ([]string, error) {
				return netResolver{c.DNS}.LookupTXT(ctx, name)
			}, whole)
		} else {
			res.ARC = arc.Result{Value: "fail", Reason: "the message is too large to verify its ARC chain"}
		}
	}
	res.FromHead, res.DMARC = c.dmarc(ctx, hr.header.String(), res)
	// A DMARC failure after a forwarder: a trusted sealer's passing chain
	// stands in (a local policy override, RFC 7489 6.7).
	if res.DMARC.Result == "fail" && res.ARC.Value == "pass" && slices.Contains(c.TrustedSealers, strings.ToLower(res.ARC.Sealer)) &&
		sealerSawPass(res.ARC.AAR, res.FromHead) {
		res.DMARC.Disposition = dmarc.PolicyNone
		res.DMARC.Reason = "ARC chain sealed by trusted " + res.ARC.Sealer + " passes (" + res.DMARC.Reason + ")"
		res.DMARC.Overridden = true
	}
	return res
}

func dkimResult(v *msgdkim.Verification) DKIMResult {
	r := DKIMResult{Result: "pass", Domain: v.Domain}
	switch {
	case v.Err == nil:
	case msgdkim.IsTempFail(v.Err):
		r.Result, r.Reason = "temperror", v.Err.Error()
	case msgdkim.IsPermFail(v.Err):
		r.Result, r.Reason = "permerror", v.Err.Error()
	default:
		r.Result, r.Reason = "fail", v.Err.Error()
	}
	return r
}

// dmarc evaluates the author's domain's policy (RFC 7489 6.6).
func (c *Checker) dmarc(ctx context.Context, header string, res Result) (string, DMARCResult) {
	from, err := authorDomain(header)
	if err != nil {
		return "", DMARCResult{Result: "permerror", Reason: err.Error()}
	}
	org := OrganizationalDomain(from)
	rec, err := c.record(ctx, from)
	policy, policyDomain := dmarc.Policy(""), from
	if err == nil && rec != nil {
		policy = rec.Policy
	} else if err == nil && org != from {
		rec, err = c.record(ctx, org)
		if err == nil && rec != nil {
			policy, policyDomain = rec.Policy, org
			if rec.SubdomainPolicy != "" {
				policy = rec.SubdomainPolicy
			}
		}
	}
	switch {
	case err != nil:
		return from, DMARCResult{Result: "temperror", Reason: err.Error()}
	case rec == nil:
		return from, DMARCResult{Result: "none"}
	}
	aligned := func(domain string, mode dmarc.AlignmentMode) bool {
		domain = strings.ToLower(strings.TrimSuffix(domain, "."))
		if mode == dmarc.AlignmentStrict {
			return domain == from
		}
		return OrganizationalDomain(domain) == org
	}
	out := DMARCResult{Policy: policy, PolicyDomain: policyDomain, Record: rec}
	if res.SPF == spf.Pass {
		_, d, ok := strings.Cut(res.SPFFrom, "@")
		out.SPFAligned = ok && !res.nullFrom && aligned(d, rec.SPFAlignment)
	}
	for _, d := range res.DKIM {
		out.DKIMAligned = out.DKIMAligned || d.Result == "pass" && aligned(d.Domain, rec.DKIMAlignment)
	}
	if out.SPFAligned || out.DKIMAligned {
		out.Result, out.Disposition = "pass", dmarc.PolicyNone
		return from, out
	}
	out.Result, out.Disposition, out.Reason = "fail", policy, "neither SPF nor DKIM passed aligned with "+from
	// pct (RFC 7489 6.6.4): a message outside the sample gets the next
	// milder treatment.
	if rec.Percent != nil && *rec.Percent < 100 && c.percent() >= *rec.Percent {
		switch policy {
		case dmarc.PolicyReject:
			out.Disposition = dmarc.PolicyQuarantine
		case dmarc.PolicyQuarantine:
			out.Disposition = dmarc.PolicyNone
		}
	}
	return from, out
}

func (c *Checker) percent() int {
	if c.Percent != nil {
		return c.Percent()
	}
	return rand.IntN(100)
}

// record returns the DMARC record of exactly domain: nil (and no error)
// when it has none, or more than one (RFC 7489 6.6.3).
func (c *Checker) record(ctx context.Context, domain string) (*dmarc.Record, error) {
	txts, err := c.DNS.LookupTXT(ctx, "_dmarc."+domain)
	if err != nil {
		var derr *net.DNSError
		if errors.As(dnsError(domain, err), &derr) && derr.IsNotFound {
			return nil, nil
		}
		return nil, err
	}
	var found []string
	for _, t := range txts {
		if strings.HasPrefix(strings.TrimSpace(t), "v=DMARC1") {
			found = append(found, t)
		}
	}
	if len(found) != 1 {
		return nil, nil
	}
	rec, err := dmarc.Parse(found[0])
	if err != nil {
		return nil, nil // a record that does not parse is as none (6.6.3)
	}
	if rec.Policy == "" {
		rec.Policy = dmarc.PolicyNone
	}
	return rec, nil
}

// OrganizationalDomain is a domain's registered domain by the Public
// Suffix List (RFC 7489 3.2): example.co.uk for mail.example.co.uk; the
// domain itself when it is a public suffix or has no known one.
func OrganizationalDomain(domain string) string {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	org, err := publicsuffix.EffectiveTLDPlusOne(domain)
	if err != nil {
		return domain
	}
	return org
}

// authorDomain is the domain of the message's one author (RFC 7489 6.6.1):
// an error when there is no From field, several, or several addresses.
func authorDomain(header string) (string, error) {
	var froms []string
	for _, f := range fields(header) {
		if name, value, ok := strings.Cut(f, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "from") {
			froms = append(froms, value)
		}
	}
	if len(froms) != 1 {
		return "", fmt.Errorf("the message has %d From fields; DMARC needs one", len(froms))
	}
	list, err := mail.ParseAddressList(strings.TrimSpace(froms[0]))
	if err != nil || len(list) != 1 {
		return "", errors.New("the From field does not name exactly one address")
	}
	_, domain, ok := strings.Cut(list[0].Address, "@")
	if !ok || domain == "" {
		return "", errors.New("the From address has no domain")
	}
	return strings.ToLower(strings.TrimSuffix(domain, ".")), nil
}

// fields splits a header section into its fields, folded lines joined.
func fields(header string) []string {
	var out []string
	for _, line := range strings.SplitAfter(header, "\n") {
		l := strings.TrimRight(line, "\r\n")
		if l == "" {
			continue
		}
		if (l[0] == ' ' || l[0] == '\t') && len(out) > 0 {
			out[len(out)-1] += " " + strings.TrimSpace(l)
			continue
		}
		out = append(out, l)
	}
	return out
}

// isDomainName reports whether a HELO name is a domain (not an address
// literal or a bare word), the only kind SPF can check.
func isDomainName(s string) bool {
	if s == "" || strings.HasPrefix(s, "[") || !strings.Contains(s, ".") {
		return false
	}
	_, err := netip.ParseAddr(s)
	return err != nil
}

// maxHeader bounds what headerTap keeps of the header section.
const maxHeader = 256 << 10

// headerTap passes a message through and keeps its header section (up to
// maxHeader), for the From field.
type headerTap struct {
	r      io.Reader
	header strings.Builder
	done   bool
	last   [3]byte // the octets before, to find the empty line
}

func (h *headerTap) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if !h.done {
		for _, c := range p[:n] {
			if h.header.Len() >= maxHeader {
				h.done = true
				break
			}
			h.header.WriteByte(c)
			if c == '\n' && (h.last[2] == '\n' || (h.last[2] == '\r' && h.last[1] == '\n')) {
				h.done = true
				break
			}
			h.last = [3]byte{h.last[1], h.last[2], c}
		}
	}
	return n, err
}

// sealerSawPass reports whether an ARC-Authentication-Results record
// ("i=N; authserv-id; ...") says DMARC passed for the From domain: a
// trusted sealer vouches only for what it found, not for a spoof it passed
// on.
func sealerSawPass(aar, fromDomain string) bool {
	_, rest, ok := strings.Cut(aar, ";")
	if !ok || fromDomain == "" {
		return false
	}
	_, results, err := authres.Parse(strings.TrimSpace(rest))
	if err != nil {
		return false
	}
	for _, r := range results {
		if d, ok := r.(*authres.DMARCResult); ok && d.Value == authres.ResultPass && strings.EqualFold(d.From, fromDomain) {
			return true
		}
	}
	return false
}
