// Package smtpclient speaks SMTP to a next hop for outbound delivery:
// greeting, EHLO (or HELO), opportunistic or required STARTTLS, MAIL and
// RCPT with PIPELINING, DATA with dot-stuffing (or BDAT with CHUNKING), one
// reply per recipient, and connection reuse. It never sends a bare CR or
// LF, and it does not believe replies a server sends ahead of the TLS
// handshake.
package smtpclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailroom/internal/smtp"
)

// Options configure a connection.
type Options struct {
	LocalName  string      // EHLO name (our hostname)
	TLS        *tls.Config // STARTTLS with this when offered; nil: never
	RequireTLS bool        // fail instead of going on in plaintext
	// Timeout bounds each reply (and each write): the whole reply must come
	// within it.
	Timeout time.Duration
	// ReplyGrace is how long a reply that has begun may take before it
	// must keep up 64 octets a second (10 s when zero).
	ReplyGrace time.Duration
	Dialer     *net.Dialer // source address selection (IP pools); nil: default
	// ImplicitTLS starts TLS (with TLS) on connect, before the greeting
	// (RFC 8314, port 465), instead of STARTTLS.
	ImplicitTLS bool
	// Username and Password, when set, authenticate with AUTH PLAIN or
	// LOGIN (RFC 4954) after TLS; the connection fails when the server
	// offers neither or TLS is not up.
	Username, Password string
	// Trace, when set, is called with each command line sent (credentials
	// masked, message data summed up) and each reply line read, as the
	// other side sent it: the caller escapes it before showing it.
	Trace func(sent bool, line string)
}

// Client is one connection to a next hop.
type Client struct {
	conn    net.Conn
	r       *bufio.Reader
	meter   *meter // bounds each reply read through r
	opts    Options
	ext     map[string]string // EHLO keywords, upper case -> parameters
	TLS     *tls.ConnectionState
	Greeter string // first line of the greeting
	// TLSFailed, set by the caller, says why this plaintext connection
	// follows a failed STARTTLS (for the record of the delivery).
	TLSFailed string
}

// Error is a failure with the reply that caused it, if any.
type Error struct {
	Stage string      // connect, greeting, ehlo, starttls, mail, rcpt, data
	Reply *smtp.Reply // nil for network errors
	Err   error
}

