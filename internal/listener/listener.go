// Package listener is the connection layer every protocol server (SMTP,
// submission, and later IMAP and POP3) stands on: it accepts connections on
// a service's sockets, admits each within that service's own limits (in
// total and per client address prefix), runs the TLS handshake of an
// implicit-TLS service under a deadline, and gives the protocol a Conn whose
// reads are bounded in time: a deadline per command line, a minimum rate for
// message data, and a cap on the whole session.
//
// Each service has a Gate of its own, so that a flood on one port (25)
// cannot take the connections another (587, 993) needs.
package listener

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"mailroom/internal/metrics"
)

// Prefixes say how client addresses are grouped: one IPv4 host (/32) and
// one IPv6 /64 (the block one host usually gets) by default, so that
// rotating addresses within a block does not escape a limit.
type Prefixes struct {
	IPv4 int // bits, 8-32
	IPv6 int // bits, 16-128
}

// DefaultPrefixes group clients by IPv4 /32 and IPv6 /64.
var DefaultPrefixes = Prefixes{IPv4: 32, IPv6: 64}

// Client returns the prefix ip belongs to.
func (p Prefixes) Client(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := p.IPv4
	if ip.Is6() {
		bits = p.IPv6
	}
	if bits <= 0 || bits > ip.BitLen() {
		bits = ip.BitLen()
	}
	pfx, err := ip.Prefix(bits)
	if err != nil { // an invalid address: a key of its own
		return netip.Prefix{}
	}
	return pfx
}

// Limits bound one service's connections.
type Limits struct {
	MaxConns     int // in total on the service's sockets
	MaxPerClient int // from one client prefix
	Prefixes     Prefixes
	// HandshakeTimeout bounds the TLS handshake of an implicit-TLS service
	// (and of STARTTLS, through Conn.StartTLS).
	HandshakeTimeout time.Duration
}

// Refusal is why a connection is not served.
type Refusal int

const (
	TooManyConnections Refusal = iota + 1
	TooManyFromClient
)

func (r Refusal) String() string {
	switch r {
	case TooManyConnections:
		return "too many connections"
	case TooManyFromClient:
		return "too many connections from the client's address"
	}
	return "refused"
}

// label is the refusal in metrics.
func (r Refusal) label() string {
	switch r {
	case TooManyConnections:
		return "too_many"
	case TooManyFromClient:
		return "too_many_from_client"
	}
	return "refused"
}

// Gate counts one service's open connections, in total and per client
// prefix. Its limits can be replaced while it runs.
type Gate struct {
	limits atomic.Pointer[Limits]

	mu        sync.Mutex
	open      int
	perClient map[netip.Prefix]int
}

// NewGate returns a gate with the given limits.
func NewGate(l Limits) *Gate {
	g := &Gate{perClient: map[netip.Prefix]int{}}
	g.SetLimits(l)
	return g
}

// SetLimits replaces the limits for connections admitted from now on.
func (g *Gate) SetLimits(l Limits) { g.limits.Store(&l) }

// Limits returns the current limits.
func (g *Gate) Limits() Limits { return *g.limits.Load() }

// Admit counts a connection from ip, or says why it is refused. An
// admitted connection must be given back with Release(key).
func (g *Gate) Admit(ip netip.Addr) (key netip.Prefix, why Refusal) {
	l := g.limits.Load()
	key = l.Prefixes.Client(ip)
	g.mu.Lock()
	defer g.mu.Unlock()
	switch { // the client's own limit first: it tells that client more
	case g.perClient[key] >= l.MaxPerClient:
		return key, TooManyFromClient
	case g.open >= l.MaxConns:
		return key, TooManyConnections
	}
	g.open++
	g.perClient[key]++
	return key, 0
}

// Release gives back a connection admitted under key.
func (g *Gate) Release(key netip.Prefix) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open--
	if g.perClient[key]--; g.perClient[key] <= 0 {
		delete(g.perClient, key)
	}
}

// Open returns how many connections are admitted now.
func (g *Gate) Open() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open
}

