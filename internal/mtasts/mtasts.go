// Package mtasts is SMTP MTA Strict Transport Security (RFC 8461) on the
// sending side: a receiving domain that publishes a policy ("_mta-sts" TXT
// record, the policy over HTTPS at mta-sts.DOMAIN) says which of its MX
// hosts are genuine and that they must be reached over TLS with a valid
// certificate. Policies are fetched through Mailroom's resolver, bounded in
// size and time, and kept until they expire, so that a DNS or HTTPS
// attacker cannot switch protection off once it was seen.
package mtasts

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailroom/internal/dns"
	"mailroom/internal/store"
)

// Modes of a policy (RFC 8461 5).
const (
	Enforce = "enforce"
	Testing = "testing"
	None    = "none"
)

// MaxPolicySize bounds a policy document; MaxAge bounds how long one is
// kept (RFC 8461 3.2: up to a year).
const (
	MaxPolicySize = 64 << 10
	MaxAge        = 31557600 * time.Second
)

// ErrInvalid is a policy that was fetched but is not one (not text/plain,
// too large, or not parsing), matched with errors.Is; other fetch errors
// are failures to retrieve it (RFC 8460 4.3 tells them apart).
var ErrInvalid = errors.New("invalid MTA-STS policy")

// invalid marks err as ErrInvalid, keeping its words.
type invalid struct{ err error }

func (e invalid) Error() string        { return e.err.Error() }
func (e invalid) Unwrap() error        { return e.err }
func (e invalid) Is(target error) bool { return target == ErrInvalid }

// Policy is a domain's policy.
type Policy struct {
	Domain  string
	ID      string // of the TXT record it was fetched for
	Mode    string
	MX      []string // host names, or "*.example.net" for any one label under it
	MaxAge  time.Duration
	Fetched time.Time
}

// Expired reports whether the policy is past its max_age at now.
func (p *Policy) Expired(now time.Time) bool { return now.After(p.Fetched.Add(p.MaxAge)) }

// Lines returns the policy as the lines of its document (TLS-RPT's
// policy-string, RFC 8460 4.3).
func (p *Policy) Lines() []string {
	out := []string{"version: STSv1", "mode: " + p.Mode}
	for _, mx := range p.MX {
		out = append(out, "mx: "+mx)
	}
	return append(out, "max_age: "+strconv.Itoa(int(p.MaxAge/time.Second)))
}

// Matches reports whether an MX host is one the policy names (RFC 8461
// 4.1): exactly, or as the one label a "*." pattern stands for.
func (p *Policy) Matches(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, m := range p.MX {
		if rest, ok := strings.CutPrefix(m, "*."); ok {
			label, parent, found := strings.Cut(host, ".")
			if found && label != "" && parent == rest {
				return true
			}
			continue
		}
		if host == m {
			return true
		}
	}
	return false
}

// Parse reads a policy document (RFC 8461 3.2): "key: value" lines, with
// version STSv1, a mode, at least one mx for enforce and testing, and
// max_age.
func Parse(domain, text string) (*Policy, error) {
	p := &Policy{Domain: domain}
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 4096), MaxPolicySize)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("mta-sts: policy of %s: a line without a key: %q", domain, clip(line))
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "version":
			if v != "STSv1" {
				return nil, fmt.Errorf("mta-sts: policy of %s: version %q, not STSv1", domain, clip(v))
			}
		case "mode":
			if v != Enforce && v != Testing && v != None {
				return nil, fmt.Errorf("mta-sts: policy of %s: mode %q (enforce, testing or none)", domain, clip(v))
			}
			p.Mode = v
		case "mx":
			p.MX = append(p.MX, strings.ToLower(strings.TrimSuffix(v, ".")))
		case "max_age":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || len(v) > 10 {
				return nil, fmt.Errorf("mta-sts: policy of %s: max_age %q is not a number of seconds", domain, clip(v))
			}
			p.MaxAge = time.Duration(min(n, uint64(MaxAge/time.Second))) * time.Second
		default:
			continue // extensions are ignored (3.2)
		}
		if seen[k] && k != "mx" {
			return nil, fmt.Errorf("mta-sts: policy of %s: %s given twice", domain, k)
		}
		seen[k] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mta-sts: policy of %s: %w", domain, err)
	}
	switch {
	case !seen["version"] || !seen["mode"] || !seen["max_age"]:
		return nil, fmt.Errorf("mta-sts: policy of %s lacks version, mode or max_age", domain)
	case p.Mode != None && len(p.MX) == 0:
		return nil, fmt.Errorf("mta-sts: policy of %s in mode %s names no mx", domain, p.Mode)
	}
	return p, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// Resolver is what the fetcher asks DNS (dns.Resolver).
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupIP(ctx context.Context, host string) ([]netip.Addr, error)
}

