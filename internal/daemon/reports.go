package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"mailroom/internal/config"
	"mailroom/internal/dmarcreport"
	"mailroom/internal/dns"
	"mailroom/internal/inbound"
	"mailroom/internal/mailauth"
	"mailroom/internal/store"
	"mailroom/internal/tally"
	"mailroom/internal/tlsrpt"
)

// reports sends the reports other domains ask for: TLS-RPT on our
// deliveries' TLS, DMARC aggregate reports on the mail we received.
type reports struct {
	st       store.Store
	resolver *dns.Resolver
	backend  *inbound.Backend
	log      *slog.Logger
	tls      *tally.Recorder // nil: off
	dmarc    *tally.Recorder // nil: off
	from     string          // "" means postmaster at the first local domain
	org      string
	hostname string
	client   *http.Client    // for https: destinations
	sent     map[string]bool // destinations that have a report still counted (kind domain period group dest)
}

// newReports makes the recorders [reports] asks for; run sends.
func newReports(cfg *config.Config, st store.Store, backend *inbound.Backend, resolver *dns.Resolver, roots *x509.CertPool, log *slog.Logger) *reports {
	r := &reports{st: st, resolver: resolver, backend: backend, log: log, from: cfg.Reports.From, org: cfg.Reports.Organization, hostname: cfg.Hostname,
		sent: map[string]bool{}}
	if r.org == "" {
		r.org = cfg.Hostname
	}
	if cfg.Reports.TLS {
		r.tls = tally.New(store.TallyTLSRPT, cfg.Reports.Interval.D())
	}
	if cfg.Reports.DMARC {
		r.dmarc = tally.New(store.TallyDMARC, cfg.Reports.Interval.D())
	}
	r.client = &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{Proxy: nil, DialContext: dns.DialVia(resolver, 0),
			TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, ResponseHeaderTimeout: 20 * time.Second},
		// RFC 8460 3: redirects are not followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return errors.New("redirected") },
	}
	return r
}

// kind is one kind of report: its counts and how to send one.
type kind struct {
	name string
	rec  *tally.Recorder
	send func(context.Context, tally.Report) error
}

// run flushes the counts and sends the reports of ended periods until ctx
// ends (and flushes once more then).
func (r *reports) run(ctx context.Context) {
	var kinds []kind
	if r.tls != nil {
		kinds = append(kinds, kind{"TLS-RPT", r.tls, r.sendTLSReport})
	}
	if r.dmarc != nil {
		kinds = append(kinds, kind{"DMARC", r.dmarc, r.sendDMARCReport})
	}
	if len(kinds) == 0 {
		return
	}
	length := kinds[0].rec.Length()
	var flushed sync.WaitGroup
	for _, k := range kinds {
		flushed.Go(func() { k.rec.Run(ctx, r.st, min(30*time.Second, length/4), r.log) })
	}
	defer flushed.Wait() // the last counts saved before the store closes
	t := time.NewTicker(min(5*time.Minute, max(length/2, time.Second)))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Several nodes on one store: one sends, the others count.
			if l, ok := r.st.(store.Leases); ok {
				held, err := l.TakeLease(ctx, "reports", time.Now(), 3*min(5*time.Minute, max(length/2, time.Second)))
				if err != nil || !held {
					continue
				}
			}
			for _, k := range kinds {
				r.sendDue(ctx, k)
			}
		}
	}
}

// sender returns the reports' From address.
func (r *reports) sender(ctx context.Context) (string, error) {
	if r.from != "" {
		return r.from, nil
	}
	ds, err := r.st.Domains(ctx)
	if err != nil {
		return "", err
	}
	if len(ds) == 0 {
		return "", errors.New("no local domain to send reports from: add one, or set [reports] from")
	}
	names := make([]string, len(ds))
	for i, d := range ds {
		names[i] = d.Name
	}
	slices.Sort(names)
	return "postmaster@" + names[0], nil
}

