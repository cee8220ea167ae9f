package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"mailroom/internal/config"
	"mailroom/internal/imapserver"
	"mailroom/internal/listener"
)

// imapRuntime is the running IMAP server: its listeners and their gates.
type imapRuntime struct {
	srv      *imapserver.Server
	services map[string]*listener.Service // "imap", "imaps"
	bound    []imapSocket
	wg       sync.WaitGroup
}

// imapSocket is a bound IMAP socket.
type imapSocket struct {
	net.Listener
	service string
}

// imapConfig is the IMAP server's configuration.
func imapConfig(cfg *config.Config, tlsCfg *tls.Config, spoolDir string) *imapserver.Config {
	return &imapserver.Config{Hostname: cfg.Hostname, TLS: tlsCfg, SpoolDir: spoolDir, MaxMessageSize: int64(cfg.SMTP.MaxMessageSize)}
}

// imapLimits are an IMAP service's connection limits.
func imapLimits(cfg *config.Config) listener.Limits {
	return listener.Limits{
		MaxConns:         cfg.IMAP.MaxConnections,
		MaxPerClient:     cfg.IMAP.MaxConnectionsPerClient,
		Prefixes:         listener.Prefixes{IPv4: cfg.Clients.IPv4Prefix, IPv6: cfg.Clients.IPv6Prefix},
		HandshakeTimeout: cfg.TLS.HandshakeTimeout.D(),
	}
}

// startIMAP binds the IMAP listeners and serves them; an error when one
// cannot be bound (nothing is left bound).
func startIMAP(cfg *config.Config, st imapserver.Store, authn imapserver.Authenticator, tlsCfg *tls.Config, spoolDir string, log *slog.Logger) (*imapRuntime, error) {
	if len(cfg.Listen.IMAPS) > 0 && tlsCfg == nil {
		return nil, fmt.Errorf("[listen] imaps needs a certificate: set [tls] cert_file and key_file, or tls.self_signed = true")
	}
	rt := &imapRuntime{srv: imapserver.New(imapConfig(cfg, tlsCfg, spoolDir), st, authn, log), services: map[string]*listener.Service{}}
	for _, name := range []string{"imap", "imaps"} {
		svc := &listener.Service{Name: name, Gate: listener.NewGate(imapLimits(cfg)), Log: log}
		if name == "imaps" {
			svc.TLS = rt.srv.TLSConfig
		}
		rt.services[name] = svc
	}
	for _, svc := range []struct {
		name  string
		addrs []config.HostPort
	}{{"imap", cfg.Listen.IMAP}, {"imaps", cfg.Listen.IMAPS}} {
		for _, a := range svc.addrs {
			l, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", a.String())
			if err != nil {
				for _, b := range rt.bound {
					b.Close()
				}
				return nil, listenError(svc.name, a.String(), err)
			}
			rt.bound = append(rt.bound, imapSocket{l, svc.name})
		}
	}
	for _, b := range rt.bound {
		rt.wg.Add(1)
		go func() {
			defer rt.wg.Done()
			if err := rt.srv.Serve(rt.services[b.service], b.Listener); err != nil && !errors.Is(err, imapserver.ErrServerClosed) {
				log.Error("listener stopped", "service", b.service, "addr", b.Addr().String(), "err", err)
			}
		}()
		log.Info("listening", "service", b.service, "addr", b.Addr().String())
	}
	return rt, nil
}

// apply takes a reloaded configuration.
func (rt *imapRuntime) apply(cfg *config.Config, tlsCfg *tls.Config, spoolDir string) {
	rt.srv.SetConfig(imapConfig(cfg, tlsCfg, spoolDir))
	for _, svc := range rt.services {
		svc.Gate.SetLimits(imapLimits(cfg))
	}
}

// shutdown ends the IMAP sessions (each gets a BYE) within ctx.
func (rt *imapRuntime) shutdown(ctx context.Context, log *slog.Logger) {
	if err := rt.srv.Shutdown(ctx); err != nil {
		log.Warn("IMAP sessions still open at the shutdown deadline were closed", "err", err)
	}
	rt.wg.Wait()
}
