// Package metrics holds the server's Prometheus instruments in one
// registry, which the HTTP listener serves at /metrics; the packages that
// count take their instruments from here. Names follow Prometheus's
// conventions (mailroom_ prefix, _total for counters, base units).
package metrics

import (
	"context"
	"strings"
	"sync"
	"time"

	"mailroom/internal/store"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Registry is what /metrics serves: these instruments, the Go runtime's
// and the process's.
var Registry = prometheus.NewRegistry()

var (
	// MessagesAccepted counts messages acknowledged with 250, by
	// listener (smtp, submission, submissions).
	MessagesAccepted = counter("mailroom_messages_accepted_total", "Messages acknowledged (250 after their data), by listener.", "listener")
	// Deliveries counts delivery attempts to remote recipients by their
	// result (delivered, deferred, failed) and destination domain (see
	// Destination).
	Deliveries = counter("mailroom_deliveries_total", "Delivery attempts to remote recipients, by result (delivered, deferred, failed) and destination domain (the first 100 seen; the rest as \"other\").", "result", "destination")
	// Logins counts login attempts by protocol and result: ok, failed
	// (a wrong password or unknown account), limited (refused by the login
	// limits), error (the store could not answer).
	Logins = counter("mailroom_logins_total", "Login attempts by protocol and result (ok, failed, limited, error).", "protocol", "result")
	// Connections counts connections by service (smtp, submission,
	// imaps, http...) and result: admitted, or refused by the limits
	// (too_many, too_many_from_client).
	Connections = counter("mailroom_connections_total", "Connections by service and result (admitted, too_many, too_many_from_client).", "service", "result")
	// OpenConnections is the connections being served, by service.
	OpenConnections = gauge("mailroom_connections_open", "Connections being served now, by service.", "service")
	// Refusals counts the SMTP replies that refused a sender, a recipient
	// or a message (4xx and 5xx), by listener and enhanced status code
	// (RFC 3463: 5.1.1 no such user, 5.7.1 refused by policy, 4.7.0
	// limits...): why mail was not taken.
	Refusals = counter("mailroom_smtp_refusals_total", "SMTP replies of 4xx or 5xx, by listener and enhanced status code (the reason).", "listener", "status")
	// AuthResults counts the results of the checks of mail from outside,
	// by method (spf, dkim, dmarc, arc) and result (pass, fail, none...).
	AuthResults = counter("mailroom_auth_results_total", "Results of the checks of mail from outside, by method (spf, dkim, dmarc, arc) and result.", "method", "result")
	// AcceptSeconds is the time from the end of a message's data to its
	// acknowledgement: the checks and the store's durable write.
	AcceptSeconds = histogram("mailroom_message_accept_seconds", "Time from the end of a message's data to its acknowledgement (checks and durable storage), by listener.",
		[]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}, "listener")
	// AttemptSeconds is the time of one delivery attempt to a next hop
	// (DNS, connection, TLS and the transaction), by result.
	AttemptSeconds = histogram("mailroom_delivery_attempt_seconds", "Time of one delivery attempt to a next hop, by result (delivered, deferred, failed).",
		[]float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}, "result")
	// DeliveryDelaySeconds is the time from a message's acceptance to its
	// delivery to a remote recipient.
	DeliveryDelaySeconds = histogram("mailroom_delivery_delay_seconds", "Time from a message's acceptance to its final outcome for a remote recipient, by result (delivered, failed).",
		[]float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600}, "result")
)

// Label returns v when it is a short word of letters, digits, dots,
// dashes and underscores, else "other": values read from outside (a
// result word, a status code) never grow a metric without bound.
func Label(v string) string {
	if v == "" || len(v) > 32 {
		return "other"
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return "other"
		}
	}
	return v
}

// maxDestinations bounds the destination domains that get a label of
// their own: the first seen since the start (the large mailbox providers
// come early on any server that sends), the rest counted as "other".
const maxDestinations = 100

var destinations = struct {
	sync.Mutex
	seen map[string]bool
}{seen: map[string]bool{}}

// Destination returns the label of a destination domain: the domain, lower
// case, while fewer than maxDestinations have been seen, else "other".
func Destination(domain string) string {
	domain = strings.ToLower(domain)
	if Label(domain) != domain {
		return "other"
	}
	destinations.Lock()
	defer destinations.Unlock()
	if !destinations.seen[domain] {
		if len(destinations.seen) >= maxDestinations {
			return "other"
		}
		destinations.seen[domain] = true
	}
	return domain
}

func gauge(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	Registry.MustRegister(g)
	return g
}

func histogram(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	Registry.MustRegister(h)
	return h
}

func counter(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	Registry.MustRegister(c)
	return c
}

func init() {
	Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// Store is what the metrics read of the store at each scrape.
type Store interface {
	QueueStats(ctx context.Context) (store.QueueStats, error)
	Usage(ctx context.Context) (store.Usage, error)
}

// WatchStore makes each scrape report the queue's entries by state and
// the age of its oldest waiting entry, read within two seconds, and the
// store's size, read at most once a minute (the embedded store sizes the
// files of large bodies one by one).
func WatchStore(st Store) {
	Registry.Unregister(&storeCollector{}) // one at a time: the latest
	Registry.MustRegister(&storeCollector{st: st})
}

var (
	queueDesc  = prometheus.NewDesc("mailroom_queue_entries", "Outbound queue entries by state (pending, deferred, held, sending).", []string{"state"}, nil)
	oldestDesc = prometheus.NewDesc("mailroom_queue_oldest_seconds", "Age of the oldest queue entry still to be delivered (pending or deferred); 0 when there is none.", nil, nil)
	usersDesc  = prometheus.NewDesc("mailroom_store_users", "Users in the store.", nil, nil)
	mboxDesc   = prometheus.NewDesc("mailroom_store_mailbox_bytes", "Size of the messages in users' mailboxes, as their quotas count it.", nil, nil)
	dbDesc     = prometheus.NewDesc("mailroom_store_bytes", "Space the store takes: the embedded store's files, or the PostgreSQL database's size.", nil, nil)
)

type storeCollector struct {
	st Store

	mu    sync.Mutex
	usage store.Usage
	read  time.Time // when usage was read
	err   error
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{queueDesc, oldestDesc, usersDesc, mboxDesc, dbDesc} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	q, err := c.st.QueueStats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(queueDesc, err)
	} else {
		for state, n := range map[string]int{"pending": q.Pending, "deferred": q.Deferred, "held": q.Held, "sending": q.Sending} {
			ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(n), state)
		}
		age := 0.0
		if !q.Oldest.IsZero() {
			age = max(0, time.Since(q.Oldest).Seconds())
		}
		ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.read) >= time.Minute {
		c.usage, c.err = c.st.Usage(ctx)
		c.read = time.Now()
	}
	if c.err != nil {
		ch <- prometheus.NewInvalidMetric(dbDesc, c.err)
		return
	}
	ch <- prometheus.MustNewConstMetric(usersDesc, prometheus.GaugeValue, float64(c.usage.Users))
	ch <- prometheus.MustNewConstMetric(mboxDesc, prometheus.GaugeValue, float64(c.usage.MailboxBytes))
	ch <- prometheus.MustNewConstMetric(dbDesc, prometheus.GaugeValue, float64(c.usage.DatabaseBytes))
}
