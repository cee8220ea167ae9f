// Package daemon runs the Mailroom server: it turns the configuration into
// listeners, wires the SMTP sessions to the store, prepares development
// defaults, and handles SIGTERM (graceful stop) and SIGHUP (reload).
package daemon

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"mailroom/internal/acme"
	"mailroom/internal/auth"
	"mailroom/internal/authlimit"
	"mailroom/internal/certs"
	"mailroom/internal/config"
	"mailroom/internal/dns"
	"mailroom/internal/dnscheck"
	"mailroom/internal/events"
	"mailroom/internal/inbound"
	"mailroom/internal/listener"
	"mailroom/internal/mtasts"
	"mailroom/internal/records"
	"mailroom/internal/sendlimit"
	"mailroom/internal/smtp"
	"mailroom/internal/smtpserver"
	"mailroom/internal/store"
	"mailroom/internal/store/storeopen"
	"mailroom/internal/textindex"
	"mailroom/internal/webhook"
)

// Options say how to run.
type Options struct {
	// ConfigFile is the TOML file, or "" for development defaults.
	ConfigFile string
	// Override adjusts the configuration after loading (command-line flags).
	Override func(*config.Config)
	Log      *slog.Logger
	// Level is Log's level, changed when log.level is reloaded; may be nil.
	Level  *slog.LevelVar
	Stdout io.Writer // the start-up banner
}

