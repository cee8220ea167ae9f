// Package delivery takes queued messages to the next hop of their domain:
// it finds the mail exchangers (RFC 5321 5.1), tries their addresses in
// order, speaks SMTP with internal/smtpclient (STARTTLS whenever offered),
// and reports an outcome per recipient: delivered, failed for good, or to
// be tried again.
package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mailroom/internal/dane"
	"mailroom/internal/dns"
	"mailroom/internal/downgrade"
	"mailroom/internal/mtasts"
	"mailroom/internal/smtp"
	"mailroom/internal/smtpclient"
	"mailroom/internal/tally"
	"mailroom/internal/tlsrpt"
)

// Config configures delivery.
type Config struct {
	LocalName string        // our hostname, for EHLO
	Port      int           // the next hop's port: 25, or a test port
	Timeout   time.Duration // per SMTP reply
	// IdleTime keeps a connection open this long after a message, for the
	// next one to the same destination; 0 means 5 seconds, < 0 never.
	IdleTime time.Duration
	Relays   []Relay      // smart hosts, by recipient domain
	Pools    []SourcePool // source addresses, by sender
	// SpoolDir holds the 7-bit copies made for next hops without 8BITMIME
	// ("" for the system's temporary directory).
	SpoolDir string
	// Roots are the certificate authorities an MX host's certificate must
	// chain to when a policy demands it (MTA-STS); nil: the system's.
	Roots *x509.CertPool
}

// Resigner signs anew a message converted to 7 bits (the conversion
// breaks its DKIM signatures): msg in, the re-signed message out; ok false
// leaves the message as it is (dkim.Signer.Resign).
type Resigner func(ctx context.Context, msg io.ReadSeeker, out io.Writer) (ok bool, err error)

// Relay sends the mail for some recipient domains through an upstream
// server (a smart host) instead of to their MX hosts.
type Relay struct {
	Domains     []string // recipient domains, lower case; "*" for every other
	Host        string   // name (resolved with A/AAAA) or IP address
	Port        int
	ImplicitTLS bool        // TLS on connect (port 465) rather than STARTTLS
	TLS         *tls.Config // required when set (certificate checked); nil: plaintext
	Username    string      // AUTH PLAIN/LOGIN when set
	Password    string
}

// SourcePool is a set of local addresses that outbound connections for
// some senders are made from (an IP pool, the "dedicated IP" of bulk
// senders); connections take its addresses in turn.
type SourcePool struct {
	Name    string
	Addrs   []netip.Addr
	Senders []string // sender addresses or domains, lower case; "*" for every other
}

// Recipient is one recipient to deliver, with DSN parameters in wire form.
type Recipient struct {
	Address string
	Params  string // "NOTIFY=... ORCPT=...", sent when the next hop offers DSN
}

// Job is one message for one domain.
type Job struct {
	Domain   string
	MailFrom string
	Ret      string // RFC 3461 RET (FULL or HDRS), passed on when the next hop offers DSN
	EnvID    string // RFC 3461 ENVID, likewise
	EightBit bool   // the message was received with BODY=8BITMIME
	SMTPUTF8 bool   // the message needs SMTPUTF8 (RFC 6531)
	// RequireTLS (RFC 8689): only to a next hop authenticated by a policy
	// (MTA-STS) or a smart host whose certificate is checked, that offers
	// REQUIRETLS itself; else the message bounces (5.7.30).
	RequireTLS bool
	// TLSOptional: the message says "TLS-Required: No": the recipient's
	// MTA-STS policy does not hold it back (TLS is still used if offered).
	TLSOptional bool
	Recipients  []Recipient
	Size        int64
	Open        func() (io.ReadCloser, error)
	// Held, when set, is given the function that puts the connection back
	// for the next message after a transaction the next hop answered: the
	// caller calls it once the outcomes are on record, so that at most one
	// answered transaction per connection is unrecorded at any time (what a
	// crash can make us send again). Meanwhile other messages use other
	// connections. When nil, or when the connection will not be reused,
	// it goes back (or is closed) at once.
	Held func(release func())
}

