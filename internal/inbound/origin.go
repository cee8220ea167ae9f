package inbound

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dmarc"

	"mailroom/internal/arc"
	"mailroom/internal/dmarcreport"
	"mailroom/internal/mailauth"
	"mailroom/internal/metrics"
	"mailroom/internal/smtp"
	"mailroom/internal/smtpserver"
	"mailroom/internal/spool"
	"mailroom/internal/store"
	"mailroom/internal/tally"
)

// SetResolver turns the checks of mail from outside on: SPF, DKIM and
// DMARC through r (mailauth).
func (b *Backend) SetResolver(r mailauth.Resolver) {
	b.origin = &mailauth.Checker{DNS: r}
}

// origin is what the checks of a message from outside decided.
type origin struct {
	field      string // the Authentication-Results field, CRLF-ended
	quarantine bool   // to the recipients' Junk folders
	reject     bool   // it failed DMARC, whose policy is reject: not forwarded
	// junk: it failed DMARC, whose policy is quarantine (Mailroom's only
	// verdict of unwanted mail until spam filtering comes): not forwarded,
	// whatever the recipient domain does with its own copy.
	junk bool
	arc  arc.Result
}

// checkOrigin checks a message from outside (not logged in, not from a
// trusted network): the Authentication-Results field for it, whether it
// goes to Junk, or the refusal its author's DMARC policy asks for when
// every recipient's domain enforces it. Fields that claim our own
// authserv-id are obscured first (RFC 8601 5): only we write those.
func (b *Backend) checkOrigin(ctx context.Context, s *smtpserver.SessionInfo, env *smtpserver.Transaction, msg *spool.Spool, hdr headerInfo, domains []string) (origin, error) {
	cfg := b.cfg.Load()
	if b.origin == nil {
		return origin{}, nil
	}
	// Bounds on what the checks read (a header folded into thousands of
	// lines costs the DKIM verifier quadratic time), and one author, as
	// DMARC needs (RFC 7489 6.6.1): a message that hides its From behind
	// padding, or names two, is not checked into a pass or a permerror.
	switch {
	case !hdr.Complete:
		return origin{}, smtp.Errorf(552, "5.6.0", "The header section is larger than %d KiB: mail from outside is refused beyond that", maxHeaderScan>>10)
	case hdr.Lines > maxHeaderLines:
		return origin{}, smtp.Errorf(552, "5.6.0", "The header section has more than %d lines", maxHeaderLines)
	case hdr.MaxFolds > maxFieldFolds:
		return origin{}, smtp.Errorf(552, "5.6.0", "A header field is folded over more than %d lines", maxFieldFolds)
	case hdr.Froms > 1:
		return origin{}, smtp.Errorf(550, "5.6.0", "The message has %d From fields; RFC 5322 allows one", hdr.Froms)
	}
	if err := obscureClaims(msg, cfg.Hostname); err != nil {
		return origin{}, tempFailure(err)
	}
	mailFrom := ""
	if !env.From.IsNull() {
		mailFrom = env.From.String()
	}
	checker := *b.origin
	checker.TrustedSealers = cfg.ARCTrustedSealers
	res := checker.Check(ctx, mailauth.Input{IP: s.Remote.Addr(), Helo: s.Helo, MailFrom: mailFrom}, msg.Reader)
	countResults(res)
	o := origin{field: res.Header(cfg.Hostname), arc: res.ARC}
	if res.DMARC.Result != "fail" || res.DMARC.Disposition == dmarc.PolicyNone || res.DMARC.Disposition == "" {
		reason := ""
		switch {
		case res.DMARC.Overridden:
			reason = "trusted_forwarder"
		case res.DMARC.Result == "fail":
			reason = "sampled_out" // pct spared it
		}
		b.countDMARC(s, mailFrom, res, "none", reason)
		return o, nil
	}
	o.reject = res.DMARC.Disposition == dmarc.PolicyReject // pct applied; a trusted ARC chain set it to none
	o.junk = res.DMARC.Disposition == dmarc.PolicyQuarantine
	enforced, monitored := 0, 0
	for _, d := range domains {
		switch cfg.dmarcFor(d) {
		case "enforce":
			enforced++
		case "monitor":
			monitored++
		}
	}
	b.log.Info("DMARC failed", "session", s.ID, "from_domain", res.FromHead, "policy", res.DMARC.Policy, "disposition", res.DMARC.Disposition,
		"spf", res.SPF, "client", s.Remote.Addr().String())
	if res.DMARC.Disposition == dmarc.PolicyReject && enforced == len(domains) {
		b.countDMARC(s, mailFrom, res, "reject", "")
		return o, smtp.Errorf(550, "5.7.1", "Refused: the domain of the From address (%s) publishes a DMARC policy that rejects mail failing SPF and DKIM, and this message fails both", res.FromHead)
	}
	o.quarantine = monitored < len(domains)
	if o.quarantine {
		b.countDMARC(s, mailFrom, res, "quarantine", "")
	} else {
		b.countDMARC(s, mailFrom, res, "none", "local_policy")
	}
	return o, nil
}

