// Package metrics holds the server's Prometheus instruments in one
// registry, which the HTTP listener serves at /metrics; the packages that
// count take their instruments from here. Names follow Prometheus's
// conventions (mailroom_ prefix, _total for counters, base units).
package metrics

import (
	"context"
	"time"

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
	// result: delivered, deferred, failed.
	Deliveries = counter("mailroom_deliveries_total", "Delivery attempts to remote recipients, by result (delivered, deferred, failed).", "result")
	// Logins counts login attempts by protocol and result: ok, failed
	// (a wrong password or unknown account), limited (refused by the login
	// limits), error (the store could not answer).
	Logins = counter("mailroom_logins_total", "Login attempts by protocol and result (ok, failed, limited, error).", "protocol", "result")
)

func counter(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	Registry.MustRegister(c)
	return c
}

func init() {
	Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// QueueStats reads the outbound queue's counts at each scrape.
type QueueStats func(ctx context.Context) (map[string]int, error)

// WatchQueue makes each scrape report the queue's entries by state
// (mailroom_queue_entries), read by stats within two seconds.
func WatchQueue(stats QueueStats) {
	Registry.Unregister(queueCollector{}) // one at a time: the latest
	Registry.MustRegister(queueCollector{stats})
}

var queueDesc = prometheus.NewDesc("mailroom_queue_entries", "Outbound queue entries by state (pending, deferred, held, sending).", []string{"state"}, nil)

type queueCollector struct{ stats QueueStats }

func (q queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- queueDesc }

func (q queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := q.stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(queueDesc, err)
		return
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(n), state)
	}
}
