package smtpserver

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"sync"

	"mailroom/internal/listener"
	"mailroom/internal/metrics"
	"mailroom/internal/smtp"
	"mailroom/internal/spool"
)

// session is one SMTP connection.
type session struct {
	srv  *Server
	cfg  *Config
	c    *listener.Conn
	r    *bufio.Reader
	out  []byte
	info SessionInfo
	log  *slog.Logger

	// mu guards idle, which Shutdown reads to interrupt a waiting session.
	mu   sync.Mutex
	idle bool

	env          *Transaction // nil outside a transaction
	bdat         *bdatState
	errors       int
	authFailures int
	accepted     int
	rejected     int
	// refusedRecipients counts RCPT refused by policy (unknown user,
	// relay denied, suppressed), for the session's summary line.
	refusedRecipients int
	quit              bool
	result            string
}

func newSession(srv *Server, cfg *Config, c *listener.Conn) *session {
	var id [6]byte
	rand.Read(id[:])
	s := &session{srv: srv, cfg: cfg, c: c}
	s.info.ID = hex.EncodeToString(id[:])
	s.info.Remote = c.Remote()
	s.info.TLS = c.TLS()
	c.SetSessionLimit(cfg.MaxSessionTime)
	s.r = newReader(c, max(4096, cfg.MaxLineLength+600))
	s.log = srv.log.With("session", s.info.ID)
	return s
}

// errShutdown ends a session that was idle when the server began to stop.
var errShutdown = errors.New("server shutting down")

// readers are the sessions' command readers, reused: one per connection was
// a quarter of the bytes the server allocated under load.
var readers sync.Pool

func newReader(r io.Reader, size int) *bufio.Reader {
	if br, ok := readers.Get().(*bufio.Reader); ok && br.Size() == size {
		br.Reset(r)
		return br
	}
	return bufio.NewReaderSize(r, size)
}

func (s *session) serve() {
	defer func() {
		s.r.Reset(nil)
		readers.Put(s.r)
	}()
	defer s.finish()
	defer s.recoverPanic()
	s.reply(220, "", s.cfg.Hostname+" ESMTP Mailroom ready")
	for !s.quit {
		if s.r.Buffered() == 0 && !s.flush() {
			return
		}
		line, err := s.readCommand()
		if errors.Is(err, errLineTooLong) {
			s.sendReply(smtp.ErrLineTooLong) // read past: still in sync
			continue
		}
		if err != nil {
			s.endOnReadError(err)
			return
		}
		s.handle(line)
		if s.errors >= s.cfg.MaxErrors {
			s.reply(421, "4.7.0", s.cfg.Hostname+" Too many errors in this session, closing connection")
			s.result = "too many errors"
			break
		}
	}
	s.flush()
}

// recoverPanic turns a bug met in one session into a 451 for that client
// and a log line, instead of the end of every session.
func (s *session) recoverPanic() {
	if r := recover(); r != nil {
		s.log.Error("smtp session panic", "panic", r, "stack", string(debug.Stack()))
		s.out = s.out[:0]
		s.reply(451, "4.3.0", "Temporary local problem, closing connection")
		s.flush()
		s.result = "internal error"
	}
}

// finish writes the one log line per session.
func (s *session) finish() {
	if s.bdat != nil {
		s.bdat.spool.Close()
	}
	tlsVersion := ""
	if s.info.TLS != nil {
		tlsVersion = tlsVersionName(s.info.TLS.Version)
	}
	if s.result == "" {
		s.result = "ok"
	}
	user := ""
	if s.info.Auth != nil {
		user = s.info.Auth.User
	}
	// The server's logger, not the session's, which names the user once
	// logged in: the summary names it once, here.
	s.srv.log.Info("smtp session", "session", s.info.ID, "listener", s.info.Mode.String(), "client", s.info.Remote.Addr().String(), "ehlo", s.info.Helo, "tls", tlsVersion, "user", user,
		"accepted", s.accepted, "rejected", s.rejected, "refused_recipients", s.refusedRecipients, "errors", s.errors, "result", s.result)
}

// readCommand reads one command line, marking the session idle meanwhile so
// that Shutdown can interrupt it.
func (s *session) readCommand() ([]byte, error) {
	s.mu.Lock()
	if s.srv.closing.Load() {
		s.mu.Unlock()
		return nil, errShutdown
	}
	s.c.ExpectLine(s.cfg.CommandTimeout)
	s.idle = true
	s.mu.Unlock()
	line, err := s.readLine(s.cfg.MaxLineLength + 500)
	s.mu.Lock()
	s.idle = false
	s.mu.Unlock()
	// Interrupted (the server is stopping), even if a line came in just
	// before: it is not acted on, and the client is told 421 to come back.
	if s.c.Expired() == listener.LimitInterrupted || err != nil && isTimeout(err) && s.srv.closing.Load() {
		return nil, errShutdown
	}
	return line, err
}

