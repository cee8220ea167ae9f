// Package smtpserver runs SMTP sessions (RFC 5321) on listeners: the
// protocol state machine, limits, timeouts, STARTTLS and graceful shutdown.
// Policy (which senders and recipients to accept) and storage belong to the
// Backend it is given; every reply it sends carries an enhanced status code.
package smtpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"mailroom/internal/authlimit"
	"mailroom/internal/smtp"
	"mailroom/internal/spool"
)

// Config holds the settings a session reads; it can be replaced while the
// server runs (SIGHUP), and each new session takes the current one.
type Config struct {
	Hostname            string
	MaxMessageSize      int64
	MaxRecipients       int
	MaxLineLength       int
	MaxConnections      int
	MaxConnectionsPerIP int
	MaxErrors           int
	CommandTimeout      time.Duration
	DataTimeout         time.Duration
	LineEndings         smtp.LineEndings
	// TLS enables STARTTLS when not nil; ModeSubmissions listeners need it.
	TLS *tls.Config
	// AuthWithoutTLSFromLoopback allows AUTH over plaintext for clients on
	// a loopback address (off by default).
	AuthWithoutTLSFromLoopback bool
	// HideClientIP leaves an authenticated client's address out of the
	// Received header field.
	HideClientIP bool
	// CRAMMD5 offers AUTH CRAM-MD5 (when the backend supports it).
	CRAMMD5 bool
	// AuthLimit throttles failed logins; it is read once, by New.
	AuthLimit authlimit.Policy
	// SpoolDir holds large messages while they are received.
	SpoolDir string
}

// Server accepts SMTP connections and runs a session for each.
type Server struct {
	backend   Backend
	log       *slog.Logger
	cfg       atomic.Pointer[Config]
	authLimit *authlimit.Limiter

	// closing is read without mu by sessions: taking mu there while
	// Shutdown holds it and takes session locks would deadlock.
	closing atomic.Bool
	// ctx ends when Shutdown's deadline passes: backend calls of sessions
	// still running then are cancelled.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	perIP     map[netip.Addr]int
	wg        sync.WaitGroup
}

// New returns a server that hands policy and storage to backend.
func New(cfg *Config, backend Backend, log *slog.Logger) *Server {
	s := &Server{
		backend:   backend,
		log:       log,
		listeners: map[net.Listener]struct{}{},
		sessions:  map[*session]struct{}{},
		perIP:     map[netip.Addr]int{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.authLimit = authlimit.New(cfg.AuthLimit, nil)
	s.cfg.Store(cfg)
	return s
}

// SetConfig replaces the configuration for sessions that start from now on.
func (s *Server) SetConfig(cfg *Config) { s.cfg.Store(cfg) }

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("smtpserver: server closed")

// Serve accepts connections on l, for the given mode, until Shutdown.
func (s *Server) Serve(l net.Listener, mode Mode) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return ErrServerClosed
			}
			// Out of file descriptors, buffers or memory: back off and
			// keep serving rather than leave the port deaf.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("smtp accept failed, retrying", "err", err, "delay", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.startSession(c, mode)
	}
}

// startSession admits c within the connection limits, or answers 421.
func (s *Server) startSession(c net.Conn, mode Mode) {
	cfg := s.cfg.Load()
	ip := remoteIP(c)
	s.mu.Lock()
	var refuse *smtp.Reply
	switch {
	case s.closing.Load():
		refuse = &smtp.Reply{Code: 421, Enhanced: "4.3.2", Text: cfg.Hostname + " Service shutting down, try again later"}
	case len(s.sessions) >= cfg.MaxConnections:
		refuse = &smtp.Reply{Code: 421, Enhanced: "4.7.0", Text: cfg.Hostname + " Too many connections, try again later"}
	case s.perIP[ip] >= cfg.MaxConnectionsPerIP:
		refuse = &smtp.Reply{Code: 421, Enhanced: "4.7.0", Text: cfg.Hostname + " Too many connections from your address, try again later"}
	}
	if refuse != nil {
		s.mu.Unlock()
		s.log.Info("smtp connection refused", "client", ip, "reason", refuse.Text)
		go func() {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.Write(refuse.AppendTo(nil))
			c.Close()
		}()
		return
	}
	sess := newSession(s, cfg, c, ip)
	sess.info.Mode = mode
	s.sessions[sess] = struct{}{}
	s.perIP[ip]++
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		sess.serve()
		s.mu.Lock()
		delete(s.sessions, sess)
		if s.perIP[ip]--; s.perIP[ip] <= 0 {
			delete(s.perIP, ip)
		}
		s.mu.Unlock()
	}()
}

func remoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// Shutdown stops accepting, tells idle sessions 421 and closes them, lets
// sessions in the middle of a transaction finish until ctx ends, then closes
// whatever is left. Mail that got its 250 is already stored; mail that did
// not will be sent again by its client.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	for _, sess := range s.sessionList() {
		sess.interruptIfIdle()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.cancel()
		for _, sess := range s.sessionList() {
			sess.raw.Close()
		}
		<-done
		return ctx.Err()
	}
}

// sessionList copies the open sessions, so that they can be acted on
// without holding mu.
func (s *Server) sessionList() []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := make([]*session, 0, len(s.sessions))
	for sess := range s.sessions {
		list = append(list, sess)
	}
	return list
}

// newSpool returns the spool for one message's data.
func newSpool(cfg *Config) *spool.Spool { return spool.New(cfg.SpoolDir, 0) }