// SetDMARCReports makes the DMARC evaluations of mail from outside counted
// for the aggregate reports of the domains that ask for them (rua).
func (b *Backend) SetDMARCReports(rec *tally.Recorder) { b.dmarcrpt = rec }

// countDMARC counts one evaluation in its policy domain's report, when the
// policy asks for reports (which of its destinations take mail is sorted
// out once per report, not per message).
func (b *Backend) countDMARC(s *smtpserver.SessionInfo, mailFrom string, res mailauth.Result, disposition, reason string) {
	d := res.DMARC
	if b.dmarcrpt == nil || d.Record == nil || (d.Result != "pass" && d.Result != "fail") || len(d.Record.ReportURIAggregate) == 0 {
		return
	}
	row := dmarcreport.Row{SourceIP: s.Remote.Addr().Unmap().String(), HeaderFrom: res.FromHead, Disposition: disposition, Reason: reason,
		DKIM: passFail(d.DKIMAligned), SPF: passFail(d.SPFAligned), P: string(d.Record.Policy), SP: string(d.Record.SubdomainPolicy),
		ADKIM: string(d.Record.DKIMAlignment), ASPF: string(d.Record.SPFAlignment), Pct: 100, RUA: d.Record.ReportURIAggregate}
	if d.Record.Percent != nil {
		row.Pct = *d.Record.Percent
	}
	if _, dom, ok := strings.Cut(mailFrom, "@"); ok {
		row.EnvelopeFrom = strings.ToLower(dom)
	}
	for _, k := range res.DKIM {
		if k.Domain != "" {
			row.DKIMAuth = append(row.DKIMAuth, dmarcreport.Auth{Domain: strings.ToLower(k.Domain), Result: k.Result})
		}
	}
	_, spfDomain, _ := strings.Cut(res.SPFFrom, "@")
	row.SPFAuth = dmarcreport.Auth{Domain: strings.ToLower(spfDomain), Scope: "mfrom", Result: strings.ToLower(string(res.SPF))}
	if mailFrom == "" {
		row.SPFAuth.Scope = "helo"
	}
	if row.SPFAuth.Result == "" {
		row.SPFAuth.Result = "none"
	}
	b.dmarcrpt.Add(d.PolicyDomain, row, time.Now())
}

// countResults counts the checks' results in the metrics: SPF, each DKIM
// signature ("none" for a message without one), DMARC and ARC.
func countResults(res mailauth.Result) {
	word := func(v string) string {
		if v == "" {
			return "none"
		}
		return metrics.Label(strings.ToLower(v))
	}
	metrics.AuthResults.WithLabelValues("spf", word(string(res.SPF))).Inc()
	if len(res.DKIM) == 0 {
		metrics.AuthResults.WithLabelValues("dkim", "none").Inc()
	}
	for _, k := range res.DKIM {
		metrics.AuthResults.WithLabelValues("dkim", word(k.Result)).Inc()
	}
	metrics.AuthResults.WithLabelValues("dmarc", word(res.DMARC.Result)).Inc()
	metrics.AuthResults.WithLabelValues("arc", word(res.ARC.Value)).Inc()
}

func passFail(ok bool) string {
	if ok {
		return "pass"
	}
	return "fail"
}

// maxHeaderLines bounds the lines of a header section from outside, and
// maxFieldFolds those of one field: the DKIM verifier joins a field's lines
// in time that grows with their square (5,000 lines of one field: 77 ms;
// 1,000: 8 ms).
const (
	maxHeaderLines = 5000
	maxFieldFolds  = 1000
)

// dmarcFor is what a recipient domain does with mail failing DMARC.
func (c *Config) dmarcFor(domain string) string {
	if v, ok := c.DMARCDomains[strings.ToLower(domain)]; ok {
		return v
	}
	if c.DMARC == "" {
		return "enforce"
	}
	return c.DMARC
}

