package smtpserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"mailroom/internal/listener"
	"mailroom/internal/metrics"
	"mailroom/internal/smtp"
	"mailroom/internal/spool"
	"mailroom/internal/store"
)

// dataReaders read message data: one read from the connection fills one
// (up to 64 KiB) where the session's command reader (4 KiB, held while a
// connection idles) needed a read per 4 KiB. The large reader reads
// through the small one (which passes large reads straight to the
// connection), so nothing gets out of order: once the large one is empty,
// the small one holds whatever comes next and takes over again.
var dataReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// cmdData handles DATA (RFC 5321 4.1.1.4).
func (s *session) cmdData(arg string) {
	if arg != "" {
		s.reply(501, "5.5.4", "DATA takes no arguments")
		return
	}
	if s.bdat != nil {
		s.reply(503, "5.5.1", "DATA is not allowed after BDAT: finish with BDAT LAST")
		return
	}
	if !s.readyForData("DATA") {
		return
	}
	s.reply(354, "", "Start mail input; end with <CRLF>.<CRLF>")
	if !s.flush() {
		s.quit = true
		return
	}
	sp := s.startMessage()
	defer sp.Close()
	s.c.ExpectData(s.cfg.DataTimeout, s.cfg.MinDataRate)
	small := s.r
	s.r = dataReaders.Get().(*bufio.Reader)
	s.r.Reset(small)
	res, err := smtp.ReadData(s.r, sp, s.cfg.MaxMessageSize, s.cfg.LineEndings)
	if s.r.Buffered() == 0 { // the usual case: the client waits for the reply
		s.r.Reset(nil)
		dataReaders.Put(s.r)
		s.r = small
	} // else commands pipelined after the data: the large reader stays
	switch {
	case err != nil && !res.Complete:
		s.endMidTransfer(err)
	case err != nil: // the spool failed, but the data was read to its end
		s.resetTransaction()
		s.fail(spoolFailure(err))
	default:
		s.finishMessage(sp, res)
	}
}

// cmdBdat handles BDAT (RFC 3030 2).
func (s *session) cmdBdat(arg string) {
	sizeArg, last, _ := strings.Cut(arg, " ")
	size, err := strconv.ParseInt(sizeArg, 10, 64)
	if err != nil || size < 0 || last != "" && !strings.EqualFold(last, "LAST") {
		// The chunk's size is unknown: the session cannot stay in sync.
		s.reply(421, "4.5.4", "Syntax error: BDAT <size> [LAST] expected; the chunk cannot be skipped, closing connection")
		s.quit = true
		return
	}
	ready := s.bdat != nil || s.readyForData("BDAT")
	if ready && s.bdat == nil {
		sp := s.startMessage()
		s.bdat = &bdatState{spool: sp, w: smtp.NewChunkWriter(sp, s.cfg.MaxMessageSize, s.cfg.LineEndings)}
	}
	// Read the chunk even when refusing it, to stay in sync (RFC 3030 2).
	var dst io.Writer = io.Discard
	if ready {
		dst = s.bdat.w
	}
	s.c.ExpectData(s.cfg.DataTimeout, s.cfg.MinDataRate)
	src := &readErrRecorder{r: s.r}
	if _, err := io.CopyN(dst, src, size); err != nil {
		if src.err != nil {
			s.endMidTransfer(src.err)
			return
		}
		// The spool failed mid-chunk: skip the rest of the chunk to stay
		// in sync, then refuse the message.
		if _, rerr := io.CopyN(io.Discard, s.r, size-src.n); rerr != nil {
			s.endMidTransfer(rerr)
			return
		}
		s.resetTransaction()
		s.fail(spoolFailure(err))
		return
	}
	if !ready {
		return
	}
	if last == "" {
		s.reply(250, "2.0.0", fmt.Sprintf("%d octets received", size))
		return
	}
	b := s.bdat
	s.bdat = nil
	defer b.spool.Close()
	res, err := b.w.Close()
	if err != nil {
		s.resetTransaction()
		s.fail(spoolFailure(err))
		return
	}
	s.finishMessage(b.spool, res)
}

// readErrRecorder tells read errors (the connection is gone) from write
// errors (the spool failed) in an io.Copy.
type readErrRecorder struct {
	r   io.Reader
	n   int64
	err error
}

func (r *readErrRecorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		r.err = err
	}
	return n, err
}

// spoolFailure is the reply when a message could not be held while it was
// received: 452 4.3.1 when the disk is full (RFC 3463), else 451 4.3.0.
func spoolFailure(err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return &smtp.Reply{Code: 452, Enhanced: "4.3.1", Text: "Insufficient system storage, try again later"}
	}
	return err
}

