package pop3server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"mailroom/internal/auth"
	"mailroom/internal/listener"
	"mailroom/internal/store"
)

// maxLine is the longest command line taken: RFC 2449 allows 255 octets,
// but SASL responses (SCRAM) are longer.
const maxLine = 8 << 10

// maxAuthFailures ends a session after that many failed logins.
const maxAuthFailures = 3

// message is one message of the maildrop, as numbered at login.
type message struct {
	uid     uint32
	size    int64
	deleted bool
	read    bool // sent whole (RETR): \Seen when the session ends
}

// session is one POP3 connection.
type session struct {
	srv *Server
	cfg *Config
	c   *listener.Conn
	r   *bufio.Reader
	w   *bufio.Writer
	log *slog.Logger

	user         store.User
	authed       bool
	pendingUser  string // USER given, PASS awaited
	msgs         []message
	uidValidity  uint32
	quit         bool
	stopping     atomic.Bool
	authFailures int
	started      time.Time
	commands     int

	// What RETR reuses from message to message: the reader that splits a
	// message into lines; and the messages read ahead for RETR commands
	// the client has sent already (PIPELINING), by UID.
	lines *bufio.Reader
	ahead map[uint32][]byte
}

// readWhole is the largest message RETR reads into memory before sending
// it (larger ones stream from the store); readAhead bounds the octets of
// the messages read ahead for pipelined RETR commands.
const (
	readWhole = 1 << 20
	readAhead = 4 << 20
)

func newSession(srv *Server, cfg *Config, c *listener.Conn) *session {
	return &session{srv: srv, cfg: cfg, c: c, r: bufio.NewReaderSize(c, 4096), w: bufio.NewWriterSize(c, 32<<10),
		started: time.Now(), log: srv.log.With("proto", "pop3", "client", c.Remote().String())}
}

func (s *session) stop() {
	s.stopping.Store(true)
	s.c.Interrupt()
}

func (s *session) client() auth.Client {
	return auth.Client{Addr: s.c.Remote().Addr(), Prefix: s.c.Client(), TLS: s.c.TLS(), Protocol: "pop3"}
}

// ok and fail write a status line.
func (s *session) ok(format string, args ...any) {
	s.w.WriteString("+OK ")
	fmt.Fprintf(s.w, format, args...)
	s.w.WriteString("\r\n")
}

func (s *session) fail(format string, args ...any) {
	s.w.WriteString("-ERR ")
	fmt.Fprintf(s.w, format, args...)
	s.w.WriteString("\r\n")
}