// Outcome is what happened to one recipient.
type Outcome struct {
	Delivered bool
	Permanent bool   // failed for good (when not Delivered)
	Detail    string // the reply or error, for the record and the DSN
	RemoteMTA string // the host that answered, if any
	TLS       string // "TLS1.3 ..." or "" for plaintext
	DSN       bool   // the next hop took DSN parameters (RFC 3461 5.2)
}

// Deliverer delivers jobs.
type Deliverer struct {
	settings atomic.Pointer[settings]
	resolver *dns.Resolver
	pool     *pool
	sts      *mtasts.Fetcher // nil: MTA-STS not followed
	resign   Resigner        // nil: converted messages go with broken signatures
	tlsrpt   *tally.Recorder // nil: TLS sessions are not counted for TLS-RPT
}

// SetTLSReports makes deliveries count their TLS sessions to MX hosts
// for TLS-RPT (RFC 8460) in rec.
func (d *Deliverer) SetTLSReports(rec *tally.Recorder) { d.tlsrpt = rec }

// SetResigner makes messages converted to 7 bits signed anew.
func (d *Deliverer) SetResigner(r Resigner) { d.resign = r }

// SetMTASTS makes deliveries follow receiving domains' MTA-STS policies.
func (d *Deliverer) SetMTASTS(f *mtasts.Fetcher) { d.sts = f }

// settings are a configuration with its state: each delivery uses the one
// current when it began.
type settings struct {
	cfg   Config
	turns map[string]*atomic.Uint32 // per source pool: the next address to use
}

// New returns a deliverer asking r for routes.
func New(cfg Config, r *dns.Resolver) *Deliverer {
	d := &Deliverer{resolver: r, pool: newPool(0, 5*time.Minute, 1000)}
	d.SetConfig(cfg)
	return d
}

// SetConfig replaces the configuration for deliveries that begin from now
// on (SIGHUP); connections kept open to a smart host no longer used are
// closed when their idle time ends.
func (d *Deliverer) SetConfig(cfg Config) {
	if cfg.Port == 0 {
		cfg.Port = 25
	}
	if cfg.IdleTime == 0 {
		cfg.IdleTime = 5 * time.Second
	}
	s := &settings{cfg: cfg, turns: map[string]*atomic.Uint32{}}
	for _, p := range cfg.Pools {
		s.turns[p.Name] = new(atomic.Uint32)
	}
	d.pool.setIdleTime(cfg.IdleTime)
	d.settings.Store(s)
}

// Close ends the connections kept open for reuse.
func (d *Deliverer) Close() { d.pool.close() }

