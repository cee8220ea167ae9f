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
	"sync"
	"sync/atomic"
	"time"

	"mailroom/internal/listener"
	"mailroom/internal/smtp"
	"mailroom/internal/spool"
)

// Config holds the settings a session reads; it can be replaced while the
// server runs (SIGHUP), and each new session takes the current one.
type Config struct {
	Hostname       string
	MaxMessageSize int64
	MaxRecipients  int
	MaxLineLength  int
	MaxErrors      int
	CommandTimeout time.Duration
	DataTimeout    time.Duration
	// MinDataRate is the average rate, in octets per second, message data
	// must keep up after DataTimeout's grace; 0 for none.
	MinDataRate int64
	// MaxSessionTime caps a whole session; 0 for no cap.
	MaxSessionTime time.Duration
	LineEndings    smtp.LineEndings
	// TLS enables STARTTLS when not nil; ModeSubmissions listeners need it.
	TLS *tls.Config
	// AuthWithoutTLSFromLoopback allows AUTH over plaintext for clients on
	// a loopback address (off by default).
	AuthWithoutTLSFromLoopback bool
	// HideClientIP leaves an authenticated client's address out of the
	// Received header field.
	HideClientIP bool
	// CRAMMD5 offers AUTH CRAM-MD5.
	CRAMMD5 bool
	// SpoolDir holds large messages while they are received.
	SpoolDir string
}

// Server accepts SMTP connections and runs a session for each.
type Server struct {
	backend Backend
	auth    Authenticator // nil: no AUTH
	log     *slog.Logger
	cfg     atomic.Pointer[Config]

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
	wg        sync.WaitGroup
}

// New returns a server that hands policy and storage to backend and checks
// logins (submission) with authn, which may be nil where there are none.
func New(cfg *Config, backend Backend, authn Authenticator, log *slog.Logger) *Server {
	s := &Server{
		backend:   backend,
		auth:      authn,
		log:       log,
		listeners: map[net.Listener]struct{}{},
		sessions:  map[*session]struct{}{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.cfg.Store(cfg)
	return s
}

// TLSConfig is the TLS configuration of the current settings (nil without
// a certificate), for implicit-TLS listeners.
func (s *Server) TLSConfig() *tls.Config { return s.cfg.Load().TLS }

// SetConfig replaces the configuration for sessions that start from now on.
func (s *Server) SetConfig(cfg *Config) { s.cfg.Store(cfg) }

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("smtpserver: server closed")

// Serve runs SMTP sessions of the given mode on l, admitted through svc
// (its limits and, for ModeSubmissions, its TLS handshake), until Shutdown.
func (s *Server) Serve(svc *listener.Service, l net.Listener, mode Mode) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	svc.Serve(l, handler{s, mode})
	return ErrServerClosed
}

// handler runs one listener's sessions.
type handler struct {
	srv  *Server
	mode Mode
}

// Refusal is the 421 for a client beyond the listener's limits.
func (h handler) Refusal(why listener.Refusal) []byte {
	text := " Too many connections, try again later"
	if why == listener.TooManyFromClient {
		text = " Too many connections from your address, try again later"
	}
	r := smtp.Reply{Code: 421, Enhanced: "4.7.0", Text: h.srv.cfg.Load().Hostname + text}
	return r.AppendTo(nil)
}

// ServeConn runs the session of an admitted connection.
func (h handler) ServeConn(c *listener.Conn) {
	s := h.srv
	cfg := s.cfg.Load()
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		r := smtp.Reply{Code: 421, Enhanced: "4.3.2", Text: cfg.Hostname + " Service shutting down, try again later"}
		c.WriteWithin(r.AppendTo(nil), 5*time.Second)
		return
	}
	sess := newSession(s, cfg, c)
	sess.info.Mode = h.mode
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	sess.serve()
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
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
			sess.c.CloseRaw()
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