// readLine reads one line without its line ending, within maxLine.
func (s *session) readLine() (string, error) {
	var line []byte
	for {
		frag, err := s.r.ReadSlice('\n')
		if len(line)+len(frag) > maxLine {
			return "", errTooLong
		}
		line = append(line, frag...)
		if err == nil {
			return strings.TrimRight(string(line), "\r\n"), nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
}

var errTooLong = errors.New("line too long")

// serve runs the session until QUIT, an error or a shutdown.
func (s *session) serve() {
	defer func() {
		s.w.Flush()
		s.release()
		s.log.Info("pop3 session", "user", s.user.Address, "commands", s.commands, "duration", time.Since(s.started).Round(time.Millisecond).String())
	}()
	s.ok("%s Mailroom POP3 ready", s.cfg.Hostname)
	for !s.quit {
		if s.r.Buffered() == 0 {
			if s.w.Flush() != nil {
				return
			}
		}
		s.c.ExpectLine(s.cfg.IdleTimeout)
		line, err := s.readLine()
		switch {
		case errors.Is(err, errTooLong):
			s.fail("Command line too long")
			return
		case err != nil && s.stopping.Load():
			s.fail("[SYS/TEMP] Server shutting down, try again later")
			return
		case err != nil && s.c.Expired() != 0:
			s.fail("Autologout: idle for too long")
			return
		case err != nil:
			return
		}
		s.commands++
		s.run(line)
	}
}

// run runs one command line.
func (s *session) run(line string) {
	verb, arg, _ := strings.Cut(line, " ")
	verb = strings.ToUpper(verb)
	if !s.authed {
		switch verb {
		case "CAPA":
			s.capa()
		case "QUIT":
			s.ok("%s Mailroom POP3 closing", s.cfg.Hostname)
			s.quit = true
		case "STLS":
			s.stls()
		case "USER":
			s.userCmd(arg)
		case "PASS":
			s.pass(arg)
		case "AUTH":
			s.authCmd(arg)
		case "NOOP":
			s.ok("")
		default:
			s.fail("%s is not allowed before logging in: USER and PASS, or AUTH", sanitize(verb))
		}
		return
	}
	switch verb {
	case "CAPA":
		s.capa()
	case "STAT":
		n, size := s.count()
		s.ok("%d %d", n, size)
	case "LIST":
		s.list(arg, false)
	case "UIDL":
		s.list(arg, true)
	case "RETR":
		s.retr(arg, -1)
	case "TOP":
		num, lines, _ := strings.Cut(arg, " ")
		n, err := strconv.Atoi(lines)
		if err != nil || n < 0 {
			s.fail("TOP needs a message number and a number of lines")
			return
		}
		s.retr(num, n)
	case "DELE":
		if m := s.message(arg); m != nil {
			m.deleted = true
			s.ok("Message deleted at QUIT")
		}
	case "RSET":
		for i := range s.msgs {
			s.msgs[i].deleted = false
		}
		n, size := s.count()
		s.ok("%d messages (%d octets)", n, size)
	case "NOOP":
		s.ok("")
	case "QUIT":
		s.update()
	case "USER", "PASS", "AUTH", "STLS":
		s.fail("Already logged in")
	default:
		s.fail("Unknown command %s", sanitize(verb))
	}
}

func sanitize(s string) string {
	if len(s) > 20 {
		s = s[:20] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return '?'
		}
		return r
	}, s)
}

// capa lists the capabilities (RFC 2449 5): USER and the SASL mechanisms
// only over TLS.
func (s *session) capa() {
	s.ok("Capability list follows")
	caps := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER", "LOGIN-DELAY 0", "IMPLEMENTATION Mailroom"}
	if s.c.TLS() != nil {
		caps = append(caps, "USER", "SASL "+strings.Join(auth.Mechanisms(s.client(), auth.Options{Hostname: s.cfg.Hostname}), " "))
	} else if s.cfg.TLS != nil && !s.authed {
		caps = append(caps, "STLS")
	}
	for _, c := range caps {
		s.w.WriteString(c + "\r\n")
	}
	s.w.WriteString(".\r\n")
}

func (s *session) stls() {
	switch {
	case s.c.TLS() != nil:
		s.fail("TLS is already active")
		return
	case s.cfg.TLS == nil:
		s.fail("TLS is not available: this server has no certificate")
		return
	case s.r.Buffered() > 0:
		s.fail("Commands were pipelined after STLS: send nothing until its response")
		return
	}
	s.ok("Begin TLS negotiation now")
	if s.w.Flush() != nil {
		s.quit = true
		return
	}
	if err := s.c.StartTLS(s.cfg.TLS); err != nil {
		s.log.Info("pop3 STLS handshake failed", "err", err)
		s.quit = true
	}
}

func (s *session) userCmd(arg string) {
	if s.c.TLS() == nil {
		s.fail("[AUTH] Log in over TLS: use STLS first, or port 995")
		return
	}
	if arg == "" {
		s.fail("USER needs a name")
		return
	}
	s.pendingUser = arg
	s.ok("Send PASS")
}

func (s *session) pass(arg string) {
	if s.pendingUser == "" {
		s.fail("Send USER first")
		return
	}
	user := s.pendingUser
	s.pendingUser = ""
	login, err := s.srv.auth.Password(s.srv.ctx, s.client(), user, arg)
	s.loggedIn(login, err)
}