// Deliver sends the job over a connection kept from an earlier message to
// the same destination, or else tries the job's exchangers (or its smart
// host) in order. It returns one outcome per recipient, in order.
func (d *Deliverer) Deliver(ctx context.Context, job Job) []Outcome {
	st := d.settings.Load()
	relay, src := st.relayFor(job.Domain), st.poolFor(job.MailFrom)
	key := job.Domain
	if relay != nil {
		key = "relay " + relay.Host
	}
	if src != nil {
		key += " from " + src.Name
	}
	// MTA-STS (RFC 8461): a policy in enforce mode allows only the MX
	// hosts it names, over TLS with a certificate valid for the host. A
	// connection opened so is kept apart from others.
	var policy *mtasts.Policy
	if relay == nil && d.sts != nil && !job.TLSOptional {
		var err error
		policy, err = d.sts.Policy(ctx, job.Domain) // a failed fetch: the kept policy, or none (5.1)
		if err != nil && policy == nil {
			result := tlsrpt.STSFetchError
			if errors.Is(err, mtasts.ErrInvalid) {
				result = tlsrpt.STSInvalid
			}
			d.countTLS(job.Domain, tlsrpt.Row{PolicyType: tlsrpt.PolicySTS, Result: result, Reason: err.Error()})
		}
	}
	// DANE (RFC 7672) is looked for when the resolver validates: then an
	// MX host with TLSA records is authenticated by them, whatever the
	// MTA-STS policy says (RFC 8461 2). "TLS-Required: No" sets both
	// aside (RFC 8689 5).
	daneOn := relay == nil && d.resolver.Validating() && !job.TLSOptional
	// REQUIRETLS (RFC 8689 4.2.1): the next hop must be authenticated, by
	// the domain's policy (in testing mode too), by DANE, or as a checked
	// smart host.
	enforce := policy != nil && (policy.Mode == mtasts.Enforce || job.RequireTLS)
	if job.RequireTLS {
		switch {
		case relay != nil && relay.TLS == nil:
			return all(job, Outcome{Permanent: true, Detail: "5.7.30 REQUIRETLS support required: the smart host for " + job.Domain + " is reached without TLS"})
		case relay == nil && policy == nil && !daneOn:
			return all(job, Outcome{Permanent: true, Detail: noAuthRequireTLS(job.Domain)})
		}
	}
	// Kept connections are kept apart by how their next hop was
	// authenticated. A DANE-authenticated one serves any message; then one
	// opened as the domain's policy says; a message that needs
	// authentication takes no other.
	keyFor := func(mode int) string {
		switch mode {
		case authDANE:
			return key + " (DANE)"
		case authDANEUnusable:
			return key + " (TLSA unusable)"
		case authMTASTS:
			return key + " (MTA-STS)"
		}
		return key
	}
	keys := []string{}
	if daneOn {
		keys = append(keys, keyFor(authDANE))
	}
	// A message that says "TLS-Required: No" opens connections no policy
	// checked: they are kept apart, for such messages only.
	optional := key + " (TLS optional)"
	if job.TLSOptional {
		keys = append(keys, optional)
	}
	switch {
	case enforce:
		keys = append(keys, keyFor(authMTASTS))
	case !job.RequireTLS || relay != nil:
		if daneOn {
			keys = append(keys, keyFor(authDANEUnusable))
		}
		keys = append(keys, key)
	}
	for _, k := range keys {
		for c := d.pool.get(k); c != nil; c = d.pool.get(k) {
			if enforce && c.auth != authDANE && !policy.Matches(c.host) {
				go c.c.Close() // kept under an earlier policy that named its host
				continue
			}
			if out, ok := d.send(ctx, c, job, k, true); ok {
				return out
			}
		}
	}
	var mxs []dns.MX
	var mxSecure bool
	var err error
	if relay != nil {
		mxs = []dns.MX{{Host: relay.Host}}
	} else if mxs, mxSecure, err = d.resolver.LookupMXSecure(ctx, job.Domain); err != nil {
		return all(job, routeFailure(job.Domain, err))
	}
	last := Outcome{Detail: "4.4.1 no mail exchanger could be reached"}
	for _, mx := range mxs {
		ips, ipSecure, err := d.lookupIP(ctx, mx.Host)
		if err != nil {
			last = routeFailure(mx.Host, err)
			if (mx.Implicit || relay != nil) && last.Permanent {
				return all(job, last) // the domain itself has no address
			}
			last.Permanent = false // another exchanger may do
			continue
		}
		v := verification{}
		if daneOn && mxSecure && ipSecure {
			if v, err = d.daneFor(ctx, st, job.Domain, mx.Host); err != nil {
				last = Outcome{Detail: "4.7.5 DANE: " + err.Error(), RemoteMTA: mx.Host}
				d.countTLS(job.Domain, tlsrpt.Row{PolicyType: tlsrpt.PolicyTLSA, Result: tlsrpt.DNSSECInvalid, ReceivingMX: mx.Host, Reason: err.Error()})
				continue // RFC 7672 2.2: a failed TLSA lookup is no "none"
			}
		}
		// A host with TLSA records none of which is usable is left to an
		// enforced MTA-STS policy, which authenticates it.
		if (v.mode == authNone || v.mode == authDANEUnusable) && enforce {
			v = verification{}
			if !policy.Matches(mx.Host) {
				last = Outcome{Detail: fmt.Sprintf("4.7.5 MTA-STS: the policy of %s does not name the MX host %s (it names %s)", job.Domain, mx.Host, strings.Join(policy.MX, ", ")), RemoteMTA: mx.Host}
				row := policyRow(policy, v)
				row.Result, row.ReceivingMX, row.Reason = tlsrpt.ValidationFailure, mx.Host, "the MX host is not one the policy names"
				d.countTLS(job.Domain, row)
				continue
			}
			v.mode = authMTASTS
		}
		if job.RequireTLS && relay == nil && v.mode != authDANE && v.mode != authMTASTS {
			last = Outcome{Permanent: true, Detail: noAuthRequireTLS(job.Domain), RemoteMTA: mx.Host}
			continue
		}
		k := keyFor(v.mode)
		if job.TLSOptional && relay == nil {
			k = optional
		}
		for _, ip := range ips {
			c, err := d.dial(ctx, st, mx.Host, ip, relay, src, v)
			if relay == nil && !job.TLSOptional {
				d.countSession(job.Domain, policy, v, mx.Host, ip, c, err, st.cfg.Roots)
			}
			if err != nil {
				last = Outcome{Detail: describe(err), RemoteMTA: mx.Host}
				switch v.mode {
				case authMTASTS:
					last.Detail = fmt.Sprintf("4.7.5 MTA-STS: the policy of %s requires TLS with a valid certificate for %s: %s", job.Domain, mx.Host, describe(err))
				case authDANE:
					last.Detail = fmt.Sprintf("4.7.5 DANE: %s publishes TLSA records, so it is reached only over TLS they authenticate: %s", mx.Host, describe(err))
				case authDANEUnusable:
					last.Detail = fmt.Sprintf("4.7.5 DANE: %s publishes TLSA records (none usable), so it is reached only over TLS: %s", mx.Host, describe(err))
				}
				var e *smtpclient.Error
				if relay != nil && errors.As(err, &e) && e.Stage == "auth" && e.Reply != nil && e.Reply.Permanent() {
					last.Detail = "4.7.0 the smart host refused our credentials: " + last.Detail
				}
				continue
			}
			out, _ := d.send(ctx, c, job, k, false)
			return out
		}
	}
	return all(job, last)
}

