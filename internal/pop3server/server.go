// Package pop3server is Mailroom's POP3 server (RFC 1939) with CAPA and
// response codes (RFC 2449), STLS (RFC 2595) and SASL (RFC 5034), over the
// store's mail interface, the listener layer and the login layer. A POP3
// session sees INBOX as it was at login; messages it deletes go at QUIT,
// and one session at a time holds a maildrop.
package pop3server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"mailroom/internal/auth"
	"mailroom/internal/listener"
	"mailroom/internal/store"
)

// Config is what sessions need; it may be replaced while running.
type Config struct {
	Hostname string
	TLS      *tls.Config // STLS and implicit TLS; nil: none
	// IdleTimeout bounds the wait for a command (RFC 1939 3: at least 10
	// minutes).
	IdleTimeout time.Duration
}

// Authenticator checks logins (auth.Service).
type Authenticator interface {
	Authenticate(ctx context.Context, c auth.Client, mech string, initial []byte, hasInitial bool, o auth.Options, ask auth.Ask) (string, error)
	Password(ctx context.Context, c auth.Client, user, pw string) (string, error)
}

// Store is what the server reads and changes.
type Store interface {
	User(ctx context.Context, address string) (store.User, error)
	MailboxState(ctx context.Context, userID int64, mailbox string) (store.MailboxState, error)
	Summaries(ctx context.Context, userID int64, mailbox string, uids []uint32, fn func(store.MessageInfo) error) error
	OpenMessage(ctx context.Context, userID int64, mailbox string, uid uint32) (io.ReadCloser, store.MessageInfo, error)
	ReadMessages(ctx context.Context, userID int64, mailbox string, uids []uint32, fn func(uint32, io.Reader) error) error
	SetFlags(ctx context.Context, userID int64, mailbox string, c store.FlagChange) (store.FlagResult, error)
	Expunge(ctx context.Context, userID int64, mailbox string, uids []uint32) ([]uint32, error)
}

// Server runs POP3 sessions.
type Server struct {
	cfg   atomic.Pointer[Config]
	store Store
	auth  Authenticator
	log   *slog.Logger

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	locked    map[int64]bool // maildrops held by a session
	wg        sync.WaitGroup
	closing   atomic.Bool
	ctx       context.Context
	cancel    context.CancelFunc
}

// New returns a server.
func New(cfg *Config, st Store, authn Authenticator, log *slog.Logger) *Server {
	s := &Server{store: st, auth: authn, log: log, listeners: map[net.Listener]struct{}{},
		sessions: map[*session]struct{}{}, locked: map[int64]bool{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.SetConfig(cfg)
	return s
}

// SetConfig replaces the configuration for sessions started from now on.
func (s *Server) SetConfig(cfg *Config) {
	c := *cfg
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 10 * time.Minute
	}
	s.cfg.Store(&c)
}

// TLSConfig returns the TLS configuration in force, for implicit TLS.
func (s *Server) TLSConfig() *tls.Config { return s.cfg.Load().TLS }

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("pop3server: server closed")

// Serve runs sessions on l, admitted through svc, until Shutdown.
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

// Refusal is the -ERR for a client beyond the listener's limits.
func (h handler) Refusal(why listener.Refusal) []byte {
	if why == listener.TooManyFromClient {
		return []byte("-ERR [SYS/TEMP] Too many connections from your address, try again later\r\n")
	}
	return []byte("-ERR [SYS/TEMP] Too many connections, try again later\r\n")
}

// ServeConn runs the session of an admitted connection.
func (h handler) ServeConn(c *listener.Conn) {
	s := h.srv
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		c.WriteWithin([]byte("-ERR [SYS/TEMP] Server shutting down, try again later\r\n"), 5*time.Second)
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

// lock takes a user's maildrop for a session; false when another has it.
func (s *Server) lock(userID int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locked[userID] {
		return false
	}
	s.locked[userID] = true
	return true
}

func (s *Server) unlock(userID int64) {
	s.mu.Lock()
	delete(s.locked, userID)
	s.mu.Unlock()
}

// Shutdown stops accepting and ends every session: a session in the
// TRANSACTION state ends without deleting anything (RFC 1939 6: only QUIT
// deletes). Sessions still busy when ctx ends are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
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