// endMidTransfer ends the session after the connection failed during a
// message: nothing was acknowledged, so nothing is kept.
func (s *session) endMidTransfer(err error) {
	s.c.ExpectLine(s.cfg.CommandTimeout)
	if isTimeout(err) {
		text := " Timeout receiving the message, closing connection"
		switch s.c.Expired() {
		case listener.LimitRate:
			text = fmt.Sprintf(" Message data arrives too slowly (under %d octets per second), closing connection", s.cfg.MinDataRate)
		case listener.LimitSession:
			text = " Session time limit reached during the message, closing connection"
		}
		s.reply(421, "4.4.2", s.cfg.Hostname+text)
		s.flush()
	}
	s.result = "connection lost during message: " + err.Error()
	s.resetTransaction()
	s.quit = true
}

// startMessage assigns the queue ID and our Received header field
// (RFC 5321 4.4), which the backend puts on top of the message, and
// returns the spool for the client's data.
func (s *session) startMessage() *spool.Spool {
	s.env.QueueID = store.NewQueueID()
	s.env.Received = s.receivedHeader(time.Now())
	return newSpool(s.cfg)
}

// finishMessage checks what was received and hands it to the backend.
func (s *session) finishMessage(sp *spool.Spool, res smtp.DataResult) {
	env := s.env
	s.resetTransaction()
	logArgs := []any{"queue_id", env.QueueID, "from", env.From.String(), "recipients", len(env.Recipients), "size", sp.Size()}
	if err := res.Err(s.cfg.LineEndings); err != nil {
		s.rejected++
		s.log.Info("message refused", append(logArgs, "reason", err.Error())...)
		s.fail(err)
		return
	}
	start := time.Now()
	if err := s.srv.backend.Deliver(s.ctx(), &s.info, env, sp); err != nil {
		s.rejected++
		s.log.Info("message not accepted", append(logArgs, "reason", err.Error())...)
		s.fail(err)
		return
	}
	s.accepted++
	s.log.Info("message accepted", append(logArgs, "to", recipientList(env))...)
	metrics.MessagesAccepted.WithLabelValues(s.info.Mode.String()).Inc()
	metrics.AcceptSeconds.WithLabelValues(s.info.Mode.String()).Observe(time.Since(start).Seconds())
	s.reply(250, "2.0.0", "OK: queued as "+env.QueueID)
}

func recipientList(env *Transaction) string {
	var b strings.Builder
	for i, r := range env.Recipients {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r.Addr.String())
	}
	return b.String()
}

// receivedHeader builds the trace field for this message (RFC 5321 4.4,
// protocol names from RFC 3848 and RFC 6531 3.7.3).
func (s *session) receivedHeader(now time.Time) string {
	proto := "SMTP"
	if s.info.ESMTP {
		proto = "ESMTP"
	}
	if s.env.Params.SMTPUTF8 {
		proto = "UTF8SMTP"
	}
	if s.info.TLS != nil {
		proto += "S"
	}
	if s.info.Auth != nil {
		proto += "A"
	}
	lit := AddressLiteral(s.info)
	// RFC 5321 4.4: "from" takes a domain or an address literal. A name
	// that is neither (x]y, under_score.test) is kept, for the record, in a
	// comment after it, where it cannot break the field's grammar.
	from := lit + " (" + lit + ")"
	if helo, err := smtp.NormalizeHelo(s.info.Helo); err == nil {
		from = helo + " (" + lit + ")"
	} else {
		from += "\r\n\t(claimed " + commentSafe(s.info.Helo) + ")"
	}
	if s.info.Auth != nil && s.cfg.HideClientIP {
		// The EHLO name often holds the client's LAN address: hide both.
		from = "authenticated-client (hidden)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s\r\n\tby %s (Mailroom) with %s", from, s.cfg.Hostname, proto)
	if s.info.TLS != nil {
		fmt.Fprintf(&b, "\r\n\t(%s %s)", tlsVersionName(s.info.TLS.Version), tlsCipherName(s.info.TLS.CipherSuite))
	}
	fmt.Fprintf(&b, " id %s", s.env.QueueID)
	if len(s.env.Recipients) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", headerSafe(s.env.Recipients[0].Addr.String()))
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", now.Format(time.RFC1123Z))
	return b.String()
}

func AddressLiteral(info SessionInfo) string {
	ip := info.Remote.Addr()
	if ip.Is6() && !ip.Is4In6() {
		return "[IPv6:" + ip.String() + "]"
	}
	return "[" + ip.String() + "]"
}

// commentSafe makes client text fit in a header comment (RFC 5322 3.2.2):
// no parentheses or backslash, printable ASCII only, at most 64 octets.
func commentSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e || r == '(' || r == ')' || r == '\\' {
			return '_'
		}
		return r
	}, s)
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

// headerSafe keeps client-supplied text from breaking the header field.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r == 0x7f || r == '(' || r == ')' || r == ';' {
			return '_'
		}
		return r
	}, s)
}
