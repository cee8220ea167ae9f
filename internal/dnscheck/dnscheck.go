// Package dnscheck compares what a domain publishes in DNS with what
// Mailroom expects of it (package records): the MX, SPF (valid, and
// passing for each address mail leaves from), each DKIM key, DMARC,
// TLS-RPT, and the forward-confirmed reverse DNS of the outbound
// addresses. Each finding says what is wrong and how to fix it, in plain
// words; `mailroom check DOMAIN` prints them.
package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/dmarc"

	"mailroom/internal/dkim"
	"mailroom/internal/dns"
	"mailroom/internal/mailauth"
	"mailroom/internal/mtasts"
	"mailroom/internal/records"
)

// Level is how much a finding matters.
type Level string

const (
	OK    Level = "ok"
	Warn  Level = "warning" // mail flows, but less well than it could
	Error Level = "error"   // mail is refused, junked or unauthenticated
)

// dnsFix is the fix for a lookup that failed.
const dnsFix = "check that the domain's DNS servers answer (and [dns] resolver, when set, is a working resolver), then run the check again"

// Finding is one thing checked.
type Finding struct {
	Level Level  `json:"level"`
	Check string `json:"check"` // MX, SPF, DKIM, DMARC, TLS-RPT, PTR
	Name  string `json:"name"`  // the DNS name looked at
	Text  string `json:"text"`  // what was found
	Fix   string `json:"fix,omitempty"`
}

// Domain checks a domain's records (Check) and, when it publishes an
// MTA-STS policy and fetcher is set, the policy (CheckMTASTS): what the CLI's
// check and the dashboard show.
func Domain(ctx context.Context, r mailauth.Resolver, in records.Inputs, fetcher *mtasts.Fetcher) []Finding {
	findings := Check(ctx, r, in)
	if in.MTASTS != nil && fetcher != nil {
		findings = append(findings, CheckMTASTS(ctx, r, fetcher, in)...)
	}
	return findings
}