// Run serves until ctx ends or SIGTERM/SIGINT arrives.
func Run(ctx context.Context, opts Options) error {
	cfg, err := loadConfig(opts)
	if err != nil {
		return err
	}
	log := opts.Log
	if err := startProfiling(log); err != nil {
		return err
	}
	st, err := storeopen.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	warnOpenModes(cfg.DataDir, log)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // runs before st.Close: stops the background sweeps first
	var dev *devSetup
	if opts.ConfigFile == "" {
		if dev, err = prepareDev(ctx, st, cfg.DataDir); err != nil {
			return err
		}
	}
	warnUnsigned(ctx, st, log)
	spoolDir := filepath.Join(cfg.DataDir, "tmp")
	if err := os.MkdirAll(spoolDir, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", spoolDir, err)
	}
	if sw, ok := st.(storeopen.OrphanSweeper); ok {
		go sweepOrphanBlobs(ctx, sw, log)
	}
	var cs certs.Store
	smtpCfg, err := smtpConfig(cfg, &cs, spoolDir)
	if err != nil {
		return err
	}
	for _, w := range CertificateWarnings(cfg) {
		log.Warn(w)
	}
	if a := cfg.TLS.ACME; len(a.Names) > 0 {
		m, err := acme.Start(ctx, acme.Config{Directory: a.Directory, Email: a.Email, Names: a.Names, CAFile: a.CAFile,
			HTTPPort: a.HTTPPort, ALPNPort: a.TLSALPNPort, ListenHost: a.ListenHost, StorageDir: filepath.Join(cfg.DataDir, "acme")}, log)
		if err != nil {
			return err
		}
		defer m.Stop()
		cs.SetDynamic(m.GetCertificate)
	}
	stopWatch := make(chan struct{})
	defer close(stopWatch)
	go cs.Watch(cfg.TLS.ReloadInterval.D(), stopWatch, log)
	secret, err := serverSecret(cfg.DataDir)
	if err != nil {
		return err
	}
	resolver, err := dns.New(cfg.DNS.Resolver.String(), cfg.DNS.DNSSEC)
	if err != nil {
		return err
	}
	backend := inbound.New(st, inboundConfig(cfg), log)
	backend.SetResolver(resolver)
	// Forwarding's SRS key is the store's, shared by every node: a bounce
	// to a forwarding address may come to any of them.
	srsKey, err := st.Secret(ctx, "srs", 32)
	if err != nil {
		return err
	}
	backend.SetSRSSecret(srsKey)
	logins := auth.New(st, authPolicy(cfg), secret, log)
	logins.SetCacheTime(cfg.Auth.LoginCacheTime.D())
	if sh, ok := st.(store.LoginFailures); ok {
		logins.SetShared(sh) // several nodes: the login limits hold across them
	}
	out, err := startRelay(cfg, st, backend, resolver, log)
	if err != nil {
		return err
	}
	rep := newReports(cfg, st, backend, resolver, out.roots, log)
	out.deliverer.SetTLSReports(rep.tls)
	backend.SetDMARCReports(rep.dmarc)
	reportsDone := make(chan struct{})
	go func() { rep.run(ctx); close(reportsDone) }()
	defer func() { cancel(); <-reportsDone }() // before the store closes
	relayDone := make(chan struct{})
	go func() { out.run(ctx); close(relayDone) }()
	defer func() { cancel(); <-relayDone }() // before the store closes
	indexDone := make(chan struct{})
	go func() {
		textindex.New(st, int64(cfg.SMTP.MaxMessageSize), log).Run(ctx)
		close(indexDone)
	}()
	defer func() { cancel(); <-indexDone }()
	eventsKeep := new(atomic.Int64)
	eventsKeep.Store(int64(cfg.Events.Keep.D()))
	hooks := webhook.New(st, webhookConfig(cfg), log)
	keeper := events.New(st, func() time.Duration { return time.Duration(eventsKeep.Load()) }, log)
	keeper.Counted = hooks.Wake
	eventsDone := make(chan struct{}, 2)
	go func() { keeper.Run(ctx); eventsDone <- struct{}{} }()
	go func() { hooks.Run(ctx); eventsDone <- struct{}{} }()
	defer func() { cancel(); <-eventsDone; <-eventsDone }()
	srv := smtpserver.New(smtpCfg, backend, logins, log)

	listeners, err := listen(cfg)
	if err != nil {
		return err
	}
	services := newServices(cfg, srv, log)
	var wg sync.WaitGroup
	for _, l := range listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(services[l.mode], l.Listener, l.mode); err != nil && !errors.Is(err, smtpserver.ErrServerClosed) {
				log.Error("listener stopped", "service", l.mode.String(), "addr", l.Addr().String(), "err", err)
			}
		}()
		log.Info("listening", "service", l.mode.String(), "addr", l.Addr().String())
	}
	access, err := startAccess(cfg, st, logins, smtpCfg.TLS, spoolDir, log)
	if err != nil {
		srv.Shutdown(context.Background())
		wg.Wait()
		return err
	}
	// The HTTPS listeners: MTA-STS policies, and health and metrics.
	startAPI := func(cfg *config.Config, st store.Store, tlsCfg *tls.Config, log *slog.Logger) (func(context.Context), error) {
		check := func(ctx context.Context, d string) ([]dnscheck.Finding, error) {
			keys, err := st.DKIMKeysOf(ctx, d)
			if err != nil {
				return nil, err
			}
			in := records.FromConfig(cfg, d, keys, time.Now())
			return dnscheck.Domain(ctx, resolver, in, mtasts.NewFetcher(resolver, out.roots, cfg.Outbound.MTASTSPort)), nil
		}
		return startHTTP(cfg, st, httpParts{backend: backend, logins: logins, spoolDir: spoolDir, checkDomain: check}, tlsCfg, log)
	}
	for _, start := range []func(*config.Config, store.Store, *tls.Config, *slog.Logger) (func(context.Context), error){startMTASTS, startAPI} {
		stop, err := start(cfg, st, smtpCfg.TLS, log)
		if err != nil {
			srv.Shutdown(context.Background())
			wg.Wait()
			return err
		}
		defer func() {
			c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			stop(c)
		}()
	}
	printBanner(opts.Stdout, cfg, listeners, access.bound, &cs, dev)

	rt := &running{srv: srv, services: services, access: access, store: st, backend: backend, logins: logins, relay: out, certs: &cs, spoolDir: spoolDir, level: opts.Level, log: log, eventsKeep: eventsKeep, hooks: hooks}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	for {
		select {
		case <-ctx.Done():
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				cfg = rt.reload(opts, cfg)
				continue
			}
			log.Info("shutting down", "signal", sig.String(), "deadline", cfg.ShutdownTimeout.D().String())
		}
		break
	}
	sctx, cancelShutdown := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.D())
	defer cancelShutdown()
	var imapDone sync.WaitGroup
	imapDone.Go(func() { access.shutdown(sctx, log) })
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("sessions still open at the shutdown deadline were closed", "err", err)
	}
	wg.Wait()
	imapDone.Wait()
	log.Info("stopped")
	return nil
}