// countTLS counts one session (or failure to have one) for TLS-RPT.
func (d *Deliverer) countTLS(domain string, row tlsrpt.Row) {
	if d.tlsrpt != nil {
		if len(row.Reason) > 200 {
			row.Reason = row.Reason[:200]
		}
		d.tlsrpt.Add(domain, row, time.Now())
	}
}

// policyRow describes the policy a session was under (RFC 8460 4.3):
// DANE's TLSA records, the MTA-STS policy (in testing mode too), or none.
func policyRow(p *mtasts.Policy, v verification) tlsrpt.Row {
	switch {
	case v.mode == authDANE || v.mode == authDANEUnusable:
		row := tlsrpt.Row{PolicyType: tlsrpt.PolicyTLSA}
		for _, r := range v.all {
			row.PolicyString = append(row.PolicyString, fmt.Sprintf("%d %d %d %X", r.Usage, r.Selector, r.MatchingType, r.Data))
		}
		return row
	case p != nil:
		return tlsrpt.Row{PolicyType: tlsrpt.PolicySTS, PolicyString: p.Lines(), MXHost: p.MX}
	}
	return tlsrpt.Row{PolicyType: tlsrpt.PolicyNone}
}

// countSession counts a connection to an MX host: a success when TLS was
// had as the policy asks, else the reason it was not (RFC 8460 4.3). A
// policy in testing mode is checked here, after the fact: its failures
// are reported, not enforced. Connections that failed before TLS was
// tried (no route, refused) are not TLS sessions.
func (d *Deliverer) countSession(domain string, p *mtasts.Policy, v verification, host string, ip netip.Addr, c *conn, err error, roots *x509.CertPool) {
	if d.tlsrpt == nil {
		return
	}
	row := policyRow(p, v)
	row.ReceivingMX, row.ReceivingIP = host, ip.String()
	switch {
	case err != nil:
		var e *smtpclient.Error
		if !errors.As(err, &e) || e.Stage != "starttls" {
			return
		}
		row.Result, row.Reason = classifyTLS(err), err.Error()
	case c.c.TLS == nil && c.c.TLSFailed != "":
		row.Result, row.Reason = tlsrpt.ValidationFailure, "STARTTLS failed, delivered in plaintext: "+c.c.TLSFailed
	case c.c.TLS == nil:
		row.Result = tlsrpt.StartTLSNotSupported
	case v.mode == authNone && p != nil && p.Mode == mtasts.Testing:
		// What enforcing would have found.
		if !p.Matches(host) {
			row.Result, row.Reason = tlsrpt.ValidationFailure, "the MX host is not one the policy names"
		} else if verr := verifyChain(c.c.TLS, host, roots); verr != nil {
			row.Result, row.Reason = classifyTLS(verr), verr.Error()
		}
	}
	if row.Result == "" {
		row.ReceivingMX, row.ReceivingIP = "", "" // successes are counted per policy only
	}
	d.countTLS(domain, row)
}