// Check looks at a domain's records, as in says they should be.
func Check(ctx context.Context, r mailauth.Resolver, in records.Inputs) []Finding {
	var out []Finding
	add := func(l Level, check, name, text, fix string) {
		out = append(out, Finding{Level: l, Check: check, Name: name, Text: text, Fix: fix})
	}
	d, host := in.Domain, strings.TrimSuffix(in.Hostname, ".")
	want, err := records.For(in)
	if err != nil {
		add(Error, "DKIM", d, err.Error(), "make new keys: mailroom dkim rotate "+d)
	}
	expected := func(typ, name string) string {
		for _, rec := range want {
			if rec.Type == typ && rec.Name == name {
				return rec.Value
			}
		}
		return ""
	}

	// MX: mail for the domain must reach this server.
	switch mxs, err := r.LookupMX(ctx, d); {
	case errors.Is(err, dns.ErrNoDomain):
		add(Error, "MX", d, d+" does not exist in DNS", "publish its zone with: "+d+". MX 10 "+host+".")
	case errors.Is(err, dns.ErrNullMX):
		add(Error, "MX", d, d+" says it takes no mail (null MX)", "replace the null MX with: "+d+". MX 10 "+host+".")
	case err != nil:
		add(Error, "MX", d, "the MX records could not be read: "+err.Error(), dnsFix)
	case mxs[0].Implicit:
		add(Error, "MX", d, d+" has no MX record", "add: "+d+". MX 10 "+host+".")
	case !slices.ContainsFunc(mxs, func(m dns.MX) bool { return m.Host == host }):
		add(Error, "MX", d, "mail for "+d+" goes to "+mxNames(mxs)+", not to this server ("+host+")", "set: "+d+". MX 10 "+host+".")
	case mxs[0].Host != host:
		add(Warn, "MX", d, host+" is an MX of "+d+" but not the first: "+mxNames(mxs)+" is tried before it", "give "+host+" the lowest preference, unless the others are meant to take mail first")
	default:
		add(OK, "MX", d, "mail for "+d+" comes to "+host, "")
	}

	// SPF: one valid record, passing for every address mail leaves from.
	out = append(out, checkSPF(ctx, r, in, expected("TXT", d))...)

	// DKIM: each key published as the store has it.
	states := dkim.States(in.Keys, in.Now)
	for i, k := range in.Keys {
		if states[i] == dkim.Retired {
			continue
		}
		name := dkim.Name(k)
		wantTXT, err := dkim.Record(k)
		if err != nil {
			add(Error, "DKIM", name, err.Error(), "make new keys: mailroom dkim rotate "+d)
			continue
		}
		txts, err := r.LookupTXT(ctx, name)
		level := Error
		if states[i] == dkim.Next {
			level = Warn // not signing yet
		}
		switch {
		case err != nil && !errors.Is(err, dns.ErrNoDomain):
			add(Error, "DKIM", name, "the record could not be read: "+err.Error(), dnsFix)
		case len(txts) == 0:
			add(level, "DKIM", name, fmt.Sprintf("the %s key %s (%s) is not published", k.Algorithm, k.Selector, states[i]), "publish: "+name+". TXT "+dkim.ZoneText(wantTXT))
		case !slices.ContainsFunc(txts, func(t string) bool { return sameKey(t, wantTXT) }):
			add(level, "DKIM", name, fmt.Sprintf("the record of %s holds another key than Mailroom signs with", k.Selector), "replace it with: "+name+". TXT "+dkim.ZoneText(wantTXT))
		default:
			add(OK, "DKIM", name, fmt.Sprintf("the %s key %s (%s) is published", k.Algorithm, k.Selector, states[i]), "")
		}
	}
	if len(in.Keys) == 0 {
		add(Error, "DKIM", d, d+" has no DKIM keys: its mail goes unsigned", "make them: mailroom dkim rotate "+d)
	}

	// DMARC.
	dmarcName := "_dmarc." + d
	switch txts, err := r.LookupTXT(ctx, dmarcName); {
	case err != nil && !errors.Is(err, dns.ErrNoDomain):
		add(Error, "DMARC", dmarcName, "the record could not be read: "+err.Error(), dnsFix)
	default:
		var recs []string
		for _, t := range txts {
			if strings.HasPrefix(strings.TrimSpace(t), "v=DMARC1") {
				recs = append(recs, t)
			}
		}
		fix := "publish: " + dmarcName + ". TXT " + dkim.ZoneText(expected("TXT", dmarcName))
		switch rec, perr := parseOne(recs); {
		case len(recs) == 0:
			add(Error, "DMARC", dmarcName, d+" has no DMARC record: Gmail and Yahoo refuse bulk mail from such domains, and anyone can forge its address", fix)
		case len(recs) > 1:
			add(Error, "DMARC", dmarcName, fmt.Sprintf("%d DMARC records: receivers then act as if there were none", len(recs)), "keep one: "+fix)
		case perr != nil:
			add(Error, "DMARC", dmarcName, "the record does not parse: "+perr.Error(), fix)
		case rec.Policy == dmarc.PolicyNone:
			add(Warn, "DMARC", dmarcName, "p=none: mail that forges "+d+" is still delivered", "once the reports show your own mail aligned, set p=quarantine, then p=reject")
		default:
			add(OK, "DMARC", dmarcName, "p="+string(rec.Policy), "")
		}
	}

	// TLS-RPT.
	tlsName := "_smtp._tls." + d
	switch txts, err := r.LookupTXT(ctx, tlsName); {
	case err != nil && !errors.Is(err, dns.ErrNoDomain):
		add(Error, "TLS-RPT", tlsName, "the record could not be read: "+err.Error(), dnsFix)
	case slices.ContainsFunc(txts, func(t string) bool { return strings.HasPrefix(t, "v=TLSRPTv1") }):
		add(OK, "TLS-RPT", tlsName, "senders report TLS failures", "")
	default:
		add(Warn, "TLS-RPT", tlsName, "no TLS-RPT record: senders cannot tell you when TLS to "+host+" fails", "publish: "+tlsName+". TXT "+dkim.ZoneText(expected("TXT", tlsName)))
	}

	// Forward-confirmed reverse DNS of each address mail leaves from.
	out = append(out, checkPTR(ctx, r, in)...)
	return out
}

