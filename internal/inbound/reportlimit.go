package inbound

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxReportDomains bounds the domains the report limiter remembers; beyond
// it the oldest half is forgotten (a flood of domains gets fresh, full
// buckets, each still bounded).
const maxReportDomains = 10000

// reportLimiter bounds the reports (bounces, delay warnings, success
// reports) sent to any one domain per hour, so that no sender, nor a
// compromised account, can aim a stream of them at a third party.
type reportLimiter struct {
	mu      sync.Mutex
	perHour int
	domains map[string]*domainBucket
}

type domainBucket struct {
	lim  *rate.Limiter
	used time.Time
}

// allow takes one report to domain, or says why not.
func (l *reportLimiter) allow(domain string, perHour int, now time.Time) error {
	if perHour <= 0 {
		return nil
	}
	domain = strings.ToLower(domain)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.domains == nil || l.perHour != perHour { // new limits: start afresh
		l.domains, l.perHour = map[string]*domainBucket{}, perHour
	}
	b := l.domains[domain]
	if b == nil {
		if len(l.domains) >= maxReportDomains {
			l.forgetOldest()
		}
		b = &domainBucket{lim: rate.NewLimiter(rate.Limit(float64(perHour)/3600), perHour)}
		l.domains[domain] = b
	}
	b.used = now
	if !b.lim.AllowN(now, 1) {
		return fmt.Errorf("more than %d reports an hour to %s (queue.max_reports_per_hour): not sent", perHour, domain)
	}
	return nil
}

// forgetOldest drops the half of the domains used longest ago; l.mu is held.
func (l *reportLimiter) forgetOldest() {
	var cut time.Time
	times := make([]time.Time, 0, len(l.domains))
	for _, b := range l.domains {
		times = append(times, b.used)
	}
	slices.SortFunc(times, time.Time.Compare)
	cut = times[len(times)/2]
	for d, b := range l.domains {
		if !b.used.After(cut) {
			delete(l.domains, d)
		}
	}
}