// verifyChain checks a server's certificate for host under the Web PKI.
func verifyChain(st *tls.ConnectionState, host string, roots *x509.CertPool) error {
	if len(st.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range st.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := st.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter})
	return err
}

// classifyTLS names a TLS failure as TLS-RPT does.
func classifyTLS(err error) string {
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	var e *smtpclient.Error
	switch {
	case errors.Is(err, smtpclient.ErrNoSTARTTLS), errors.As(err, &e) && e.Stage == "starttls" && e.Reply != nil:
		return tlsrpt.StartTLSNotSupported
	case errors.Is(err, dane.ErrNoMatch):
		return tlsrpt.TLSAInvalid
	case errors.Is(err, dane.ErrHostMismatch), errors.As(err, &host):
		return tlsrpt.HostMismatch
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return tlsrpt.Expired
	case errors.As(err, &unknown):
		return tlsrpt.NotTrusted
	}
	return tlsrpt.ValidationFailure
}

func noAuthRequireTLS(domain string) string {
	return "5.7.30 REQUIRETLS support required: " + domain +
		" publishes neither an MTA-STS policy nor DANE TLSA records, so its MX hosts cannot be authenticated as the sender asked"
}

// How a connection's next hop is authenticated.
const (
	authNone         = iota // opportunistic TLS (RFC 7435), or a smart host as configured
	authMTASTS              // a certificate valid for the host under the Web PKI (RFC 8461)
	authDANE                // TLSA records (RFC 7672)
	authDANEUnusable        // TLSA records none of which is usable: TLS required, not authenticated (RFC 7672 2.2)
)

// verification is how to authenticate one MX host.
type verification struct {
	mode  int
	tlsa  []dns.TLSA // usable records, for authDANE
	all   []dns.TLSA // every record, for TLS-RPT
	names []string   // names a DANE-TA certificate may be for
}

// daneFor looks up the TLSA records of an MX host whose MX and address
// records validated (RFC 7672 2.2): records that validate make DANE
// mandatory for the host; none, or records that do not validate, leave it
// to MTA-STS or opportunistic TLS; a failed lookup is an error.
func (d *Deliverer) daneFor(ctx context.Context, st *settings, domain, host string) (verification, error) {
	recs, secure, err := d.resolver.LookupTLSA(ctx, fmt.Sprintf("_%d._tcp.%s", st.cfg.Port, host))
	if err != nil {
		return verification{}, fmt.Errorf("the TLSA records of %s could not be looked up: %w", host, err)
	}
	if !secure || len(recs) == 0 {
		return verification{}, nil
	}
	usable := dane.Usable(recs)
	if len(usable) == 0 {
		return verification{mode: authDANEUnusable, all: recs}, nil
	}
	return verification{mode: authDANE, tlsa: usable, all: recs, names: []string{host, domain}}, nil
}

// lookupIP resolves a host name, or takes an address literal as is, and
// says whether the answer validated (DNSSEC).
func (d *Deliverer) lookupIP(ctx context.Context, host string) ([]netip.Addr, bool, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, false, nil
	}
	return d.resolver.LookupIPSecure(ctx, host)
}

// relayFor returns the smart host for a recipient domain, or nil.
func (st *settings) relayFor(domain string) *Relay {
	var def *Relay
	for i := range st.cfg.Relays {
		r := &st.cfg.Relays[i]
		for _, x := range r.Domains {
			if x == domain {
				return r
			}
			if x == "*" && def == nil {
				def = r
			}
		}
	}
	return def
}