func mxNames(mxs []dns.MX) string {
	var names []string
	for _, m := range mxs {
		names = append(names, m.Host)
	}
	return strings.Join(names, ", ")
}

// sameKey reports whether a published DKIM record holds the key of want
// (its p= tag; whitespace, which DNS tools add, ignored).
func sameKey(published, want string) bool {
	tag := func(rec string) string {
		for _, t := range strings.Split(rec, ";") {
			if k, v, ok := strings.Cut(strings.TrimSpace(t), "="); ok && strings.TrimSpace(k) == "p" {
				return strings.Join(strings.Fields(v), "")
			}
		}
		return ""
	}
	return tag(published) != "" && tag(published) == tag(want)
}

func parseOne(recs []string) (*dmarc.Record, error) {
	if len(recs) != 1 {
		return nil, nil
	}
	return dmarc.Parse(recs[0])
}

// outbound are the addresses mail leaves from: the configured pools', or
// the MX host's own.
func outbound(ctx context.Context, r mailauth.Resolver, in records.Inputs) ([]netip.Addr, error) {
	if len(in.Outbound) > 0 {
		return in.Outbound, nil
	}
	return r.LookupIP(ctx, strings.TrimSuffix(in.Hostname, "."))
}

func checkSPF(ctx context.Context, r mailauth.Resolver, in records.Inputs, want string) []Finding {
	d := in.Domain
	f := func(l Level, text, fix string) Finding {
		return Finding{Level: l, Check: "SPF", Name: d, Text: text, Fix: fix}
	}
	txts, err := r.LookupTXT(ctx, d)
	if err != nil && !errors.Is(err, dns.ErrNoDomain) {
		return []Finding{f(Error, "the TXT records could not be read: "+err.Error(), dnsFix)}
	}
	var recs []string
	for _, t := range txts {
		if strings.HasPrefix(strings.ToLower(t), "v=spf1") {
			recs = append(recs, t)
		}
	}
	fix := "publish: " + d + ". TXT " + dkim.ZoneText(want)
	switch {
	case len(recs) == 0:
		return []Finding{f(Error, d+" has no SPF record: receivers cannot tell its mail from forgeries", fix)}
	case len(recs) > 1:
		return []Finding{f(Error, fmt.Sprintf("%d SPF records: a permerror at every receiver (RFC 7208 4.5)", len(recs)), "merge them into one: "+fix)}
	case !mailauth.ValidSPF(recs[0]):
		return []Finding{f(Error, "the SPF record does not parse: "+recs[0], fix)}
	}
	ips, err := outbound(ctx, r, in)
	if err != nil || len(ips) == 0 {
		return []Finding{f(Warn, "the addresses of "+in.Hostname+" could not be found, so SPF could not be tried with them", "give "+in.Hostname+" an A (and AAAA) record")}
	}
	var out []Finding
	for _, ip := range ips {
		res, err := mailauth.CheckSPF(ctx, r, ip, in.Hostname, "postmaster@"+d)
		switch res {
		case spf.Pass:
			out = append(out, f(OK, "SPF passes mail from "+ip.String(), ""))
		case spf.TempError:
			out = append(out, f(Error, "SPF could not be evaluated for "+ip.String()+": "+errText(err), "check that every name the record includes answers"))
		case spf.PermError:
			out = append(out, f(Error, "SPF is a permerror for "+ip.String()+": "+errText(err)+" (more than 10 lookups, or more than 2 that find nothing, or an include without a record)", "flatten or fix the includes: "+fix))
		default:
			out = append(out, f(Error, fmt.Sprintf("SPF says %s for %s, an address mail leaves from: receivers will junk or refuse it", res, ip), "add ip4:/ip6: for it, or mx: "+fix))
		}
	}
	return out
}

func errText(err error) string {
	if err == nil {
		return "no reason given"
	}
	return err.Error()
}

