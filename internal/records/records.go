// Package records is what a domain must publish in DNS for Mailroom to
// receive and send its mail well: MX, SPF, DKIM, DMARC, TLS-RPT, client
// autoconfiguration (RFC 6186, RFC 8314) and the reverse DNS of each
// address mail leaves from, made from the configuration and the domain's
// DKIM keys. `mailroom domain records` prints them for a zone file;
// `mailroom check` compares them with what DNS says.
package records

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailroom/internal/config"
	"mailroom/internal/dkim"
	"mailroom/internal/mtasts"
	"mailroom/internal/store"
)

// Record is one DNS record a domain needs.
type Record struct {
	Name  string `json:"name"` // fully qualified, without the final dot; "" for a PTR of addresses not known
	Type  string `json:"type"` // MX, TXT, SRV, CNAME, PTR
	Value string `json:"value"`
	// Why says what it is for, in a few words.
	Why string `json:"why"`
	// Advice is set for a record the domain's owner cannot always set
	// themselves (PTR: the address's provider does), or must adapt.
	Advice string `json:"advice,omitempty"`
}

// Inputs are what the records are made from.
type Inputs struct {
	Domain   string
	Hostname string // the MX host, and the name mail leaves with
	Listen   config.Listen
	// Outbound are the addresses mail leaves from, when known (IP pools);
	// else the MX host's own addresses are meant ("mx" in SPF).
	Outbound []netip.Addr
	// Relays are smart hosts some or all mail leaves through: their own
	// SPF must be included, which only their operator knows.
	Relays []string
	Keys   []store.DKIMKey // the domain's, retired ones left out
	Now    time.Time
	// MTASTS is the policy we serve ([listen] mta_sts), nil when none.
	MTASTS *mtasts.Ours
}

// FromConfig fills Inputs from the configuration.
func FromConfig(cfg *config.Config, domain string, keys []store.DKIMKey, now time.Time) Inputs {
	in := Inputs{Domain: domain, Hostname: cfg.Hostname, Listen: cfg.Listen, Keys: keys, Now: now}
	for _, p := range cfg.Outbound.Pool {
		for _, a := range p.Addresses {
			if ip := netip.Addr(a); !slices.Contains(in.Outbound, ip) {
				in.Outbound = append(in.Outbound, ip)
			}
		}
	}
	for _, r := range cfg.Outbound.Relay {
		in.Relays = append(in.Relays, r.Host)
	}
	if len(cfg.Listen.MTASTS) > 0 {
		p := PolicyOf(cfg)
		in.MTASTS = &p
	}
	return in
}

// PolicyOf is the MTA-STS policy a configuration publishes.
func PolicyOf(cfg *config.Config) mtasts.Ours {
	return mtasts.Ours{MX: cfg.Hostname, Mode: cfg.MTASTS.Mode, MaxAge: cfg.MTASTS.MaxAge.D()}
}