// poolFor returns the source pool for a sender, or nil.
func (st *settings) poolFor(sender string) *SourcePool {
	sender = strings.ToLower(sender)
	_, domain, _ := strings.Cut(sender, "@")
	var byDomain, def *SourcePool
	for i := range st.cfg.Pools {
		p := &st.cfg.Pools[i]
		for _, x := range p.Senders {
			switch {
			case x == sender && sender != "":
				return p
			case x == domain && domain != "" && byDomain == nil:
				byDomain = p
			case x == "*" && def == nil:
				def = p
			}
		}
	}
	if byDomain != nil {
		return byDomain
	}
	return def
}

// source picks the pool's next address of ip's family; ok is false when
// the pool has none (the destination address is then skipped).
func (st *settings) source(p *SourcePool, ip netip.Addr) (netip.Addr, bool) {
	v4 := ip.Unmap().Is4()
	var fit []netip.Addr
	for _, a := range p.Addrs {
		if a.Unmap().Is4() == v4 {
			fit = append(fit, a)
		}
	}
	if len(fit) == 0 {
		return netip.Addr{}, false
	}
	return fit[int(st.turns[p.Name].Add(1)-1)%len(fit)], true
}

// routeFailure describes a DNS failure; NXDOMAIN and Null MX are permanent.
func routeFailure(name string, err error) Outcome {
	switch {
	case errors.Is(err, dns.ErrNullMX):
		return Outcome{Permanent: true, Detail: "5.1.10 " + name + " accepts no mail (null MX)"}
	case errors.Is(err, dns.ErrNoDomain):
		return Outcome{Permanent: true, Detail: "5.1.2 " + name + " does not exist"}
	case errors.Is(err, dns.ErrNoAddress):
		return Outcome{Permanent: true, Detail: "5.1.2 " + name + " has no address"}
	}
	return Outcome{Detail: "4.4.3 DNS: " + err.Error()}
}

func all(job Job, o Outcome) []Outcome {
	out := make([]Outcome, len(job.Recipients))
	for i := range out {
		out[i] = o
	}
	return out
}

// dial connects to one address of a next hop: an MX host with
// opportunistic TLS, or a smart host with the TLS and login it requires.
func (d *Deliverer) dial(ctx context.Context, st *settings, host string, ip netip.Addr, relay *Relay, src *SourcePool, v verification) (*conn, error) {
	opts := smtpclient.Options{
		LocalName: st.cfg.LocalName,
		// Opportunistic TLS to MX hosts: encrypt whenever offered; the
		// certificate is not checked (RFC 7435) unless a policy (MTA-STS,
		// DANE) demands TLS authenticated its way.
		TLS:     &tls.Config{ServerName: host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12},
		Timeout: st.cfg.Timeout,
	}
	switch v.mode {
	case authMTASTS:
		opts.TLS = &tls.Config{ServerName: host, RootCAs: st.cfg.Roots, MinVersion: tls.VersionTLS12}
		opts.RequireTLS = true
	case authDANE:
		opts.TLS.VerifyConnection = func(cs tls.ConnectionState) error {
			chain := make([][]byte, len(cs.PeerCertificates))
			for i, c := range cs.PeerCertificates {
				chain[i] = c.Raw
			}
			return dane.Verify(chain, v.tlsa, v.names, time.Now())
		}
		opts.RequireTLS = true
	case authDANEUnusable:
		opts.RequireTLS = true
	}
	port := st.cfg.Port
	if relay != nil {
		port, opts.TLS, opts.RequireTLS = relay.Port, relay.TLS, relay.TLS != nil
		opts.ImplicitTLS, opts.Username, opts.Password = relay.ImplicitTLS, relay.Username, relay.Password
	}
	if src != nil {
		a, ok := st.source(src, ip)
		if !ok {
			return nil, &smtpclient.Error{Stage: "connect", Err: fmt.Errorf("source pool %q has no address for %s", src.Name, ip)}
		}
		opts.Dialer = &net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: a.AsSlice()}}
	}
	addr := netip.AddrPortFrom(ip, uint16(port)).String()
	c, err := smtpclient.Dial(ctx, addr, opts)
	var e *smtpclient.Error
	if err != nil && !opts.RequireTLS && errors.As(err, &e) && errors.Is(err, smtpclient.ErrHandshake) {
		// Opportunistic TLS (RFC 7435 3): a handshake that fails is no
		// reason to keep the mail from an MX that offered it; deliver in
		// plaintext, as Postfix's "may" level does. A policy that demands
		// TLS (MTA-STS, DANE, REQUIRETLS) sets RequireTLS and never gets here;
		// nor does a server that injected replies ahead of the handshake, or
		// one that never answered STARTTLS (only a failed handshake is retried).
		opts.TLS = nil
		c, err = smtpclient.Dial(ctx, addr, opts)
		if err == nil {
			c.TLSFailed = e.Err.Error()
		}
	}
	if err != nil {
		return nil, err
	}
	tlsInfo := ""
	if c.TLS != nil {
		tlsInfo = tls.VersionName(c.TLS.Version) + " " + tls.CipherSuiteName(c.TLS.CipherSuite)
	}
	switch {
	case c.TLS != nil && v.mode == authMTASTS:
		tlsInfo += ", certificate verified (MTA-STS)"
	case c.TLS != nil && v.mode == authDANE:
		tlsInfo += ", certificate verified (DANE)"
	case c.TLS != nil && v.mode == authDANEUnusable:
		tlsInfo += ", certificate not verified (DANE: no usable TLSA record)"
	case c.TLSFailed != "":
		tlsInfo = "none (STARTTLS failed: " + c.TLSFailed + ")"
	}
	return &conn{c: c, host: host, tls: tlsInfo, auth: v.mode, born: time.Now()}, nil
}