func checkPTR(ctx context.Context, r mailauth.Resolver, in records.Inputs) []Finding {
	host := strings.TrimSuffix(in.Hostname, ".")
	ips, err := outbound(ctx, r, in)
	switch {
	case err != nil && !errors.Is(err, dns.ErrNoDomain) && !errors.Is(err, dns.ErrNoAddress):
		return []Finding{{Level: Error, Check: "PTR", Name: host, Text: "the addresses of " + host + " could not be read: " + err.Error(), Fix: dnsFix}}
	case err != nil || len(ips) == 0:
		return []Finding{{Level: Error, Check: "PTR", Name: host, Text: host + " has no address in DNS", Fix: "give " + host + " an A (and AAAA) record for the server"}}
	}
	var out []Finding
	for _, ip := range ips {
		f := func(l Level, text, fix string) {
			out = append(out, Finding{Level: l, Check: "PTR", Name: ip.String(), Text: text, Fix: fix})
		}
		names, err := r.LookupPTR(ctx, ip)
		switch {
		case err != nil:
			f(Error, "the reverse DNS of "+ip.String()+" could not be read: "+err.Error(), "ask your provider to set it to "+host)
			continue
		case len(names) == 0:
			f(Error, ip.String()+" has no reverse DNS: many receivers refuse mail from such addresses", "ask whoever gives you the address (your hosting provider) to set its PTR to "+host)
			continue
		}
		confirmed := ""
		for _, n := range names {
			if addrs, err := r.LookupIP(ctx, n); err == nil && slices.Contains(addrs, ip) {
				confirmed = n
				break
			}
		}
		switch {
		case confirmed == "":
			f(Error, ip.String()+" maps back to "+strings.Join(names, ", ")+", which does not resolve to it (forward-confirmed reverse DNS fails)", "give "+names[0]+" the address "+ip.String()+", or set the PTR to "+host)
		case confirmed != host:
			f(Warn, ip.String()+" maps back to "+confirmed+", not to "+host+" (the name the server greets with)", "set the PTR of "+ip.String()+" to "+host+", or the hostname to "+confirmed)
		default:
			f(OK, ip.String()+" maps back to "+host+" and "+host+" to it", "")
		}
	}
	return out
}

// CheckMTASTS looks at the MTA-STS policy we serve for a domain: announced
// by a TXT record whose id is the policy's, and fetched over HTTPS as
// senders fetch it (f: through the resolver, with the CAs senders trust).
func CheckMTASTS(ctx context.Context, r mailauth.Resolver, f *mtasts.Fetcher, in records.Inputs) []Finding {
	p := in.MTASTS
	if p == nil {
		return nil
	}
	d := in.Domain
	name := "_mta-sts." + d
	var out []Finding
	add := func(l Level, n, text, fix string) {
		out = append(out, Finding{Level: l, Check: "MTA-STS", Name: n, Text: text, Fix: fix})
	}
	fix := "publish: " + name + ". TXT " + dkim.ZoneText(p.Record())
	switch txts, err := r.LookupTXT(ctx, name); {
	case err != nil && !errors.Is(err, dns.ErrNoDomain):
		add(Error, name, "the record could not be read: "+err.Error(), dnsFix)
	case !slices.ContainsFunc(txts, func(t string) bool { return strings.HasPrefix(t, "v=STSv1") }):
		add(Warn, name, "the policy served is not announced: senders do not look for it", fix)
	case !slices.ContainsFunc(txts, func(t string) bool { return strings.Contains(t, "id="+p.ID()) }):
		add(Warn, name, "the record's id is not the policy's: senders keep an older policy", "replace it: "+fix)
	default:
		add(OK, name, "announces the policy served", "")
	}
	host := "mta-sts." + d
	got, err := f.Fetch(ctx, d)
	switch {
	case err != nil:
		add(Error, host, "the policy could not be fetched as senders fetch it: "+err.Error(),
			"point "+host+" at this server ([listen] mta_sts on port 443) with a certificate for "+host+" (add it to [tls.acme] names)")
	case got.Mode != p.Mode || !got.Matches(in.Hostname) || got.MaxAge != p.MaxAge:
		add(Error, host, fmt.Sprintf("the policy fetched (mode %s, mx %s) is not the one Mailroom serves", got.Mode, strings.Join(got.MX, ", ")),
			"point "+host+" at this server")
	default:
		add(OK, host, "serves the policy, mode "+p.Mode, "")
	}
	return out
}
