package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"mailroom/internal/auth"
	"mailroom/internal/config"
	"mailroom/internal/imapserver"
	"mailroom/internal/listener"
	"mailroom/internal/pop3server"
	"mailroom/internal/store"
)

// accessServer is a mail-access server (IMAP, POP3).
type accessServer interface {
	Serve(svc *listener.Service, l net.Listener) error
	Shutdown(ctx context.Context) error
	TLSConfig() *tls.Config
}

// accessRuntime runs the IMAP and POP3 servers: their listeners, each
// service with a gate of its own.
type accessRuntime struct {
	imap     *imapserver.Server
	pop3     *pop3server.Server
	services map[string]*listener.Service // "imap", "imaps", "pop3", "pop3s"
	bound    []accessSocket
	wg       sync.WaitGroup
}

// accessSocket is a bound socket of a mail-access service.
type accessSocket struct {
	net.Listener
	service string
}

// accessService is one mail-access service: its addresses, whether it is
// implicit TLS, and its server.
type accessService struct {
	name     string
	addrs    []config.HostPort
	implicit bool
	srv      accessServer
}

func imapConfig(cfg *config.Config, tlsCfg *tls.Config, spoolDir string) *imapserver.Config {
	return &imapserver.Config{Hostname: cfg.Hostname, TLS: tlsCfg, SpoolDir: spoolDir, MaxMessageSize: int64(cfg.SMTP.MaxMessageSize)}
}

func pop3Config(cfg *config.Config, tlsCfg *tls.Config) *pop3server.Config {
	return &pop3server.Config{Hostname: cfg.Hostname, TLS: tlsCfg}
}

// accessLimits are a mail-access service's connection limits.
func accessLimits(cfg *config.Config, service string) listener.Limits {
	l := listener.Limits{
		MaxConns:         cfg.IMAP.MaxConnections,
		MaxPerClient:     cfg.IMAP.MaxConnectionsPerClient,
		Prefixes:         listener.Prefixes{IPv4: cfg.Clients.IPv4Prefix, IPv6: cfg.Clients.IPv6Prefix},
		HandshakeTimeout: cfg.TLS.HandshakeTimeout.D(),
	}
	if service == "pop3" || service == "pop3s" {
		l.MaxConns, l.MaxPerClient = cfg.POP3.MaxConnections, cfg.POP3.MaxConnectionsPerClient
	}
	return l
}

// mailStore is what IMAP and POP3 need of the store.
type mailStore interface {
	imapserver.Store
	store.Mail
}

// startAccess binds the IMAP and POP3 listeners and serves them; an error
// when one cannot be bound (nothing is left bound).
func startAccess(cfg *config.Config, st mailStore, logins *auth.Service, tlsCfg *tls.Config, spoolDir string, log *slog.Logger) (*accessRuntime, error) {
	rt := &accessRuntime{
		imap:     imapserver.New(imapConfig(cfg, tlsCfg, spoolDir), st, logins, log),
		pop3:     pop3server.New(pop3Config(cfg, tlsCfg), st, logins, log),
		services: map[string]*listener.Service{},
	}
	services := []accessService{
		{"imap", cfg.Listen.IMAP, false, rt.imap}, {"imaps", cfg.Listen.IMAPS, true, rt.imap},
		{"pop3", cfg.Listen.POP3, false, rt.pop3}, {"pop3s", cfg.Listen.POP3S, true, rt.pop3},
	}
	for _, as := range services {
		if as.implicit && len(as.addrs) > 0 && tlsCfg == nil {
			return nil, fmt.Errorf("[listen] %s needs a certificate: set [tls] cert_file and key_file, or tls.self_signed = true", as.name)
		}
		svc := &listener.Service{Name: as.name, Gate: listener.NewGate(accessLimits(cfg, as.name)), Log: log}
		if as.implicit {
			svc.TLS = as.srv.TLSConfig
		}
		rt.services[as.name] = svc
	}
	for _, as := range services {
		for _, a := range as.addrs {
			l, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", a.String())
			if err != nil {
				for _, b := range rt.bound {
					b.Close()
				}
				return nil, listenError(as.name, a.String(), err)
			}
			rt.bound = append(rt.bound, accessSocket{l, as.name})
		}
	}
	if len(cfg.Listen.IMAP)+len(cfg.Listen.IMAPS) > 0 {
		rt.imap.Preload()
	}
	for _, b := range rt.bound {
		srv := accessServer(rt.imap)
		if b.service == "pop3" || b.service == "pop3s" {
			srv = rt.pop3
		}
		rt.wg.Add(1)
		go func() {
			defer rt.wg.Done()
			if err := srv.Serve(rt.services[b.service], b.Listener); err != nil &&
				!errors.Is(err, imapserver.ErrServerClosed) && !errors.Is(err, pop3server.ErrServerClosed) {
				log.Error("listener stopped", "service", b.service, "addr", b.Addr().String(), "err", err)
			}
		}()
		log.Info("listening", "service", b.service, "addr", b.Addr().String())
	}
	return rt, nil
}

// apply takes a reloaded configuration.
func (rt *accessRuntime) apply(cfg *config.Config, tlsCfg *tls.Config, spoolDir string) {
	rt.imap.SetConfig(imapConfig(cfg, tlsCfg, spoolDir))
	rt.pop3.SetConfig(pop3Config(cfg, tlsCfg))
	for name, svc := range rt.services {
		svc.Gate.SetLimits(accessLimits(cfg, name))
	}
}

// shutdown ends the IMAP and POP3 sessions within ctx.
func (rt *accessRuntime) shutdown(ctx context.Context, log *slog.Logger) {
	var wg sync.WaitGroup
	for name, srv := range map[string]accessServer{"IMAP": rt.imap, "POP3": rt.pop3} {
		wg.Go(func() {
			if err := srv.Shutdown(ctx); err != nil {
				log.Warn(name+" sessions still open at the shutdown deadline were closed", "err", err)
			}
		})
	}
	wg.Wait()
	rt.wg.Wait()
}