// send runs one transaction on c and keeps c for the next message when it
// is still good. ok is false when a kept connection turned out closed
// before it took anything: the caller then opens a new one.
func (d *Deliverer) send(ctx context.Context, c *conn, job Job, key string, kept bool) (out []Outcome, ok bool) {
	_, dsn := c.c.Extension("DSN")
	rcpts := make([]smtpclient.Rcpt, len(job.Recipients))
	for i, r := range job.Recipients {
		rcpts[i] = smtpclient.Rcpt{Addr: r.Address}
		if dsn {
			rcpts[i].Params = r.Params
		}
	}
	params, err := mailParams(c.c, job, dsn)
	if err != nil {
		d.pool.put(key, c)
		return all(job, Outcome{Permanent: true, Detail: err.Error(), RemoteMTA: c.host, TLS: c.tls}), true
	}
	body, size, err := messageFor(ctx, c.c, job, d.settings.Load().cfg.SpoolDir, d.resign)
	if err != nil {
		d.pool.put(key, c)
		o := Outcome{Detail: "4.3.0 local error reading the message: " + err.Error()}
		if detail, ok := downgrade.Permanent(err); ok {
			o = Outcome{Permanent: true, Detail: detail, RemoteMTA: c.host, TLS: c.tls}
		}
		return all(job, o), true
	}
	defer body.Close()
	res, err := c.c.Send(ctx, job.MailFrom, params, rcpts, body, size)
	if err != nil {
		var e *smtpclient.Error
		errors.As(err, &e)
		if e != nil && e.Stage == "mail" && (e.Reply == nil || e.Reply.Code == 421) {
			go c.c.Close()
			if kept {
				return nil, false // closed while idle: nothing was sent
			}
		} else if e != nil && e.Stage == "mail" && e.Reply != nil {
			d.pool.put(key, c) // MAIL refused; the session goes on
		} else {
			go c.c.Close()
		}
		o := Outcome{Detail: describe(err), RemoteMTA: c.host, TLS: c.tls}
		if e != nil && e.Reply != nil {
			o.Permanent = e.Reply.Permanent()
		}
		return all(job, o), true
	}
	if job.Held != nil && d.pool.willKeep(c) {
		var once sync.Once
		job.Held(func() { once.Do(func() { d.pool.put(key, c) }) })
	} else {
		d.pool.put(key, c)
	}
	out = make([]Outcome, len(job.Recipients))
	for i, r := range res.Rcpts {
		out[i] = Outcome{Delivered: r.Code/100 == 2, Permanent: r.Code >= 500, Detail: replyText(r), RemoteMTA: c.host, TLS: c.tls, DSN: dsn}
	}
	return out, true
}

