package imapserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"mailroom/internal/imapwire"
	"mailroom/internal/listener"
	"mailroom/internal/store"
)

// session is one IMAP connection.
type session struct {
	srv *Server
	cfg *Config
	c   *listener.Conn
	r   *bufio.Reader
	w   *bufio.Writer
	dec *imapwire.Decoder
	log *slog.Logger

	user   store.User // set once logged in
	authed bool
	sel    *selected // the selected mailbox, or nil

	// utf8 is UTF8=ACCEPT, enabled by the client (RFC 6855, RFC 5161);
	// condstore and qresync are RFC 7162's, enabled by ENABLE or by a
	// command that uses them.
	utf8, condstore, qresync bool
	// rev2 is IMAP4rev2 (RFC 9051), enabled by the client: no \Recent,
	// ESEARCH for every SEARCH, UTF-8 mailbox names, LIST in SELECT.
	rev2 bool
	// compressed: COMPRESS DEFLATE is on (RFC 4978).
	compressed bool

	tag          string // of the command running
	code         string // response code for the command's OK, "[...]" included
	quit         bool
	stopping     atomic.Bool
	authFailures int
	started      time.Time
	commands     int

	// Buffers FETCH reuses from message to message: a response and the
	// header fields it copies (dropped after a FETCH when they grew large).
	line, scratch []byte
}

// maxAuthFailures ends a session after that many failed logins.
const maxAuthFailures = 3

func newSession(srv *Server, cfg *Config, c *listener.Conn) *session {
	r := bufio.NewReaderSize(c, 4<<10)
	s := &session{srv: srv, cfg: cfg, c: c, r: r, w: bufio.NewWriterSize(c, 4<<10), started: time.Now(),
		log: srv.log.With("proto", "imap", "client", c.Remote().String())}
	s.dec = imapwire.NewDecoder(r, cfg.SpoolDir, wireLimits(cfg))
	s.dec.OnLiteral = func(size int64, sync bool) error {
		if sync {
			s.w.WriteString("+ Ready for literal data\r\n")
			if err := s.w.Flush(); err != nil {
				return err
			}
		}
		s.c.ExpectData(2*time.Minute, 1024)
		return nil
	}
	s.dec.OnLine = func() { s.c.ExpectLine(s.timeout()) }
	return s
}

func (s *session) ctx() context.Context { return s.srv.ctx }

// timeout is how long the client may take to send its next command line.
func (s *session) timeout() time.Duration {
	if s.authed {
		return s.cfg.IdleTimeout
	}
	return s.cfg.LoginTimeout
}

// stop ends the session at its next command (Shutdown).
func (s *session) stop() {
	s.stopping.Store(true)
	s.c.Interrupt()
}

// serve runs the session until LOGOUT, an error or a shutdown.
func (s *session) serve() {
	defer func() {
		s.w.Flush()
		s.log.Info("imap session", "commands", s.commands, "compressed", s.compressed, "duration", time.Since(s.started).Round(time.Millisecond).String())
	}()
	if s.cfg.MaxSessionTime > 0 {
		s.c.SetSessionLimit(s.cfg.MaxSessionTime)
	}
	s.untagged("OK [CAPABILITY %s] %s Mailroom IMAP ready", s.capabilities(), s.cfg.Hostname)
	for !s.quit {
		if s.r.Buffered() == 0 {
			if err := s.w.Flush(); err != nil {
				return
			}
		}
		s.c.ExpectLine(s.timeout())
		cmd, err := s.dec.ReadCommand()
		if err != nil {
			s.readFailed(err)
			continue
		}
		s.commands++
		s.run(cmd)
		cmd.Close()
	}
}

// readFailed answers a command that could not be read, or ends the
// session.
func (s *session) readFailed(err error) {
	var pe *imapwire.ProtocolError
	var fe *imapwire.FatalError
	switch {
	case s.stopping.Load():
		s.untagged("BYE [UNAVAILABLE] Server shutting down, try again later")
		s.quit = true
	case errors.As(err, &pe) && pe.TooBig:
		s.tagged(pe.Tag, "NO [TOOBIG] "+pe.Text)
	case errors.As(err, &pe) && pe.Tag != "":
		s.tagged(pe.Tag, "BAD "+pe.Text)
	case errors.As(err, &pe):
		s.untagged("BAD %s", pe.Text)
	case errors.Is(err, imapwire.ErrTooLong):
		s.untagged("BYE [LIMIT] Command line too long")
		s.quit = true
	case errors.As(err, &fe):
		s.untagged("BYE [LIMIT] %s", fe.Text)
		s.quit = true
	case errors.Is(err, os.ErrDeadlineExceeded) || s.c.Expired() != 0:
		s.untagged("BYE Autologout: %s", expiredText(s.c.Expired()))
		s.quit = true
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		s.quit = true
	default:
		s.quit = true
	}
}