// warnOpenModes warns when the data directory, or a file in it made by an
// earlier version, can be read by other users of the machine: the store
// holds password hashes and everyone's mail.
func warnOpenModes(dir string, log *slog.Logger) {
	for _, p := range []string{dir, filepath.Join(dir, "mailroom.db"), filepath.Join(dir, "mailroom.db-wal"), filepath.Join(dir, "secret")} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o007 != 0 {
			log.Warn("other users of this machine can read the store: take their access away", "path", p, "mode", fi.Mode().Perm().String(), "fix", "chmod -R o-rwx "+dir)
		}
	}
}

// sweepOrphanBlobs removes, at start and then hourly, large-body files that
// a crash left without their index row. Files younger than an hour may
// belong to a commit in flight and are left alone.
func sweepOrphanBlobs(ctx context.Context, st storeopen.OrphanSweeper, log *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := st.RemoveOrphanBlobs(ctx, time.Hour); err != nil {
			log.Warn("sweeping orphan message files", "err", err)
		} else if n > 0 {
			log.Info("removed message files left by a crash", "files", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// newServices makes one connection gate for each SMTP service, so that a
// flood on one port never takes the connections of another.
func newServices(cfg *config.Config, srv *smtpserver.Server, log *slog.Logger) map[smtpserver.Mode]*listener.Service {
	out := map[smtpserver.Mode]*listener.Service{}
	for _, mode := range []smtpserver.Mode{smtpserver.ModeMX, smtpserver.ModeSubmission, smtpserver.ModeSubmissions} {
		svc := &listener.Service{Name: mode.String(), Gate: listener.NewGate(connLimits(cfg, mode)), Log: log}
		if mode == smtpserver.ModeSubmissions {
			svc.TLS = srv.TLSConfig
		}
		out[mode] = svc
	}
	return out
}

// connLimits are a service's connection limits.
func connLimits(cfg *config.Config, mode smtpserver.Mode) listener.Limits {
	l := listener.Limits{
		MaxConns:         cfg.SMTP.MaxConnections,
		MaxPerClient:     cfg.SMTP.MaxConnectionsPerClient,
		Prefixes:         listener.Prefixes{IPv4: cfg.Clients.IPv4Prefix, IPv6: cfg.Clients.IPv6Prefix},
		HandshakeTimeout: cfg.TLS.HandshakeTimeout.D(),
	}
	if mode != smtpserver.ModeMX {
		l.MaxConns, l.MaxPerClient = cfg.Submission.MaxConnections, cfg.Submission.MaxConnectionsPerClient
	}
	return l
}

// boundSocket is a bound socket and what it is for.
type boundSocket struct {
	net.Listener
	mode smtpserver.Mode
}

// listen binds every configured address, or none.
func listen(cfg *config.Config) ([]boundSocket, error) {
	var out []boundSocket
	for _, svc := range []struct {
		mode  smtpserver.Mode
		addrs []config.HostPort
	}{
		{smtpserver.ModeMX, cfg.Listen.SMTP},
		{smtpserver.ModeSubmission, cfg.Listen.Submission},
		{smtpserver.ModeSubmissions, cfg.Listen.Submissions},
	} {
		for _, a := range svc.addrs {
			// No TCP keep-alive: every SMTP session ends by its own
			// timeouts, and the probes' socket options cost four system
			// calls per accepted connection.
			l, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", a.String())
			if err != nil {
				for _, l := range out {
					l.Close()
				}
				return nil, listenError(svc.mode.String(), a.String(), err)
			}
			out = append(out, boundSocket{l, svc.mode})
		}
	}
	return out, nil
}

// listenError says what to do about a port that could not be bound.
func listenError(service, addr string, err error) error {
	switch {
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("listen for %s on %s: %w: ports below 1024 need privileges: run mailroom as root, or give the binary the capability (sudo setcap cap_net_bind_service=+ep %s), or use a port above 1023 in [listen] %s", service, addr, err, executable(), service)
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("listen for %s on %s: %w: another server is using the port (ss -ltnp shows which); stop it, or change [listen] %s", service, addr, err, service)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("listen for %s on %s: %w: this machine has no such address; change [listen] %s", service, addr, err, service)
	}
	return fmt.Errorf("listen for %s on %s: %w (change [listen] %s)", service, addr, err, service)
}

func executable() string {
	if p, err := os.Executable(); err == nil {
		return p
	}
	return "mailroom"
}

func loadConfig(opts Options) (*config.Config, error) {
	cfg := config.Dev()
	if opts.ConfigFile != "" {
		var err error
		if cfg, err = config.Load(opts.ConfigFile); err != nil {
			return nil, err
		}
	}
	if opts.Override != nil {
		opts.Override(cfg)
	}
	return cfg, nil
}

func smtpConfig(cfg *config.Config, cs *certs.Store, spoolDir string) (*smtpserver.Config, error) {
	c := &smtpserver.Config{
		Hostname:       cfg.Hostname,
		MaxMessageSize: int64(cfg.SMTP.MaxMessageSize),
		MaxRecipients:  cfg.SMTP.MaxRecipients,
		MaxLineLength:  cfg.SMTP.MaxLineLength,
		MaxErrors:      cfg.SMTP.MaxErrors,
		CommandTimeout: cfg.SMTP.CommandTimeout.D(),
		DataTimeout:    cfg.SMTP.DataTimeout.D(),
		MinDataRate:    int64(cfg.SMTP.MinDataRate),
		MaxSessionTime: cfg.SMTP.MaxSessionTime.D(),
		SpoolDir:       spoolDir,

		AuthWithoutTLSFromLoopback: cfg.Submission.AuthWithoutTLSFromLoopback,
		HideClientIP:               cfg.Submission.HideClientIP,
		CRAMMD5:                    cfg.Submission.CRAMMD5,
	}
	if cfg.SMTP.BareLineEndings == "normalize" {
		c.LineEndings = smtp.NormalizeBareLineEndings
	}
	pairs, err := certPairs(cfg)
	if err != nil {
		return nil, err
	}
	if len(pairs) > 0 {
		if err := cs.Load(pairs...); err != nil {
			return nil, err
		}
		c.TLS = cs.ServerConfig()
	} else if len(cfg.Listen.Submissions) > 0 {
		return nil, fmt.Errorf("[listen] submissions needs a certificate: set [tls] cert_file and key_file, or tls.self_signed = true")
	}
	return c, nil
}

// authPolicy is the login limiter's policy.
func authPolicy(cfg *config.Config) authlimit.Policy {
	return authlimit.Policy{
		MaxFailures:     cfg.Auth.MaxFailures,
		MaxPairFailures: cfg.Auth.MaxFailuresPerAccount,
		Window:          cfg.Auth.BanTime.D(),
		BaseDelay:       cfg.Auth.FailureDelay.D(),
		MaxDelay:        cfg.Auth.MaxFailureDelay.D(),
	}
}

// serverSecret reads data_dir/secret, making it (32 random bytes) the
// first time.
func serverSecret(dataDir string) ([]byte, error) {
	path := filepath.Join(dataDir, "secret")
	if b, err := os.ReadFile(path); err == nil && len(b) >= 32 {
		return b, nil
	}
	b := make([]byte, 32)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return b, nil
}

// CertificateWarnings says what is wrong with the dates of the configured
// certificates (the self-signed one renews itself): for the log at start
// and reload, and for "config check".
func CertificateWarnings(cfg *config.Config) []string {
	return certs.Warnings(time.Now(), configuredPairs(cfg)...)
}

// configuredPairs lists the certificates the configuration names.
func configuredPairs(cfg *config.Config) []certs.Pair {
	var pairs []certs.Pair
	if cfg.TLS.CertFile != "" {
		pairs = append(pairs, certs.Pair{CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile})
	}
	for _, p := range cfg.TLS.Certificates {
		pairs = append(pairs, certs.Pair{CertFile: p.CertFile, KeyFile: p.KeyFile})
	}
	return pairs
}

// certPairs lists the configured certificates, or a self-signed one.
func certPairs(cfg *config.Config) ([]certs.Pair, error) {
	pairs := configuredPairs(cfg)
	if len(pairs) == 0 && cfg.TLS.SelfSigned {
		certFile, keyFile, err := certs.SelfSigned(filepath.Join(cfg.DataDir, "tls"), cfg.Hostname)
		if err != nil {
			return nil, err
		}
		pairs = append(pairs, certs.Pair{CertFile: certFile, KeyFile: keyFile})
	}
	return pairs, nil
}

func inboundConfig(cfg *config.Config) *inbound.Config {
	c := &inbound.Config{
		Hostname:             cfg.Hostname,
		SubaddressSeparator:  cfg.SMTP.SubaddressSeparator,
		MaxHops:              cfg.SMTP.MaxHops,
		DataDir:              cfg.DataDir,
		MinFreeSpace:         int64(cfg.Store.MinFreeSpace),
		ReportSizeLimit:      int64(cfg.Queue.ReportSizeLimit),
		MaxReportsPerHour:    cfg.Queue.MaxReportsPerHour,
		DMARC:                cfg.SMTP.DMARC,
		DMARCDomains:         map[string]string{},
		ARCTrustedSealers:    lowered(cfg.SMTP.ARCTrustedSealers),
		ComplaintsTo:         lowered(cfg.Events.ComplaintsTo),
		ComplaintSuppressFor: cfg.Events.ComplaintSuppressFor.D(),
		SendLimits: sendlimit.Limits{
			MessagesPerHour:   cfg.Submission.MaxMessagesPerHour,
			MessagesPerDay:    cfg.Submission.MaxMessagesPerDay,
			RecipientsPerHour: cfg.Submission.MaxRecipientsPerHour,
			RecipientsPerDay:  cfg.Submission.MaxRecipientsPerDay,
		},
	}
	for _, p := range cfg.SMTP.TrustedNetworks {
		c.TrustedNetworks = append(c.TrustedNetworks, netip.Prefix(p))
	}
	for d, v := range cfg.SMTP.DMARCDomains {
		c.DMARCDomains[strings.ToLower(strings.TrimSuffix(d, "."))] = v
	}
	return c
}

// lowered is a list of domains in lower case, without final dots.
func lowered(ds []string) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = strings.ToLower(strings.TrimSuffix(d, "."))
	}
	return out
}

// warnUnsigned logs each local domain without DKIM keys (one added before
// Mailroom signed mail): its mail leaves unsigned until it has some.
func warnUnsigned(ctx context.Context, st store.Store, log *slog.Logger) {
	ds, err := st.Domains(ctx)
	if err != nil {
		return
	}
	for _, d := range ds {
		if keys, err := st.DKIMKeysOf(ctx, d.Name); err == nil && len(keys) == 0 {
			log.Warn("a domain has no DKIM keys: its mail leaves unsigned; make them with 'mailroom dkim rotate DOMAIN' and publish what 'mailroom domain records DOMAIN' prints", "domain", d.Name)
		}
	}
}

// webhookConfig is the webhook sender's part of the configuration.
func webhookConfig(cfg *config.Config) webhook.Config {
	c := webhook.Config{GiveUpAfter: cfg.Webhooks.GiveUpAfter.D(), Timeout: cfg.Webhooks.Timeout.D(), MaxInbound: int64(cfg.SMTP.MaxMessageSize)}
	for _, d := range cfg.Webhooks.RetryIntervals {
		c.RetryIntervals = append(c.RetryIntervals, d.D())
	}
	for _, p := range cfg.Webhooks.AllowNetworks {
		c.AllowNetworks = append(c.AllowNetworks, netip.Prefix(p))
	}
	return c
}