// sendDue sends the reports of ended periods: each domain that asks for
// reports gets its own at every destination; the counts of domains that
// ask for none are dropped. A destination that could not be reached for a
// temporary reason is tried again at the next round, for a day at most;
// those that got the report do not get it again.
func (r *reports) sendDue(ctx context.Context, k kind) {
	if err := k.rec.Flush(ctx, r.st); err != nil {
		r.log.Warn("report counts not saved; reports wait for the next round", "kind", k.name, "err", err)
		return // a report now could miss counts still to be saved
	}
	due, err := k.rec.Due(ctx, r.st, time.Now())
	if err != nil {
		r.log.Error("reading the report counts", "kind", k.name, "err", err)
		return
	}
	for _, rep := range due {
		err := k.send(ctx, rep)
		if err != nil && time.Since(rep.End) < 24*time.Hour && errors.Is(err, errRetry) {
			r.log.Warn("report not sent to every destination, to be tried again", "kind", k.name, "domain", rep.Domain, "err", err)
			continue
		}
		if err != nil {
			r.log.Info("report not sent", "kind", k.name, "domain", rep.Domain, "err", err)
		}
		if err := k.rec.Done(ctx, r.st, rep); err != nil {
			r.log.Error("forgetting a report's counts", "kind", k.name, "domain", rep.Domain, "err", err)
		}
		prefix := fmt.Sprintf("%s %s %d ", k.name, rep.Domain, rep.Begin.Unix())
		for key := range r.sent {
			if strings.HasPrefix(key, prefix) {
				delete(r.sent, key)
			}
		}
	}
}

// errRetry marks a failure worth another try.
var errRetry = errors.New("temporary failure")

// maxDestinations bounds the destinations one record may send a report to
// (RFC 7489 6.2 lets a receiver stop at two; we take five).
const maxDestinations = 5

// toEach sends a report to each destination that has not had it yet, and
// remembers those that have: a failure (a full hourly limit, a DNS answer
// that did not come) is retried at the next round, for those only.
func (r *reports) toEach(kindName string, rep tally.Report, group int, dests []string, send func(dest string) error) error {
	var errs []error
	for _, d := range dests[:min(len(dests), maxDestinations)] {
		key := fmt.Sprintf("%s %s %d %d %s", kindName, rep.Domain, rep.Begin.Unix(), group, d)
		if r.sent[key] {
			continue
		}
		if err := send(d); err != nil {
			errs = append(errs, fmt.Errorf("to %s: %w", d, err))
			continue
		}
		r.sent[key] = true
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", errRetry, errors.Join(errs...))
	}
	return nil
}

func (r *reports) sendTLSReport(ctx context.Context, rep tally.Report) error {
	txts, err := r.resolver.LookupTXT(ctx, "_smtp._tls."+rep.Domain)
	if err != nil {
		if errors.Is(err, dns.ErrTemporary) {
			return fmt.Errorf("%w: %w", errRetry, err)
		}
		return err
	}
	mailto, https, err := tlsrpt.Destinations(txts)
	if err != nil {
		return err
	}
	from, err := r.sender(ctx)
	if err != nil {
		return err
	}
	id, unique := reportID(rep.Begin, from)
	report, err := tlsrpt.Build(r.org, "mailto:"+from, id, rep)
	if err != nil {
		return err
	}
	gz, err := report.Gzip()
	if err != nil {
		return err
	}
	return r.toEach("TLS-RPT", rep, 0, append(mailto, https...), func(dest string) error {
		if strings.HasPrefix(dest, "https:") {
			if err := r.post(ctx, dest, gz); err != nil {
				return err
			}
			r.log.Info("TLS-RPT report posted", "domain", rep.Domain, "url", dest, "report_id", id)
			return nil
		}
		msg := tlsrpt.Message(from, dest, r.hostname, rep.Domain, report, gz, unique, time.Now())
		if err := r.backend.Inject(ctx, dest, msg, false); err != nil {
			return err
		}
		r.log.Info("TLS-RPT report sent", "domain", rep.Domain, "to", dest, "report_id", id, "policies", len(report.Policies))
		return nil
	})
}