// messageFor opens the message as the next hop can take it: as stored,
// or, for a hop without 8BITMIME, converted to 7bit data when it has 8-bit
// octets (RFC 6152 3), whether or not it came with BODY=8BITMIME.
func messageFor(ctx context.Context, c *smtpclient.Client, job Job, spoolDir string, resign Resigner) (io.ReadCloser, int64, error) {
	body, err := job.Open()
	if err != nil {
		return nil, 0, err
	}
	if _, ok := c.Extension("8BITMIME"); ok {
		return body, job.Size, nil
	}
	// Without 8BITMIME: look for 8-bit octets in a pass that holds nothing,
	// then send the message as it is, or a 7-bit copy made in a file (not
	// in memory beside the original).
	needed, err := downgrade.Needed(body)
	body.Close()
	if err != nil {
		return nil, 0, err
	}
	if body, err = job.Open(); err != nil || !needed {
		return body, job.Size, err
	}
	defer body.Close()
	f, err := os.CreateTemp(spoolDir, "7bit-*")
	if err != nil {
		return nil, 0, err
	}
	os.Remove(f.Name()) // open, it lives until closed
	if err := downgrade.Convert(f, body); err != nil {
		f.Close()
		return nil, 0, err
	}
	if resign != nil {
		if signed, err := resigned(ctx, f, spoolDir, resign); err == nil && signed != nil {
			f.Close()
			f = signed
		}
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, size, nil
}

// resigned returns a copy of the converted message f with its DKIM
// signatures made anew, positioned at its end like f, or nil (and f
// as it was) when there is nothing to sign with.
func resigned(ctx context.Context, f *os.File, spoolDir string, resign Resigner) (*os.File, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	out, err := os.CreateTemp(spoolDir, "7bit-signed-*")
	if err != nil {
		return nil, err
	}
	os.Remove(out.Name())
	ok, err := resign(ctx, f, out)
	if err != nil || !ok {
		out.Close()
		_, serr := f.Seek(0, io.SeekEnd)
		return nil, errors.Join(err, serr)
	}
	return out, nil
}

// mailParams writes the MAIL FROM parameters the next hop understands:
// BODY=8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), RET and ENVID (RFC 3461).
// A message that needs SMTPUTF8 cannot go to a hop without it.
func mailParams(c *smtpclient.Client, job Job, dsn bool) (string, error) {
	var p []string
	if _, ok := c.Extension("8BITMIME"); ok && job.EightBit {
		p = append(p, "BODY=8BITMIME")
	}
	if job.SMTPUTF8 {
		if _, ok := c.Extension("SMTPUTF8"); !ok {
			return "", errors.New("5.6.7 the next hop does not support SMTPUTF8, which this message needs")
		}
		p = append(p, "SMTPUTF8")
	}
	if job.RequireTLS {
		if _, ok := c.Extension("REQUIRETLS"); !ok || c.TLS == nil {
			return "", errors.New("5.7.30 REQUIRETLS support required: the next hop does not offer REQUIRETLS, which the sender asked for")
		}
		p = append(p, "REQUIRETLS")
	}
	if dsn && job.Ret != "" {
		p = append(p, "RET="+job.Ret)
	}
	if dsn && job.EnvID != "" {
		p = append(p, "ENVID="+smtp.EncodeXtext(job.EnvID))
	}
	return strings.Join(p, " "), nil
}

func replyText(r *smtp.Reply) string {
	return strings.ReplaceAll(r.Error(), "\n", " ")
}

func describe(err error) string {
	var e *smtpclient.Error
	if errors.As(err, &e) && e.Reply != nil {
		return fmt.Sprintf("%s (at %s)", replyText(e.Reply), e.Stage)
	}
	return "4.4.1 " + err.Error()
}