// Keeper keeps policies across restarts (store.MTASTSPolicies).
type Keeper interface {
	SaveMTASTSPolicy(ctx context.Context, p store.MTASTSPolicy) error
	MTASTSPolicy(ctx context.Context, domain string) (store.MTASTSPolicy, error)
}

// Fetcher finds and keeps the policies of receiving domains.
type Fetcher struct {
	dns    Resolver
	client *http.Client
	now    func() time.Time
	keeper Keeper // nil: policies are kept in memory only

	mu    sync.Mutex
	cache map[string]*Policy
	tried map[string]time.Time // when a fetch last failed, to not retry at once
	ids   map[string]seenID    // the TXT record's id, asked at most every recheck
	asked map[string]bool      // the keeper was asked: it is not asked again per delivery
}

// seenID is what a domain's TXT record said, and when.
type seenID struct {
	id string
	at time.Time
}

// recheck is how long the id of a domain's TXT record is trusted before
// DNS is asked again: deliveries to a domain do not each cost a query.
const recheck = time.Minute

// NewFetcher returns a fetcher asking r, trusting roots (nil: the
// system's) for the policy hosts' certificates, on port (443 but in tests).
func NewFetcher(r Resolver, roots *x509.CertPool, port int) *Fetcher {
	if port == 0 {
		port = 443
	}
	f := &Fetcher{dns: r, now: time.Now, cache: map[string]*Policy{}, tried: map[string]time.Time{}, ids: map[string]seenID{}, asked: map[string]bool{}}
	f.client = &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           dns.DialVia(r, port),
			TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 20 * time.Second,
			MaxIdleConns:          1,
			IdleConnTimeout:       time.Second,
		},
		// RFC 8461 3.3: "HTTP 3xx redirects MUST NOT be followed".
		CheckRedirect: func(*http.Request, []*http.Request) error { return errors.New("redirected") },
	}
	return f
}

// KeepIn makes the fetcher save the policies it fetches in k, and read
// them from it when it has none in memory (after a restart).
func (f *Fetcher) KeepIn(k Keeper) { f.keeper = k }

// kept returns the policy kept of a domain: in memory, or else in the
// keeper; nil when none.
func (f *Fetcher) kept(ctx context.Context, domain string) *Policy {
	f.mu.Lock()
	p, asked := f.cache[domain], f.asked[domain]
	if !asked {
		if len(f.asked) > 100_000 {
			clear(f.asked)
		}
		f.asked[domain] = true
	}
	f.mu.Unlock()
	if p != nil || f.keeper == nil || asked {
		return p // what the keeper holds was taken once; fetches since are in memory
	}
	saved, err := f.keeper.MTASTSPolicy(ctx, domain)
	if err != nil {
		return nil
	}
	if p, err = Parse(domain, saved.Text); err != nil {
		return nil
	}
	p.ID, p.Fetched = saved.ID, saved.Fetched
	f.mu.Lock()
	f.cache[domain] = p
	f.mu.Unlock()
	return p
}

// retryAfterFailure is how long after a failed fetch a domain's policy is
// not asked again (its cached policy, if any, stands meanwhile).
const retryAfterFailure = 5 * time.Minute