// For returns the records a domain needs, in the order a zone file
// would list them.
func For(in Inputs) ([]Record, error) {
	d, host := in.Domain, strings.TrimSuffix(in.Hostname, ".")
	out := []Record{{Name: d, Type: "MX", Value: "10 " + host + ".", Why: "mail for " + d + " arrives at " + host}}

	spf := "v=spf1"
	for _, ip := range in.Outbound {
		if ip.Is4() {
			spf += " ip4:" + ip.String()
		} else {
			spf += " ip6:" + ip.String()
		}
	}
	if len(in.Outbound) == 0 {
		spf += " mx"
	}
	spfRecord := Record{Name: d, Type: "TXT", Value: spf + " -all", Why: "SPF: the only servers that send mail from " + d}
	if len(in.Relays) > 0 {
		spfRecord.Advice = "mail also leaves through " + strings.Join(in.Relays, ", ") + ": add the include: their operator names, before -all"
	}
	out = append(out, spfRecord)

	states := dkim.States(in.Keys, in.Now)
	for i, k := range in.Keys {
		if states[i] == dkim.Retired {
			continue
		}
		txt, err := dkim.Record(k)
		if err != nil {
			return nil, err
		}
		why := fmt.Sprintf("DKIM key (%s, %s)", k.Algorithm, states[i])
		if states[i] == dkim.Next {
			why += " from " + k.SignFrom.UTC().Format(time.RFC3339)
		}
		out = append(out, Record{Name: dkim.Name(k), Type: "TXT", Value: txt, Why: why})
	}

	report := "postmaster@" + d
	out = append(out,
		Record{Name: "_dmarc." + d, Type: "TXT", Value: "v=DMARC1; p=quarantine; adkim=r; aspf=r; rua=mailto:" + report,
			Why:    "DMARC: mail from " + d + " that fails SPF and DKIM goes to junk; aggregate reports to " + report,
			Advice: "start with p=none if other services send as " + d + ", and tighten once the reports show them aligned"},
		Record{Name: "_smtp._tls." + d, Type: "TXT", Value: "v=TLSRPTv1; rua=mailto:" + report,
			Why: "TLS-RPT: senders report failed TLS to " + report},
	)
	if p := in.MTASTS; p != nil {
		out = append(out,
			Record{Name: "_mta-sts." + d, Type: "TXT", Value: p.Record(),
				Why: "MTA-STS: senders must reach " + host + " over TLS with a valid certificate (mode " + p.Mode + "); the id changes with the policy"},
			Record{Name: "mta-sts." + d, Type: "CNAME", Value: host + ".",
				Why: "where senders fetch the MTA-STS policy over HTTPS", Advice: "the server's certificate must name mta-sts." + d + ": add it to [tls.acme] names"})
	}

	// Client autoconfiguration: the services listened on, at their ports
	// (RFC 6186 SRV records; implicit TLS preferred, RFC 8314 5.1).
	for _, srv := range []struct {
		name     string
		addrs    []config.HostPort
		priority int
	}{
		{"_submissions._tcp", in.Listen.Submissions, 0}, {"_submission._tcp", in.Listen.Submission, 10},
		{"_imaps._tcp", in.Listen.IMAPS, 0}, {"_imap._tcp", in.Listen.IMAP, 10},
		{"_pop3s._tcp", in.Listen.POP3S, 20}, {"_pop3._tcp", in.Listen.POP3, 30},
	} {
		if len(srv.addrs) == 0 {
			continue
		}
		_, port, err := net.SplitHostPort(srv.addrs[0].String())
		if err != nil {
			return nil, fmt.Errorf("records: listen address %s: %w", srv.addrs[0], err)
		}
		out = append(out, Record{Name: srv.name + "." + d, Type: "SRV", Value: fmt.Sprintf("%d 1 %s %s.", srv.priority, port, host),
			Why: "mail clients find the " + strings.TrimPrefix(strings.SplitN(srv.name, ".", 2)[0], "_") + " service"})
	}
	for _, name := range []string{"autoconfig", "autodiscover"} {
		out = append(out, Record{Name: name + "." + d, Type: "CNAME", Value: host + ".",
			Why: "mail clients (Thunderbird, Outlook) look for their settings there"})
	}

	for _, ip := range in.Outbound {
		out = append(out, Record{Name: reverseName(ip), Type: "PTR", Value: host + ".",
			Why:    "reverse DNS of " + ip.String() + ", an address mail leaves from: receivers check it matches " + host,
			Advice: "set by whoever gives you the address, such as your hosting provider, not in your zone"})
	}
	if len(in.Outbound) == 0 {
		out = append(out, Record{Name: "", Type: "PTR", Value: host + ".",
			Why:    "reverse DNS of each address mail leaves from (those of " + host + "): receivers check it matches " + host,
			Advice: "set by whoever gives you the addresses, such as your hosting provider, not in your zone"})
	}
	return out, nil
}

// reverseName is the PTR name of an address (RFC 1035 3.5, RFC 3596 2.5).
func reverseName(ip netip.Addr) string {
	if ip.Is4() {
		b := ip.As4()
		return fmt.Sprintf("%d.%d.%d.%d.in-addr.arpa", b[3], b[2], b[1], b[0])
	}
	b := ip.As16()
	var s strings.Builder
	for i := len(b) - 1; i >= 0; i-- {
		s.WriteString(strconv.FormatUint(uint64(b[i]&0xf), 16) + "." + strconv.FormatUint(uint64(b[i]>>4), 16) + ".")
	}
	return s.String() + "ip6.arpa"
}

// Zone writes the records as zone file lines, each after a comment saying
// what it is for; records outside the zone (PTR) are comments.
func Zone(rs []Record) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "; %s\n", r.Why)
		if r.Advice != "" {
			fmt.Fprintf(&b, "; (%s)\n", r.Advice)
		}
		value := r.Value
		if r.Type == "TXT" {
			value = dkim.ZoneText(value)
		}
		name := r.Name + "."
		if r.Name == "" {
			name = "(each address, reversed)"
		}
		line := fmt.Sprintf("%-40s 3600 IN %-5s %s", name, r.Type, value)
		if r.Type == "PTR" {
			line = "; " + line
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}