// Handler is a protocol: it serves admitted connections and words refusals.
type Handler interface {
	// ServeConn runs one session; the connection is closed when it returns.
	ServeConn(c *Conn)
	// Refusal is what to write to a refused client, one line with its
	// line ending (SMTP "421 4.7.0 ...", IMAP "* BYE ...").
	Refusal(why Refusal) []byte
}

// Service is one protocol's sockets sharing one gate.
type Service struct {
	Name string // "smtp", "submission", "imaps"...
	Gate *Gate
	// TLS is set for an implicit-TLS service (RFC 8314): the handshake
	// comes first, and a refusal is sent only inside TLS.
	TLS func() *tls.Config
	Log *slog.Logger

	refusing atomic.Int32 // TLS refusals under way
}

// NewService returns a plaintext service with a gate of its own.
func NewService(name string, l Limits, log *slog.Logger) *Service {
	return &Service{Name: name, Gate: NewGate(l), Log: log}
}

// maxTLSRefusals bounds the handshakes run only to refuse a client: beyond
// it a refused client of an implicit-TLS service is closed without a word.
const maxTLSRefusals = 32

// refusalTimeout bounds the writing of a refusal (and its handshake).
const refusalTimeout = 5 * time.Second

// Serve accepts connections on l until l is closed, and returns nil then.
func (svc *Service) Serve(l net.Listener, h Handler) error {
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors, buffers or memory: back off and
			// keep serving rather than leave the port deaf.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			svc.Log.Warn("accept failed, retrying", "service", svc.Name, "err", err, "delay", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		svc.admit(c, h)
	}
}

// admit starts a session for c, or refuses it.
func (svc *Service) admit(c net.Conn, h Handler) {
	ip := RemoteAddr(c).Addr()
	key, why := svc.Gate.Admit(ip)
	if why != 0 {
		svc.Log.Info("connection refused", "service", svc.Name, "client", ip.String(), "reason", why.String())
		metrics.Connections.WithLabelValues(svc.Name, why.label()).Inc()
		svc.refuse(c, h.Refusal(why))
		return
	}
	metrics.Connections.WithLabelValues(svc.Name, "admitted").Inc()
	open := metrics.OpenConnections.WithLabelValues(svc.Name)
	open.Inc()
	go func() {
		defer open.Dec()
		defer svc.Gate.Release(key)
		conn := newConn(c, svc.Gate.Limits())
		defer conn.Close()
		if svc.TLS != nil {
			cfg := svc.TLS()
			if cfg == nil { // no certificate: nothing can be said on this port
				svc.Log.Error("implicit TLS without a certificate: connection closed", "service", svc.Name)
				return
			}
			if err := conn.handshake(cfg); err != nil {
				svc.Log.Info("TLS handshake failed", "service", svc.Name, "client", ip.String(), "err", err)
				return
			}
		}
		h.ServeConn(conn)
	}()
}

// refuse writes line to a refused client and closes it. On a plaintext
// service the line goes out at once (a new socket's buffer takes it); on
// an implicit-TLS one only after a handshake, never in plaintext, and only
// while few such handshakes are under way.
func (svc *Service) refuse(c net.Conn, line []byte) {
	if svc.TLS == nil {
		c.SetWriteDeadline(time.Now().Add(refusalTimeout))
		c.Write(line)
		c.Close()
		return
	}
	cfg := svc.TLS()
	if cfg == nil {
		c.Close()
		return
	}
	if svc.refusing.Add(1) > maxTLSRefusals {
		svc.refusing.Add(-1)
		c.Close()
		return
	}
	go func() {
		defer svc.refusing.Add(-1)
		defer c.Close()
		c.SetDeadline(time.Now().Add(refusalTimeout))
		tc := tls.Server(c, cfg)
		if tc.Handshake() == nil {
			tc.Write(line)
			tc.Close()
		}
	}()
}

// RemoteAddr returns a connection's peer address, IPv4 unmapped.
func RemoteAddr(c net.Conn) netip.AddrPort {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

var _ io.ReadWriteCloser = (*Conn)(nil)