func (s *session) authCmd(arg string) {
	if s.c.TLS() == nil {
		s.fail("[AUTH] Log in over TLS: use STLS first, or port 995")
		return
	}
	mech, initialText, hasInitial := strings.Cut(arg, " ")
	if mech == "" {
		// RFC 5034 4: AUTH alone lists the mechanisms.
		s.ok("")
		for _, m := range auth.Mechanisms(s.client(), auth.Options{Hostname: s.cfg.Hostname}) {
			s.w.WriteString(m + "\r\n")
		}
		s.w.WriteString(".\r\n")
		return
	}
	var initial []byte
	if hasInitial {
		var err error
		if initial, err = decodeSASL(initialText); err != nil {
			s.loggedIn("", err)
			return
		}
	}
	login, err := s.srv.auth.Authenticate(s.srv.ctx, s.client(), strings.ToUpper(mech), initial, hasInitial, auth.Options{Hostname: s.cfg.Hostname}, s.ask)
	s.loggedIn(login, err)
}

// ask sends a SASL challenge ("+ " and base64) and reads the response.
func (s *session) ask(challenge []byte) ([]byte, error) {
	s.w.WriteString("+ " + base64.StdEncoding.EncodeToString(challenge) + "\r\n")
	if s.w.Flush() != nil {
		return nil, errConnection
	}
	s.c.ExpectLine(time.Minute)
	line, err := s.readLine()
	if err != nil {
		return nil, errConnection
	}
	return decodeSASL(line)
}

var (
	errConnection = errors.New("connection failed")
	errBadBase64  = errors.New("invalid base64 in the authentication exchange")
)

func decodeSASL(line string) ([]byte, error) {
	switch line {
	case "*":
		return nil, auth.ErrCancelled
	case "=":
		return []byte{}, nil
	}
	b, err := base64.StdEncoding.DecodeString(line)
	if err != nil {
		return nil, errBadBase64
	}
	return b, nil
}

// loggedIn turns a login's result into the session's state and reply
// (RFC 2449 and RFC 3206 response codes).
func (s *session) loggedIn(login string, err error) {
	var limited *auth.LimitedError
	switch {
	case err == nil:
	case errors.Is(err, errConnection):
		s.quit = true
		return
	case errors.As(err, &limited) && limited.Banned:
		s.fail("[SYS/TEMP] Too many failed logins from your address: try again in %d minutes", int(limited.RetryAfter.Minutes())+1)
		s.quit = true
		return
	case errors.As(err, &limited):
		s.fail("[SYS/TEMP] Too many failed logins: try again later")
		return
	case errors.Is(err, auth.ErrBadCredentials), errors.Is(err, auth.ErrTooWeak):
		s.fail("[AUTH] Authentication failed")
		if s.authFailures++; s.authFailures >= maxAuthFailures {
			s.quit = true
		}
		return
	case errors.Is(err, auth.ErrCancelled):
		s.fail("Authentication cancelled")
		return
	case errors.Is(err, errBadBase64), errors.Is(err, auth.ErrMalformed), errors.Is(err, auth.ErrUnknownMechanism), errors.Is(err, auth.ErrNeedsTLS13):
		s.fail("%s", err.Error())
		return
	default:
		s.log.Error("pop3 login failed on our side", "err", err)
		s.fail("[SYS/TEMP] Temporary authentication failure, try again later")
		return
	}
	u, err := s.srv.store.User(s.srv.ctx, login)
	if err != nil {
		s.log.Error("pop3 login: reading the user", "user", login, "err", err)
		s.fail("[SYS/TEMP] Temporary failure, try again later")
		return
	}
	if !s.srv.lock(u.ID) {
		s.fail("[IN-USE] Your maildrop is in use by another POP3 session; try again when it ends")
		return
	}
	s.user, s.authed = u, true
	s.log = s.log.With("user", login)
	if err := s.load(); err != nil {
		s.log.Error("pop3: reading the maildrop", "err", err)
		s.fail("[SYS/TEMP] The mail store failed; try again")
		s.srv.unlock(u.ID)
		s.authed = false
		s.quit = true
		return
	}
	n, size := s.count()
	s.ok("Logged in: %d messages (%d octets)", n, size)
}