// interruptIfIdle makes a session that is waiting for a command give up
// now; one in the middle of a message goes on. It takes only the
// session's lock (see Server.closing).
func (s *session) interruptIfIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.idle {
		s.c.Interrupt()
	}
}

// errLineTooLong is returned by readLine after it skipped to the next LF.
var errLineTooLong = errors.New("line too long")

// readLine reads up to and including LF. A line over limit octets is
// consumed and errLineTooLong returned, so the session stays in sync.
func (s *session) readLine(limit int) ([]byte, error) {
	line, err := s.r.ReadSlice('\n')
	if err == nil && len(line) <= limit {
		return line, nil
	}
	if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, err
	}
	for errors.Is(err, bufio.ErrBufferFull) {
		_, err = s.r.ReadSlice('\n')
	}
	if err != nil {
		return nil, err
	}
	return nil, errLineTooLong
}

// readLongLine is readLine for lines that may be longer than the read
// buffer (SASL responses, RFC 4954 4: up to 12,288 octets), which it
// gathers into a new slice.
func (s *session) readLongLine(limit int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := s.r.ReadSlice('\n')
		if len(line)+len(chunk) > limit {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = s.r.ReadSlice('\n')
			}
			if err != nil {
				return nil, err
			}
			return nil, errLineTooLong
		}
		line = append(line, chunk...)
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, err
		}
	}
}

func (s *session) endOnReadError(err error) {
	switch {
	case errors.Is(err, errShutdown):
		s.reply(421, "4.3.2", s.cfg.Hostname+" Service shutting down, please try again later")
		s.result = "server shutdown"
	case isTimeout(err) && s.c.Expired() == listener.LimitSession:
		s.reply(421, "4.4.2", s.cfg.Hostname+" Session time limit reached, closing connection: connect again to go on")
		s.result = "session time limit"
	case isTimeout(err):
		s.reply(421, "4.4.2", s.cfg.Hostname+" Timeout waiting for a complete command line, closing connection")
		s.result = "timeout"
	case errors.Is(err, io.EOF):
		s.result = "client closed connection"
		return
	default:
		s.result = "read error: " + err.Error()
		return
	}
	s.flush()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

// reply queues a reply; replies go out together when the client has sent
// nothing more (RFC 2920 PIPELINING) or before the session waits for it.
func (s *session) reply(code int, enhanced, text string) {
	s.sendReply(&smtp.Reply{Code: code, Enhanced: enhanced, Text: text})
}

func (s *session) sendReply(r *smtp.Reply) {
	if isProtocolError(r.Code) {
		s.errors++
	}
	if r.Code >= 400 {
		status := r.Enhanced
		if status == "" {
			status = strconv.Itoa(r.Code)
		}
		metrics.Refusals.WithLabelValues(s.info.Mode.String(), metrics.Label(status)).Inc()
	}
	s.out = r.AppendTo(s.out)
}

// isProtocolError reports whether a reply code answers a malformed or
// misplaced command. Only those count toward max_errors: a refused
// recipient (550, 554) is no sign of a broken or hostile client, and a list
// message with many stale addresses must still reach the valid ones.
func isProtocolError(code int) bool {
	switch code {
	case 500, 501, 502, 503, 504, 555:
		return true
	}
	return false
}

// logRefusal logs a sender or recipient the backend refused, with the
// client and the reason: at INFO for a policy refusal (a reply the client
// gets), at ERROR via fail for a failure of ours.
func (s *session) logRefusal(msg string, addr smtp.Address, err error) {
	var r *smtp.Reply
	if errors.As(err, &r) {
		s.log.Info(msg, "client", s.info.Remote.Addr().String(), "address", addr.String(), "code", r.Code, "reason", r.Enhanced+" "+r.Text)
	}
}

// fail sends the reply for err: a *smtp.Reply as it is, anything else as a
// generic temporary failure, logged but not shown to the client.
func (s *session) fail(err error) {
	var r *smtp.Reply
	if errors.As(err, &r) {
		s.sendReply(r)
		return
	}
	s.log.Error("smtp backend failure", "err", err)
	s.reply(451, "4.3.0", "Temporary local problem, please try again later")
}

// flush writes queued replies and reports whether the connection is still good.
func (s *session) flush() bool {
	if len(s.out) == 0 {
		return true
	}
	_, err := s.c.WriteWithin(s.out, s.cfg.CommandTimeout)
	s.out = s.out[:0]
	if err != nil {
		s.result = "write error: " + err.Error()
		return false
	}
	return true
}

// ctx is the context of backend calls: it ends when the server gives up
// waiting for sessions at shutdown.
func (s *session) ctx() context.Context { return s.srv.ctx }

// resetTransaction forgets MAIL, RCPT and any BDAT in progress.
func (s *session) resetTransaction() {
	s.env = nil
	if s.bdat != nil {
		s.bdat.spool.Close()
		s.bdat = nil
	}
}

// bdatState is a BDAT transfer in progress (RFC 3030).
type bdatState struct {
	spool *spool.Spool
	w     *smtp.ChunkWriter
}