// Policy returns the policy in force for a domain: nil when it has none
// (or its mode is none). A policy is fetched when the TXT record's id
// differs from the one kept, or the kept one expired; when that fails, the
// kept one stands until it expires (RFC 8461 5.1).
func (f *Fetcher) Policy(ctx context.Context, domain string) (*Policy, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	now := f.now()
	kept := f.kept(ctx, domain)
	f.mu.Lock()
	lastFail := f.tried[domain]
	f.mu.Unlock()
	if kept != nil && kept.Expired(now) {
		kept = nil
	}
	f.mu.Lock()
	seen, ok := f.ids[domain]
	f.mu.Unlock()
	id, err := seen.id, error(nil)
	if !ok || now.Sub(seen.at) >= recheck || now.Before(seen.at) {
		if id, err = f.recordID(ctx, domain); err == nil {
			f.mu.Lock()
			if len(f.ids) > 100_000 {
				clear(f.ids)
			}
			f.ids[domain] = seenID{id, now}
			f.mu.Unlock()
		}
	}
	switch {
	case err != nil || id == "":
		return active(kept), err
	case kept != nil && kept.ID == id:
		return active(kept), nil
	case now.Sub(lastFail) < retryAfterFailure:
		return active(kept), nil
	}
	p, text, err := f.fetch(ctx, domain)
	f.mu.Lock()
	if err != nil {
		f.tried[domain] = now
		f.mu.Unlock()
		return active(kept), err
	}
	p.ID, p.Fetched = id, now
	if len(f.cache) > 100_000 {
		clear(f.cache) // a bound; they are fetched again, or read back from the keeper
		clear(f.asked)
	}
	f.cache[domain] = p
	delete(f.tried, domain)
	f.mu.Unlock()
	if f.keeper != nil {
		// Losing it costs one fetch after a restart: an error is not the delivery's.
		_ = f.keeper.SaveMTASTSPolicy(ctx, store.MTASTSPolicy{Domain: domain, ID: id, Text: text, Fetched: now, Expires: now.Add(p.MaxAge)})
	}
	return active(p), nil
}

func active(p *Policy) *Policy {
	if p == nil || p.Mode == None {
		return nil
	}
	return p
}

// recordID returns the id of the domain's one "v=STSv1" TXT record at
// _mta-sts, or "" when there is none (or several).
func (f *Fetcher) recordID(ctx context.Context, domain string) (string, error) {
	txts, err := f.dns.LookupTXT(ctx, "_mta-sts."+domain)
	if err != nil {
		if errors.Is(err, dns.ErrNoDomain) {
			return "", nil
		}
		return "", fmt.Errorf("mta-sts: the TXT record of %s: %w", domain, err)
	}
	id, n := "", 0
	for _, t := range txts {
		if !strings.HasPrefix(t, "v=STSv1") {
			continue
		}
		n++
		for _, field := range strings.Split(t, ";") {
			if k, v, ok := strings.Cut(strings.TrimSpace(field), "="); ok && k == "id" {
				id = strings.TrimSpace(v)
			}
		}
	}
	if n != 1 {
		return "", nil
	}
	return id, nil
}

// Fetch reads a domain's policy afresh, nothing kept: for diagnosis.
func (f *Fetcher) Fetch(ctx context.Context, domain string) (*Policy, error) {
	p, _, err := f.fetch(ctx, domain)
	return p, err
}

// fetch reads https://mta-sts.DOMAIN/.well-known/mta-sts.txt: the policy
// and its text.
func (f *Fetcher) fetch(ctx context.Context, domain string) (*Policy, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://mta-sts."+domain+"/.well-known/mta-sts.txt", nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("mta-sts: fetch the policy of %s: %w", domain, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("mta-sts: fetch the policy of %s: HTTP %d", domain, resp.StatusCode)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return nil, "", invalid{fmt.Errorf("mta-sts: the policy of %s is not text/plain", domain)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicySize+1))
	if err != nil {
		return nil, "", fmt.Errorf("mta-sts: fetch the policy of %s: %w", domain, err)
	}
	if len(body) > MaxPolicySize {
		return nil, "", invalid{fmt.Errorf("mta-sts: the policy of %s is larger than %d octets", domain, MaxPolicySize)}
	}
	p, err := Parse(domain, string(body))
	if err != nil {
		return nil, "", invalid{err}
	}
	return p, string(body), nil
}