// load reads INBOX as it is now: the maildrop of the session.
func (s *session) load() error {
	st, err := s.srv.store.MailboxState(s.srv.ctx, s.user.ID, store.Inbox)
	if err != nil {
		return err
	}
	s.uidValidity = st.UIDValidity
	uids := make([]uint32, len(st.States))
	for i, m := range st.States {
		uids[i] = m.UID
	}
	return s.srv.store.Summaries(s.srv.ctx, s.user.ID, store.Inbox, uids, func(mi store.MessageInfo) error {
		s.msgs = append(s.msgs, message{uid: mi.UID, size: mi.Size})
		return nil
	})
}

// count is the number and size of the messages not deleted.
func (s *session) count() (int, int64) {
	n, size := 0, int64(0)
	for _, m := range s.msgs {
		if !m.deleted {
			n, size = n+1, size+m.size
		}
	}
	return n, size
}

// message finds a message by its number, answering -ERR when there is none.
func (s *session) message(arg string) *message {
	m, why := s.numbered(arg)
	if m == nil {
		s.fail("%s", why)
	}
	return m
}

// numbered returns the message a number names, or why there is none.
func (s *session) numbered(arg string) (*message, string) {
	n, err := strconv.Atoi(strings.TrimSpace(arg))
	if err != nil || n < 1 || n > len(s.msgs) {
		return nil, "No such message"
	}
	if s.msgs[n-1].deleted {
		return nil, fmt.Sprintf("Message %d is deleted", n)
	}
	return &s.msgs[n-1], ""
}

// uidl is a message's unique id: stable across sessions and restarts
// while INBOX keeps its UIDVALIDITY.
func (s *session) uidl(m message) string {
	return fmt.Sprintf("%d.%d", s.uidValidity, m.uid)
}

// list answers LIST and UIDL, for one message or all.
func (s *session) list(arg string, uidl bool) {
	show := func(i int, m message) string {
		if uidl {
			return fmt.Sprintf("%d %s", i+1, s.uidl(m))
		}
		return fmt.Sprintf("%d %d", i+1, m.size)
	}
	if arg != "" {
		if m := s.message(arg); m != nil {
			n, _ := strconv.Atoi(strings.TrimSpace(arg))
			s.ok("%s", show(n-1, *m))
		}
		return
	}
	n, size := s.count()
	s.ok("%d messages (%d octets)", n, size)
	for i, m := range s.msgs {
		if !m.deleted {
			s.w.WriteString(show(i, m) + "\r\n")
		}
	}
	s.w.WriteString(".\r\n")
}

// retr sends a message dot-stuffed (RFC 1939 3), or its header and its
// first lines of body with TOP (lines >= 0).
func (s *session) retr(arg string, lines int) {
	m := s.message(arg)
	if m == nil {
		return
	}
	rc, err := s.open(m)
	if err != nil {
		s.fail("[SYS/TEMP] The message is no longer there (removed by another client?)")
		return
	}
	defer rc.Close()
	s.ok("%d octets", m.size)
	if s.lines == nil {
		s.lines = bufio.NewReaderSize(rc, 32<<10)
	} else {
		s.lines.Reset(rc)
	}
	br := s.lines
	inBody, bodyLines := false, 0
	var last []byte
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if lines >= 0 && inBody {
				if bodyLines >= lines {
					break
				}
				bodyLines++
			}
			if !inBody && len(bytes.TrimRight(line, "\r\n")) == 0 {
				inBody = true
			}
			if len(last) == 0 || last[len(last)-1] == '\n' {
				if line[0] == '.' {
					s.w.WriteByte('.')
				}
			}
			s.w.Write(line)
			last = append(last[:0], line[len(line)-1])
		}
		if err == io.EOF {
			break
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			s.log.Warn("pop3: reading a message", "err", err)
			s.quit = true
			return
		}
	}
	if len(last) > 0 && last[0] != '\n' {
		s.w.WriteString("\r\n")
	}
	s.w.WriteString(".\r\n")
	if lines < 0 {
		m.read = true
	}
}

