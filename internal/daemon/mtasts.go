package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"mailroom/internal/config"
	"mailroom/internal/mtasts"
	"mailroom/internal/records"
	"mailroom/internal/store"
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
	srv := &http.Server{
		Handler:           mtasts.Handler(func() mtasts.Ours { return policy }, local),
		TLSConfig:         tlsCfg.Clone(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       20 * time.Second,
		WriteTimeout:      20 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	var bound []net.Listener
	for _, a := range cfg.Listen.MTASTS {
		l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", a.String())
		if err != nil {
			for _, b := range bound {
				b.Close()
			}
			return nil, listenError("mta_sts", a.String(), err)
		}
		bound = append(bound, l)
	}
	for _, l := range bound {
		go srv.Serve(tls.NewListener(l, srv.TLSConfig))
		log.Info("listening", "service", "mta_sts", "addr", l.Addr().String())
	}
	return func(ctx context.Context) { srv.Shutdown(ctx) }, nil
}