func (e *Error) Error() string {
	if e.Reply != nil {
		return fmt.Sprintf("smtp %s: %s", e.Stage, e.Reply.Error())
	}
	return fmt.Sprintf("smtp %s: %v", e.Stage, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether trying again later may succeed: network
// errors and 4xx replies.
func (e *Error) Temporary() bool { return e.Reply == nil || e.Reply.Temporary() }

// ErrHandshake is the failure of a STARTTLS whose TLS handshake failed
// (after the server's 220): what opportunistic TLS may retry in plaintext.
var ErrHandshake = errors.New("TLS handshake failed")

// ErrNoSTARTTLS: TLS is required and the server does not offer STARTTLS.
var ErrNoSTARTTLS = errors.New("the server does not offer STARTTLS and TLS is required")

// ErrInjection is the failure of a STARTTLS whose server sent data ahead of
// the TLS handshake: replies injected to be read as if protected
// (CVE-2011-0411). It is not a handshake failure to retry in plaintext.
var ErrInjection = errors.New("the server sent data ahead of the TLS handshake (reply injection)")

// Dial connects to addr, reads the greeting, says EHLO and starts TLS when
// the server offers it and opts.TLS is set.
func Dial(ctx context.Context, addr string, opts Options) (*Client, error) {
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Minute
	}
	if opts.ReplyGrace == 0 {
		opts.ReplyGrace = 10 * time.Second
	}
	d := opts.Dialer
	if d == nil {
		d = &net.Dialer{Timeout: 30 * time.Second}
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &Error{Stage: "connect", Err: err}
	}
	c := &Client{conn: conn, opts: opts}
	if opts.ImplicitTLS {
		tc := tls.Client(conn, opts.TLS.Clone())
		conn.SetDeadline(time.Now().Add(opts.Timeout))
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, &Error{Stage: "tls", Err: err}
		}
		st := tc.ConnectionState()
		c.conn, c.TLS = tc, &st
	}
	c.r = newReader(c)
	if err := c.start(); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (c *Client) start() error {
	rep, err := c.readLast("greeting")
	if err != nil {
		return err
	}
	if rep.Code != 220 {
		return &Error{Stage: "greeting", Reply: rep}
	}
	c.Greeter = strings.SplitN(rep.Text, "\n", 2)[0]
	if err := c.hello(); err != nil {
		return err
	}
	_, offered := c.ext["STARTTLS"]
	switch {
	case c.TLS != nil:
	case c.opts.TLS != nil && offered:
		if err := c.startTLS(); err != nil {
			return err
		}
	case c.opts.RequireTLS:
		return &Error{Stage: "starttls", Err: ErrNoSTARTTLS}
	}
	if c.opts.Username != "" {
		return c.auth()
	}
	return nil
}

// hello sends EHLO, or HELO to a server that does not know EHLO.
func (c *Client) hello() error {
	rep, err := c.cmd("ehlo", "EHLO "+c.opts.LocalName)
	if err != nil {
		return err
	}
	c.ext = map[string]string{}
	if rep.Code == 250 {
		for _, l := range strings.Split(rep.Text, "\n")[1:] {
			k, v, _ := strings.Cut(l, " ")
			c.ext[strings.ToUpper(k)] = v
		}
		return nil
	}
	if rep, err = c.cmd("helo", "HELO "+c.opts.LocalName); err != nil {
		return err
	}
	if rep.Code != 250 {
		return &Error{Stage: "helo", Reply: rep}
	}
	return nil
}

// startTLS upgrades the connection. Anything the server sent after its
// 220 and before the handshake was not protected: the connection is
// refused rather than trusted (the client side of CVE-2011-0411).
func (c *Client) startTLS() error {
	if err := c.write("starttls", "STARTTLS\r\n"); err != nil {
		return err
	}
	rep, err := c.read("starttls")
	if err != nil {
		return err
	}
	if rep.Code != 220 {
		if c.opts.RequireTLS {
			return &Error{Stage: "starttls", Reply: rep}
		}
		return nil // opportunistic: go on in plaintext
	}
	if c.r.Buffered() > 0 {
		return &Error{Stage: "starttls", Err: ErrInjection}
	}
	cfg := c.opts.TLS.Clone()
	tc := tls.Client(c.conn, cfg)
	c.conn.SetDeadline(time.Now().Add(c.opts.Timeout))
	if err := tc.Handshake(); err != nil {
		return &Error{Stage: "starttls", Err: fmt.Errorf("%w: %w", ErrHandshake, err)}
	}
	st := tc.ConnectionState()
	c.conn, c.TLS = tc, &st
	c.r = newReader(c) // reads through the TLS connection now
	return c.hello()
}

// Extensions returns the EHLO keywords offered, each with its parameters,
// sorted.
func (c *Client) Extensions() []string {
	var out []string
	for k, v := range c.ext {
		out = append(out, strings.TrimSpace(k+" "+v))
	}
	slices.Sort(out)
	return out
}

// Extension returns the parameters of an EHLO keyword and whether it was offered.
func (c *Client) Extension(name string) (string, bool) {
	v, ok := c.ext[strings.ToUpper(name)]
	return v, ok
}

// cmd sends one command and reads its reply.
func (c *Client) cmd(stage, line string) (*smtp.Reply, error) {
	if err := c.write(stage, line+"\r\n"); err != nil {
		return nil, err
	}
	return c.readLast(stage)
}

// readLast reads the one reply outstanding. A server that sends more than
// was asked for is out of step (or injecting replies, say ahead of
// STARTTLS): believing the extra line would pair every later reply with
// the wrong command, so the connection is given up.
func (c *Client) readLast(stage string) (*smtp.Reply, error) {
	rep, err := c.read(stage)
	if err == nil && c.r.Buffered() > 0 {
		extra, _ := c.r.Peek(min(c.r.Buffered(), 64))
		return nil, &Error{Stage: stage, Err: fmt.Errorf("the server sent more than one reply (%q follows %d); it is out of step or injecting replies", extra, rep.Code)}
	}
	return rep, err
}

func (c *Client) write(stage, s string) error {
	if c.opts.Trace != nil {
		for _, l := range strings.Split(strings.TrimSuffix(s, "\r\n"), "\r\n") {
			if stage == "auth" {
				if mech, _, ok := strings.Cut(l, " "); ok && strings.EqualFold(mech, "AUTH") {
					f := strings.Fields(l)
					l = strings.Join(f[:min(len(f), 2)], " ")
					if len(f) > 2 {
						l += " ****"
					}
				} else if l != "*" {
					l = "****"
				}
			}
			c.opts.Trace(true, l)
		}
	}
	c.conn.SetWriteDeadline(time.Now().Add(c.opts.Timeout))
	if _, err := io.WriteString(c.conn, s); err != nil {
		return &Error{Stage: stage, Err: err}
	}
	return nil
}

// isEnhanced reports whether s looks like an enhanced status code whose
// class matches the reply code (RFC 3463 2).
func isEnhanced(s string, code int) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] != strconv.Itoa(code/100) {
		return false
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 999 {
			return false
		}
	}
	return true
}

// Close ends the connection politely, waiting at most 10 seconds for
// the reply to QUIT.
func (c *Client) Close() error {
	c.opts.Timeout = min(c.opts.Timeout, 10*time.Second)
	c.cmd("quit", "QUIT")
	return c.conn.Close()
}