// claimedName is what an Authentication-Results field claiming our
// authserv-id is renamed to: as long as the name it replaces, so that the
// message keeps its length and offsets.
const claimedName = "X-Claimed-Auth-Results"

// obscureClaims renames the Authentication-Results fields of a message's
// header whose authserv-id is ours.
func obscureClaims(msg *spool.Spool, authservID string) error {
	data, unmap, err := msg.Map()
	if err != nil {
		return err
	}
	var offsets []int64
	const name = "authentication-results"
	for off := 0; off < len(data) && off < maxHeaderScan; {
		end := bytes.IndexByte(data[off:], '\n')
		if end < 0 {
			end = len(data) - off
		}
		line := data[off : off+end]
		if len(bytes.TrimRight(line, "\r")) == 0 {
			break // the end of the header
		}
		start := off
		off += end + 1
		colon := bytes.IndexByte(line, ':')
		if colon < len(name) || !strings.EqualFold(strings.TrimRight(string(line[:colon]), " \t"), name) {
			continue
		}
		// The value, its continuation lines too (the authserv-id may
		// start on the next line), of which the first KiB is enough.
		var value strings.Builder
		value.Write(line[colon+1:])
		for off < len(data) && (data[off] == ' ' || data[off] == '\t') {
			next := bytes.IndexByte(data[off:], '\n')
			if next < 0 {
				next = len(data) - off
			}
			if value.Len() < 1024 {
				value.WriteByte(' ')
				value.Write(data[off : off+next])
			}
			off += next + 1
		}
		id, _, _ := strings.Cut(withoutComments(value.String()), ";")
		if f := strings.Fields(id); len(f) > 0 && strings.EqualFold(strings.TrimSuffix(f[0], "."), strings.TrimSuffix(authservID, ".")) {
			offsets = append(offsets, int64(start))
		}
	}
	unmap()
	for _, off := range offsets {
		if err := msg.Patch(off, []byte(claimedName)); err != nil {
			return err
		}
	}
	return nil
}

// junk is the name of a user's Junk folder (the one marked \\Junk), or
// INBOX when they have none.
func (b *Backend) junk(ctx context.Context, userID int64) (string, error) {
	mbs, err := b.store.ListMailboxes(ctx, userID)
	if err != nil {
		return "", err
	}
	for _, mb := range mbs {
		if mb.SpecialUse == store.UseJunk {
			return mb.Name, nil
		}
	}
	return store.Inbox, nil
}

// keepReports stores the DMARC aggregate reports a message delivered to
// local users carries (RFC 7489 7.2: sent to a domain's rua address) about
// one of our domains; `mailroom dmarc reports` shows them. A message that
// only looks like one is logged and left as mail.
func (b *Backend) keepReports(ctx context.Context, msg *spool.Spool, subject string, now time.Time) {
	if !dmarcreport.Looks(subject) || msg.Size() > dmarcreport.MaxXML {
		return
	}
	data, unmap, err := msg.Map()
	if err != nil {
		return
	}
	reports, err := dmarcreport.Find(data)
	unmap()
	if err != nil {
		b.log.Info("a message that looks like a DMARC report could not be read", "err", err)
		return
	}
	for _, r := range reports {
		if ok, err := b.isLocalDomain(ctx, r.Domain); err != nil || !ok {
			b.log.Info("a DMARC report about a domain that is not ours was left as mail", "org", r.Org, "domain", r.Domain)
			continue
		}
		r.Received = now
		switch err := b.store.AddDMARCReport(ctx, r); {
		case errors.Is(err, store.ErrExists):
			b.log.Info("a DMARC report came again; it was kept already", "org", r.Org, "report_id", r.ReportID)
			continue
		case err != nil:
			b.log.Warn("a DMARC report could not be kept", "org", r.Org, "report_id", r.ReportID, "err", err)
			continue
		}
		total, passed := r.Messages()
		b.log.Info("DMARC report received", "org", r.Org, "domain", r.Domain, "report_id", r.ReportID, "messages", total, "failed", total-passed)
	}
}

// withoutComments removes RFC 5322 comments ("(...)", nested) from a
// field's value.
func withoutComments(v string) string {
	var b strings.Builder
	depth := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && depth > 0:
			i++
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteByte(c)
		}
	}
	return b.String()
}
