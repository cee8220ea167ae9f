package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"mailroom/internal/auth"
	"mailroom/internal/config"
	"mailroom/internal/dashboard"
	"mailroom/internal/httpapi"
	"mailroom/internal/listener"
	"mailroom/internal/metrics"
	"mailroom/internal/mtasts"
	"mailroom/internal/records"
	"mailroom/internal/smtpserver"
	"mailroom/internal/store"
	"mailroom/internal/tracking"
	"mailroom/internal/web"
)

// startMTASTS serves our domains' MTA-STS policy over HTTPS on the [listen]
// mta_sts addresses, with the server's certificates (by name: mta-sts.DOMAIN
// must be among them). The returned function stops it.
func startMTASTS(cfg *config.Config, st store.Store, tlsCfg *tls.Config, log *slog.Logger) (func(context.Context), error) {
	if len(cfg.Listen.MTASTS) == 0 {
		return func(context.Context) {}, nil
	}
	if tlsCfg == nil {
		return nil, errors.New("[listen] mta_sts needs a certificate for mta-sts.DOMAIN: set [tls] or [tls.acme] names")
	}
	policy := records.PolicyOf(cfg)
	local := func(ctx context.Context, domain string) (bool, error) {
		_, err := st.Domain(ctx, domain)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	return serveHTTP("mta_sts", cfg.Listen.MTASTS, httpLimits(cfg), mtasts.Handler(func() mtasts.Ours { return policy }, local), tlsCfg, log)
}

// startHTTP serves the HTTP listener ([listen] http: health, readiness,
// metrics) over TLS with the server's certificates, as every listener.
// httpParts are what the HTTP listener's API and dashboard work with
// beside the store.
type httpParts struct {
	backend     smtpserver.Backend
	logins      *auth.Service
	spoolDir    string
	checkDomain dashboard.DomainChecker
}

func startHTTP(cfg *config.Config, st store.Store, p httpParts, tlsCfg *tls.Config, log *slog.Logger) (func(context.Context), error) {
	if len(cfg.Listen.HTTP) == 0 {
		return func(context.Context) {}, nil
	}
	if tlsCfg == nil {
		return nil, errors.New("[listen] http needs a certificate: set [tls] or [tls.acme], or tls.self_signed = true")
	}
	metrics.WatchStore(st)
	ready := func(ctx context.Context) error {
		_, err := st.Domains(ctx)
		return err
	}
	apiCfg := httpapi.Config{Hostname: cfg.Hostname, MaxMessageSize: int64(cfg.SMTP.MaxMessageSize), MaxRecipients: cfg.SMTP.MaxRecipients,
		RatePerMinute: cfg.HTTP.APIRatePerMinute, SpoolDir: p.spoolDir, HideClientIP: cfg.Submission.HideClientIP}
	apiCfg.TrackingBase, apiCfg.TrackOpens, apiCfg.TrackClicks = cfg.Tracking.BaseURL, cfg.Tracking.Opens, cfg.Tracking.Clicks
	apiCfg.TrackDomains, apiCfg.TrackStreams = lowered(cfg.Tracking.Domains), cfg.Tracking.Streams
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	key, err := st.Secret(ctx, "tracking", 32)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("the tracking links' key: %w", err)
	}
	signer := tracking.NewSigner(key)
	api := func(mux *http.ServeMux) {
		httpapi.Register(mux, httpapi.Deps{Store: st, Backend: p.backend, Config: func() httpapi.Config { return apiCfg }, Log: log, Tracking: signer})
		tracking.NewHandler(signer, st, log).Register(mux)
		dashboard.Register(mux, dashboard.Deps{Store: st, Logins: p.logins, Log: log, CheckDomain: p.checkDomain,
			Prefixes: listener.Prefixes{IPv4: cfg.Clients.IPv4Prefix, IPv6: cfg.Clients.IPv6Prefix}})
	}
	var metricsFrom []netip.Prefix
	for _, p := range cfg.HTTP.MetricsFrom {
		metricsFrom = append(metricsFrom, netip.Prefix(p))
	}
	return serveHTTP("http", cfg.Listen.HTTP, httpLimits(cfg), web.Handler(ready, metricsFrom, api), tlsCfg, log)
}

// httpLimits bounds the connections of each HTTPS service, in a pool of its
// own.
func httpLimits(cfg *config.Config) listener.Limits {
	return listener.Limits{
		MaxConns:     cfg.HTTP.MaxConnections,
		MaxPerClient: cfg.HTTP.MaxConnectionsPerClient,
		Prefixes:     listener.Prefixes{IPv4: cfg.Clients.IPv4Prefix, IPv6: cfg.Clients.IPv6Prefix},
	}
}

// serveHTTP serves handler on addrs over TLS, with bounds on every
// request and on the connections (limits); the returned function stops it.
func serveHTTP(service string, addrs []config.HostPort, limits listener.Limits, handler http.Handler, tlsCfg *tls.Config, log *slog.Logger) (func(context.Context), error) {
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       20 * time.Second,
		WriteTimeout:      20 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		TLSConfig:         tlsCfg.Clone(),
	}
	var bound []net.Listener
	for _, a := range addrs {
		l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", a.String())
		if err != nil {
			for _, b := range bound {
				b.Close()
			}
			return nil, listenError(service, a.String(), err)
		}
		bound = append(bound, l)
	}
	svc := listener.NewService(service, limits, log)
	for _, l := range bound {
		go srv.Serve(tls.NewListener(svc.Gated(l), srv.TLSConfig))
		log.Info("listening", "service", service, "addr", l.Addr().String())
	}
	return func(ctx context.Context) { srv.Shutdown(ctx) }, nil
}
