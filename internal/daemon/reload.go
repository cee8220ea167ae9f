package daemon

import (
	"fmt"
	"log/slog"
	"reflect"
	"sync/atomic"

	"mailroom/internal/auth"
	"mailroom/internal/certs"
	"mailroom/internal/config"
	"mailroom/internal/inbound"
	"mailroom/internal/listener"
	"mailroom/internal/logging"
	"mailroom/internal/smtpserver"
	"mailroom/internal/store"
	"mailroom/internal/store/storeopen"
	"mailroom/internal/webhook"
)

// running is what SIGHUP reconfigures.
type running struct {
	srv      *smtpserver.Server
	services map[smtpserver.Mode]*listener.Service
	access   *accessRuntime
	store    store.Store
	backend  *inbound.Backend
	logins   *auth.Service
	relay    *relay
	certs    *certs.Store
	spoolDir string
	level    *slog.LevelVar
	log      *slog.Logger
	// eventsKeep is [events] keep, read by the events keeper at each sweep.
	eventsKeep *atomic.Int64
	hooks      *webhook.Sender
}

// restartOnly lists the settings a running server cannot take, each by its
// key and the field that holds it: a change to any is named in the log and
// the running value kept until a restart.
var restartOnly = []struct {
	key   string
	field func(*config.Config) any // a pointer to the setting
}{
	{"data_dir", func(c *config.Config) any { return &c.DataDir }},
	{"store.url", func(c *config.Config) any { return &c.Store.URL }},
	{"listen", func(c *config.Config) any { return &c.Listen }},
	{"dns", func(c *config.Config) any { return &c.DNS }},
	{"http", func(c *config.Config) any { return &c.HTTP }},
	{"tls.acme", func(c *config.Config) any { return &c.TLS.ACME }},
	{"tls.self_signed", func(c *config.Config) any { return &c.TLS.SelfSigned }},
	{"tls.reload_interval", func(c *config.Config) any { return &c.TLS.ReloadInterval }},
	{"log.format", func(c *config.Config) any { return &c.Log.Format }},
	{"shutdown_timeout", func(c *config.Config) any { return &c.ShutdownTimeout }},
}

// keepRunning puts the running value of every restart-only setting into
// cfg, and returns the keys whose value in cfg differed.
func keepRunning(cfg, old *config.Config) []string {
	var changed []string
	for _, k := range restartOnly {
		now, was := reflect.ValueOf(k.field(cfg)).Elem(), reflect.ValueOf(k.field(old)).Elem()
		if !reflect.DeepEqual(now.Interface(), was.Interface()) {
			changed = append(changed, k.key)
		}
		now.Set(was)
	}
	return changed
}

// reload re-reads the configuration file (SIGHUP) and applies everything
// that can change while the server runs: the SMTP settings, the listeners'
// limits, delivery policy, the login limiter, [outbound], [queue], the
// certificates and the log level. It checks the whole file before changing
// anything: a file with an error changes nothing. Keys that need a restart
// are named in the log and keep their running values. It returns the
// configuration now in effect.
func (rt *running) reload(opts Options, old *config.Config) *config.Config {
	if opts.ConfigFile == "" {
		rt.log.Info("SIGHUP: no configuration file to reload (running on development defaults)")
		return old
	}
	cfg, err := loadConfig(opts)
	if err != nil {
		rt.log.Error("SIGHUP: configuration not reloaded, keeping the running one", "file", opts.ConfigFile, "err", err)
		return old
	}
	// What needs a restart keeps running as it is, before anything is
	// built from the file (the certificates of the running listeners and
	// data directory), and in the configuration in effect, so that the
	// next SIGHUP compares with it.
	restart := keepRunning(cfg, old)
	err = rt.relay.check(cfg)
	var level slog.Level
	if err == nil {
		level, err = logging.ParseLevel(cfg.Log.Level)
	}
	var smtpCfg *smtpserver.Config
	if err == nil {
		smtpCfg, err = smtpConfig(cfg, rt.certs, rt.spoolDir) // loads the certificates last
	}
	if err == nil && smtpCfg.TLS == nil && rt.srv.TLSConfig() != nil {
		err = fmt.Errorf("the file gives no certificate, and the running listeners use TLS: set [tls] cert_file, or tls.self_signed = true")
	}
	if err != nil {
		rt.log.Error("SIGHUP: configuration not reloaded, keeping the running one", "file", opts.ConfigFile, "err", err)
		return old
	}

	for _, w := range CertificateWarnings(cfg) {
		rt.log.Warn("SIGHUP: " + w)
	}
	rt.srv.SetConfig(smtpCfg)
	rt.access.apply(cfg, smtpCfg.TLS, rt.spoolDir)
	for mode, svc := range rt.services {
		svc.Gate.SetLimits(connLimits(cfg, mode))
	}
	rt.backend.SetConfig(inboundConfig(cfg))
	storeopen.Apply(rt.store, cfg)
	rt.logins.SetPolicy(authPolicy(cfg))
	rt.logins.SetCacheTime(cfg.Auth.LoginCacheTime.D())
	rt.eventsKeep.Store(int64(cfg.Events.Keep.D()))
	rt.hooks.SetConfig(webhookConfig(cfg))
	if err := rt.relay.apply(cfg); err != nil { // checked above: cannot fail now but for a file that changed since
		rt.log.Error("SIGHUP: [outbound] not reloaded, keeping the running one", "err", err)
	}
	if rt.level != nil {
		rt.level.Set(level)
	}
	for _, k := range restart {
		rt.log.Warn("SIGHUP: this setting changed in the file but takes effect only after a restart", "key", k)
	}
	rt.log.Info("SIGHUP: configuration reloaded", "file", opts.ConfigFile, "needs_restart", fmt.Sprint(restart))
	return cfg
}