func expiredText(l listener.Limit) string {
	switch l {
	case listener.LimitSession:
		return "session time limit reached"
	case listener.LimitRate:
		return "data sent too slowly"
	}
	return "idle for too long"
}

// respError is a command's failure: NO or BAD, with a response code.
type respError struct {
	kind string // "NO" or "BAD"
	code string // "[...]" or ""
	text string
}

func (e *respError) Error() string { return e.kind + " " + e.text }

func no(code, format string, args ...any) error {
	return &respError{kind: "NO", code: code, text: fmt.Sprintf(format, args...)}
}

func bad(format string, args ...any) error {
	return &respError{kind: "BAD", text: fmt.Sprintf(format, args...)}
}

// run runs one command and writes its tagged response.
func (s *session) run(cmd *imapwire.Command) {
	s.tag, s.code = cmd.Tag, ""
	c, ok := commands[cmd.Name]
	var err error
	switch {
	case !ok:
		err = bad("Unknown command %s", clipName(cmd.Name))
	case c.states&s.state() == 0:
		err = bad("%s is not allowed %s", cmd.Name, s.stateText())
	default:
		err = c.run(s, cmd.Name, cmd.Parser())
	}
	if s.sel != nil && !s.quit && s.sel.changed(!c.noExpunge) {
		// RFC 9051 7.5.1: no EXPUNGE while answering FETCH, STORE or
		// SEARCH by message number.
		s.sync(!c.noExpunge)
	}
	s.finish(cmd.Name, err)
}

// finish writes the tagged response of the command.
func (s *session) finish(name string, err error) {
	var re *respError
	var pe *imapwire.ParseError
	var qe *store.QuotaError
	switch {
	case err == nil:
		code := s.code
		if code != "" {
			code += " "
		}
		s.tagged(s.tag, "OK "+code+name+" completed")
	case errors.As(err, &re):
		code := re.code
		if code != "" {
			code += " "
		}
		s.tagged(s.tag, re.kind+" "+code+re.text)
	case errors.As(err, &pe):
		s.tagged(s.tag, "BAD "+pe.Text)
	case errors.As(err, &qe):
		s.tagged(s.tag, fmt.Sprintf("NO [OVERQUOTA] The mailbox is full: %d of %d octets used", qe.Used, qe.Quota))
	case errors.Is(err, store.ErrNotFound):
		s.tagged(s.tag, "NO [NONEXISTENT] No such mailbox")
	case errors.Is(err, store.ErrExists):
		s.tagged(s.tag, "NO [ALREADYEXISTS] A mailbox of that name exists")
	case errors.Is(err, errSilent):
	case errors.Is(err, errConnection):
		s.quit = true
	default:
		s.log.Error("imap command failed", "command", name, "err", err)
		s.tagged(s.tag, "NO [UNAVAILABLE] The mail store failed; try again")
	}
}

func clipName(n string) string {
	if len(n) > 20 {
		n = n[:20] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return '?'
		}
		return r
	}, n)
}

// Session states as a bit mask (RFC 9051 3).
const (
	stateNotAuth = 1 << iota
	stateAuth
	stateSelected
	stateAny = stateNotAuth | stateAuth | stateSelected
	stateIn  = stateAuth | stateSelected
)

func (s *session) state() int {
	switch {
	case !s.authed:
		return stateNotAuth
	case s.sel == nil:
		return stateAuth
	}
	return stateSelected
}

func (s *session) stateText() string {
	switch s.state() {
	case stateNotAuth:
		return "before logging in"
	case stateAuth:
		return "without a selected mailbox"
	}
	return "with a mailbox selected"
}

// command is one command of the table.
type command struct {
	states    int
	run       func(s *session, name string, p *imapwire.Parser) error
	noExpunge bool // FETCH, STORE, SEARCH by message number
}

// commands is filled by each command group's init.
var commands = map[string]command{}

// untagged writes "* " and the formatted line.
func (s *session) untagged(format string, args ...any) {
	s.w.WriteString("* ")
	if len(args) == 0 {
		s.w.WriteString(format)
	} else {
		fmt.Fprintf(s.w, format, args...)
	}
	s.w.WriteString("\r\n")
}

// tagged writes a tagged response line.
func (s *session) tagged(tag, text string) {
	s.w.WriteString(tag)
	s.w.WriteByte(' ')
	s.w.WriteString(text)
	s.w.WriteString("\r\n")
}

// errConnection stops a command whose connection failed.
var errConnection = errors.New("connection failed")

// flush sends what is buffered; false when the connection failed.
func (s *session) flush() bool { return s.w.Flush() == nil }