// sendDMARCReport sends one policy domain's aggregate reports (RFC 7489
// 7.2), one per policy published during the period, to the mailto:
// destinations of its rua; one outside the domain's organization only
// when it says it takes them (7.1), and one with a size limit only when
// the report fits.
func (r *reports) sendDMARCReport(ctx context.Context, rep tally.Report) error {
	from, err := r.sender(ctx)
	if err != nil {
		return err
	}
	aggs, err := dmarcreport.Build(r.org, from, rep)
	if err != nil {
		return err
	}
	var errs []error
	for i, agg := range aggs {
		id, unique := reportID(rep.Begin, from)
		agg.ReportID = id
		gz, err := agg.Gzip()
		if err != nil {
			return err
		}
		var dests []string
		limits := map[string]int64{}
		for _, d := range dmarcreport.Destinations(agg.RUA) {
			dests, limits[d.Address] = append(dests, d.Address), d.Limit
		}
		if len(dests) == 0 {
			continue
		}
		err = r.toEach("DMARC", rep, i, dests, func(dest string) error {
			_, domain, _ := strings.Cut(dest, "@")
			domain = strings.ToLower(domain)
			if mailauth.OrganizationalDomain(domain) != mailauth.OrganizationalDomain(rep.Domain) {
				ok, err := r.takesReports(ctx, rep.Domain, domain)
				if err != nil {
					return err
				}
				if !ok {
					r.log.Info("DMARC report not sent: the destination does not say it takes reports for the domain (RFC 7489 7.1)",
						"domain", rep.Domain, "to", dest, "record", dmarcreport.VerificationName(rep.Domain, domain))
					return nil
				}
			}
			msg := dmarcreport.Message(from, dest, r.hostname, agg, gz, unique, time.Now())
			if l := limits[dest]; l > 0 && int64(len(msg)) > l {
				r.log.Info("DMARC report not sent: larger than the destination's limit", "domain", rep.Domain, "to", dest, "size", len(msg), "limit", l)
				return nil
			}
			if err := r.backend.Inject(ctx, dest, msg, false); err != nil {
				return err
			}
			r.log.Info("DMARC aggregate report sent", "domain", rep.Domain, "to", dest, "report_id", id, "rows", len(rep.Rows))
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// takesReports asks whether destDomain takes policyDomain's reports: a
// "v=DMARC1" TXT record at policyDomain._report._dmarc.destDomain.
func (r *reports) takesReports(ctx context.Context, policyDomain, destDomain string) (bool, error) {
	txts, err := r.resolver.LookupTXT(ctx, dmarcreport.VerificationName(policyDomain, destDomain))
	switch {
	case errors.Is(err, dns.ErrNoDomain):
		return false, nil
	case err != nil:
		return false, err
	}
	return slices.ContainsFunc(txts, func(t string) bool { return strings.HasPrefix(strings.TrimSpace(t), "v=DMARC1") }), nil
}

// post sends a gzipped report to an https: destination (RFC 8460 5.4).
func (r *reports) post(ctx context.Context, url string, gz []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(gz))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/tlsrpt+gzip")
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the server answered %s", resp.Status)
	}
	return nil
}

// reportID makes a report's ID: the period, then random hex, at the
// sender's domain; unique is the letters and digits of it that file names
// may carry (RFC 8460 5.1, RFC 7489 7.2.1.1).
func reportID(begin time.Time, from string) (id, unique string) {
	b := make([]byte, 6)
	rand.Read(b)
	_, domain, _ := strings.Cut(from, "@")
	unique = begin.UTC().Format("20060102T150405Z") + hex.EncodeToString(b)
	return unique + "@" + domain, unique
}