// open returns a message to send: read whole when small (one light
// query, and no read of the store held while the client takes it), else
// streamed from the store. Reading it, it reads ahead the small messages
// of the RETR commands waiting in the input, in the same query: a client
// that pipelines the RETR of a whole maildrop (fetchmail) costs a query
// per some hundred messages, not one each.
func (s *session) open(m *message) (io.ReadCloser, error) {
	if b, ok := s.ahead[m.uid]; ok {
		delete(s.ahead, m.uid)
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	if m.size > readWhole {
		rc, _, err := s.srv.store.OpenMessage(s.srv.ctx, s.user.ID, store.Inbox, m.uid)
		return rc, err
	}
	uids := s.pipelinedRetr(m)
	clear(s.ahead)
	if s.ahead == nil {
		s.ahead = map[uint32][]byte{}
	}
	err := s.srv.store.ReadMessages(s.srv.ctx, s.user.ID, store.Inbox, uids, func(uid uint32, r io.Reader) error {
		b, err := io.ReadAll(io.LimitReader(r, readWhole+1))
		s.ahead[uid] = b
		return err
	})
	b, ok := s.ahead[m.uid]
	delete(s.ahead, m.uid)
	if err == nil && !ok {
		err = store.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(b)), err
}

// pipelinedRetr returns m's UID and those of the small messages named by
// the RETR commands already in the input, up to readAhead octets.
func (s *session) pipelinedRetr(m *message) []uint32 {
	uids := []uint32{m.uid}
	total := m.size
	buffered, _ := s.r.Peek(s.r.Buffered())
	for line := range bytes.Lines(buffered) {
		cmd, arg, _ := strings.Cut(strings.TrimSpace(string(line)), " ")
		if !strings.EqualFold(cmd, "RETR") {
			continue
		}
		next, _ := s.numbered(arg)
		if next == nil {
			continue
		}
		if next.size > readWhole || total+next.size > readAhead {
			break
		}
		uids = append(uids, next.uid)
		total += next.size
	}
	return uids
}

// markSeen sets \Seen on the messages sent whole, for IMAP clients of the
// same mailbox: in one write as the session ends (with QUIT or not), not
// one a message (as Dovecot, whose POP3 commits its flags at the end).
func (s *session) markSeen() {
	var uids []uint32
	for i := range s.msgs {
		if s.msgs[i].read {
			uids = append(uids, s.msgs[i].uid)
			s.msgs[i].read = false
		}
	}
	if len(uids) == 0 {
		return
	}
	if _, err := s.srv.store.SetFlags(context.WithoutCancel(s.srv.ctx), s.user.ID, store.Inbox, store.FlagChange{UIDs: uids, Op: store.FlagsAdd, Flags: []string{store.FlagSeen}}); err != nil {
		s.log.Warn("pop3: marking the messages read as seen", "err", err)
	}
}

// update deletes what was marked and ends the session (RFC 1939 6).
func (s *session) update() {
	var uids []uint32
	for _, m := range s.msgs {
		if m.deleted {
			uids = append(uids, m.uid)
		}
	}
	s.markSeen()
	if len(uids) > 0 {
		if _, err := s.srv.store.Expunge(s.srv.ctx, s.user.ID, store.Inbox, uids); err != nil {
			s.log.Error("pop3: deleting messages at QUIT", "err", err)
			s.fail("[SYS/TEMP] Some messages could not be deleted; they are still there")
			s.quit = true
			return
		}
	}
	n, _ := s.count()
	// The maildrop is released before the answer (RFC 1939 6): a client
	// that connects again at once finds it free.
	s.release()
	s.ok("%s Mailroom POP3 closing (%d messages left)", s.cfg.Hostname, n)
	s.quit = true
}

// release marks the messages read as seen and frees the maildrop for
// the next session; once.
func (s *session) release() {
	if !s.authed {
		return
	}
	s.markSeen()
	s.srv.unlock(s.user.ID)
	s.authed = false
}
