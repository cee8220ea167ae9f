// Package web is the HTTP listener's handler ([listen] http): health and
// readiness for load balancers and orchestrators, and the Prometheus
// metrics. The API, webhooks and the dashboard mount here as they come
// (docs/design/0013-operating-over-http.md).
package web

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"mailroom/internal/metrics"
)

// Ready reports whether the server can do its work now: its store answers.
type Ready func(ctx context.Context) error

// Handler serves:
//
//	/healthz  200 while the process serves at all (liveness)
//	/readyz   200 when ready answers within two seconds, else 503 with the reason (readiness)
//	/metrics  the Prometheus registry (text exposition format)
//
// and what each of mounts registers (the API under /api/v1). /metrics
// answers clients in metricsFrom only (403 for others).
func Handler(ready Ready, metricsFrom []netip.Prefix, mounts ...func(*http.ServeMux)) http.Handler {
	mux := http.NewServeMux()
	for _, m := range mounts {
		m(mux)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("not ready: the store does not answer\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
	scrape := promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{MaxRequestsInFlight: 4, Timeout: 10 * time.Second})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || !slices.ContainsFunc(metricsFrom, func(p netip.Prefix) bool { return p.Contains(ap.Addr().Unmap()) }) {
			http.Error(w, "403 /metrics answers the networks in [http] metrics_from only", http.StatusForbidden)
			return
		}
		scrape.ServeHTTP(w, r)
	})
	return mux
}
