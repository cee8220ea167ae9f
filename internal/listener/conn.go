package listener

import (
	"crypto/tls"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// Limit names the bound a read ran into when it timed out.
type Limit int

const (
	// LimitWait: the client sent nothing, or not a whole line, in time.
	LimitWait Limit = iota + 1
	// LimitRate: message data came slower than the minimum rate.
	LimitRate
	// LimitSession: the session reached its time cap.
	LimitSession
	// LimitInterrupted: the server interrupted the read (shutdown).
	LimitInterrupted
)

// Conn is one admitted connection. Reads are bounded by the deadline the
// protocol asked for last (ExpectLine or ExpectData) and by the session's
// cap; only Interrupt and Close may be called from another goroutine.
type Conn struct {
	raw              net.Conn // the TCP connection
	conn             net.Conn // raw, or TLS over it
	remote           netip.AddrPort
	client           netip.Prefix
	tlsState         *tls.ConnectionState
	handshakeTimeout time.Duration
	sessionEnd       time.Time

	line      time.Time // the current line's deadline, in line mode
	dataIdle  time.Duration
	dataRate  int64 // octets per second; 0 for none
	dataStart time.Time
	dataRead  int64
	set       time.Time // the read deadline set last
	cause     Limit     // the bound behind it

	interrupted atomic.Bool
}

var pastDeadline = time.Unix(1, 0)

func newConn(c net.Conn, l Limits) *Conn {
	remote := RemoteAddr(c)
	p := l.Prefixes
	if p == (Prefixes{}) {
		p = DefaultPrefixes
	}
	return &Conn{raw: c, conn: c, remote: remote, client: p.Client(remote.Addr()), handshakeTimeout: l.HandshakeTimeout}
}

// NewConn wraps a connection that did not come through a Service (tests,
// fuzzing): no session cap, handshakes bounded by handshakeTimeout.
func NewConn(c net.Conn, handshakeTimeout time.Duration) *Conn {
	return newConn(c, Limits{HandshakeTimeout: handshakeTimeout})
}

// Remote is the client's address and port.
func (c *Conn) Remote() netip.AddrPort { return c.remote }

// Client is the client's address prefix, the unit limits count by.
func (c *Conn) Client() netip.Prefix { return c.client }

// TLS is the connection's TLS state, or nil before TLS.
func (c *Conn) TLS() *tls.ConnectionState { return c.tlsState }

// SetSessionLimit caps the whole session at d from now (0: no cap).
func (c *Conn) SetSessionLimit(d time.Duration) {
	c.sessionEnd = time.Time{}
	if d > 0 {
		c.sessionEnd = time.Now().Add(d)
	}
}

// ExpectLine bounds the wait for the next command line: all of it must
// arrive within timeout from now, however it is trickled.
func (c *Conn) ExpectLine(timeout time.Duration) {
	c.dataRate, c.dataIdle = 0, 0
	c.line = time.Now().Add(timeout)
}

// ExpectData bounds a transfer of message data: each read may wait up to
// idle, and from the start the data must keep up rate octets per second on
// average after a grace of idle (rate 0: no minimum). A large message at
// any real speed arrives; one trickled byte by byte does not.
func (c *Conn) ExpectData(idle time.Duration, rate int64) {
	c.dataIdle, c.dataRate = idle, rate
	c.dataStart, c.dataRead = time.Now(), 0
}

// Read reads within the current bounds.
func (c *Conn) Read(p []byte) (int, error) {
	deadline, cause := c.line, LimitWait
	if c.dataIdle > 0 {
		now := time.Now()
		deadline = now.Add(c.dataIdle)
		if c.dataRate > 0 {
			// Nanoseconds the data read so far has earned, in two steps so
			// that a large count cannot overflow.
			earned := time.Duration(c.dataRead/c.dataRate)*time.Second + time.Duration(c.dataRead%c.dataRate)*time.Second/time.Duration(c.dataRate)
			if d := c.dataStart.Add(c.dataIdle + earned); d.Before(deadline) {
				deadline, cause = d, LimitRate
			}
		}
	}
	if !c.sessionEnd.IsZero() && c.sessionEnd.Before(deadline) {
		deadline, cause = c.sessionEnd, LimitSession
	}
	if !deadline.Equal(c.set) {
		c.conn.SetReadDeadline(deadline)
		c.set, c.cause = deadline, cause
	}
	// Checked after the deadline is set: an interrupt that came in between
	// must not be overwritten.
	if c.interrupted.Load() {
		c.raw.SetReadDeadline(pastDeadline)
		c.set, c.cause = pastDeadline, LimitInterrupted
	}
	n, err := c.conn.Read(p)
	c.dataRead += int64(n)
	return n, err
}

// Expired says which bound the last timed-out read ran into.
func (c *Conn) Expired() Limit {
	if c.interrupted.Load() {
		return LimitInterrupted
	}
	return c.cause
}

// Write writes p within the last write deadline.
func (c *Conn) Write(p []byte) (int, error) { return c.conn.Write(p) }

// WriteWithin writes p, giving up after timeout.
func (c *Conn) WriteWithin(p []byte, timeout time.Duration) (int, error) {
	c.conn.SetWriteDeadline(time.Now().Add(timeout))
	return c.conn.Write(p)
}

// Interrupt makes the current and every later read fail at once.
func (c *Conn) Interrupt() {
	c.interrupted.Store(true)
	c.raw.SetReadDeadline(pastDeadline)
}

// Close closes the connection (the TLS layer first, if any).
func (c *Conn) Close() error {
	if c.conn != c.raw {
		c.conn.Close()
	}
	return c.raw.Close()
}

// CloseRaw closes the TCP connection under any TLS layer at once; safe from
// another goroutine (a shutdown past its deadline).
func (c *Conn) CloseRaw() error { return c.raw.Close() }

// StartTLS runs a TLS handshake as the server (STARTTLS) within the
// handshake timeout and the session's cap; reads then go through TLS.
func (c *Conn) StartTLS(cfg *tls.Config) error {
	return c.handshake(cfg)
}

func (c *Conn) handshake(cfg *tls.Config) error {
	tc := tls.Server(c.conn, cfg)
	deadline := time.Now().Add(c.handshakeTimeout)
	if c.handshakeTimeout <= 0 {
		deadline = time.Now().Add(30 * time.Second)
	}
	if !c.sessionEnd.IsZero() && c.sessionEnd.Before(deadline) {
		deadline = c.sessionEnd
	}
	c.raw.SetDeadline(deadline)
	err := tc.Handshake()
	c.raw.SetDeadline(time.Time{})
	c.set = time.Time{}
	if err != nil {
		return err
	}
	st := tc.ConnectionState()
	c.tlsState = &st
	c.conn = tc
	return nil
}
