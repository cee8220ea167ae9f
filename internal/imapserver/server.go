// Package imapserver is Mailroom's IMAP server: IMAP4rev2 (RFC 9051) and
// IMAP4rev1 (RFC 3501) in one, over the store's mail interface
// (store.Mail), the listener layer (limits, deadlines, implicit TLS) and
// the login layer (auth). One file per command group; the wire format is
// imapwire's.
//
// Sessions see changes made by other sessions and by delivery through the
// store's change feed (store.Mail.Watch), never by polling: after each
// command, and at once while IDLE.
package imapserver

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"mailroom/internal/auth"
	"mailroom/internal/imapwire"
	"mailroom/internal/listener"
	"mailroom/internal/store"
)

// Config is what sessions need; it may be replaced while running.
type Config struct {
	Hostname string
	// TLS is the configuration for STARTTLS and implicit TLS; nil: none.
	TLS *tls.Config
	// SpoolDir holds large APPEND literals while they arrive.
	SpoolDir string
	// MaxMessageSize is the largest APPEND (APPENDLIMIT, RFC 7889).
	MaxMessageSize int64
	// IdleTimeout is how long an authenticated client may say nothing
	// (RFC 9051 5.4: at least 30 minutes); LoginTimeout is the bound
	// before login.
	IdleTimeout, LoginTimeout time.Duration
	// MaxSessionTime caps a session (0: none).
	MaxSessionTime time.Duration
}

// Authenticator checks logins (auth.Service).
type Authenticator interface {
	Authenticate(ctx context.Context, c auth.Client, mech string, initial []byte, hasInitial bool, o auth.Options, ask auth.Ask) (string, error)
	Password(ctx context.Context, c auth.Client, user, pw string) (string, error)
}

// Store is what the server reads and changes.
type Store interface {
	User(ctx context.Context, address string) (store.User, error)
	store.Mailboxes
	store.Mail
	store.SearchIndex
}

// Server runs IMAP sessions.
type Server struct {
	cfg   atomic.Pointer[Config]
	store Store
	auth  Authenticator
	log   *slog.Logger
	views views     // of large mailboxes, for SELECT
	infos infoCache // what FETCH reads of messages without their bodies
	sorts sortCache // what SORT compares

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	wg        sync.WaitGroup
	closing   atomic.Bool
	ctx       context.Context
	cancel    context.CancelFunc

	preloadCtx  context.Context // of Preload; stopPreload at Shutdown
	stopPreload context.CancelFunc
}

// New returns a server.
func New(cfg *Config, st Store, authn Authenticator, log *slog.Logger) *Server {
	s := &Server{store: st, auth: authn, log: log, listeners: map[net.Listener]struct{}{}, sessions: map[*session]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.preloadCtx, s.stopPreload = context.WithCancel(s.ctx)
	s.SetConfig(cfg)
	return s
}

// Preload brings the state of the large mailboxes used last into memory,
// in the background, so that their first SELECT after a start is as quick
// as later ones (views.preload). Shutdown stops it.
func (s *Server) Preload() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		start := time.Now()
		n, msgs, err := s.views.preload(s.preloadCtx, s.store)
		switch {
		case err != nil && s.preloadCtx.Err() == nil:
			s.log.Warn("imap: preloading mailboxes' state stopped; their first SELECT reads it instead", "err", err)
		case n > 0:
			s.log.Info("imap: preloaded the state of large mailboxes", "mailboxes", n, "messages", msgs, "took", time.Since(start).Round(time.Millisecond))
		}
	}()
}

// SetConfig replaces the configuration for sessions started from now on.
func (s *Server) SetConfig(cfg *Config) {
	c := *cfg
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 30 * time.Minute
	}
	if c.LoginTimeout <= 0 {
		c.LoginTimeout = time.Minute
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = 25 << 20
	}
	s.cfg.Store(&c)
}

// TLSConfig returns the TLS configuration in force, for implicit TLS.
func (s *Server) TLSConfig() *tls.Config { return s.cfg.Load().TLS }

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("imapserver: server closed")

// Serve runs sessions on l, admitted through svc, until Shutdown. With
// implicitTLS the service has already run the handshake (imaps, 993).
func (s *Server) Serve(svc *listener.Service, l net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	svc.Serve(l, handler{s})
	return ErrServerClosed
}

type handler struct{ srv *Server }

// Refusal is the BYE for a client beyond the listener's limits.
func (h handler) Refusal(why listener.Refusal) []byte {
	if why == listener.TooManyFromClient {
		return []byte("* BYE [UNAVAILABLE] Too many connections from your address, try again later\r\n")
	}
	return []byte("* BYE [UNAVAILABLE] Too many connections, try again later\r\n")
}

// ServeConn runs the session of an admitted connection.
func (h handler) ServeConn(c *listener.Conn) {
	s := h.srv
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		c.WriteWithin([]byte("* BYE [UNAVAILABLE] Server shutting down, try again later\r\n"), 5*time.Second)
		return
	}
	sess := newSession(s, s.cfg.Load(), c)
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	sess.serve()
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
}

// Shutdown stops accepting and ends every session with a BYE: IMAP
// clients reconnect, and nothing a session acknowledged is lost (every
// change is committed before its OK). Sessions still busy when ctx ends
// are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.stopPreload()
	s.mu.Lock()
	for l := range s.listeners {
		l.Close()
	}
	list := make([]*session, 0, len(s.sessions))
	for sess := range s.sessions {
		list = append(list, sess)
	}
	s.mu.Unlock()
	for _, sess := range list {
		sess.stop()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.cancel()
		for _, sess := range list {
			sess.c.CloseRaw()
		}
		<-done
		return ctx.Err()
	}
}

// limits of the wire layer for a configuration.
func wireLimits(cfg *Config) imapwire.Limits {
	return imapwire.Limits{MaxAppend: cfg.MaxMessageSize}
}
