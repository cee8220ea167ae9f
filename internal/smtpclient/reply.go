package smtpclient

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"mailroom/internal/smtp"
)

// Bounds on what a next hop may send as one reply. RFC 5321 4.5.3.1.5 allows
// reply lines of 512 octets; real servers stay far below these.
const (
	maxReplyLine  = 4096     // octets in one line, CRLF included
	maxReplyLines = 200      // lines in one (multiline) reply
	maxReply      = 64 << 10 // octets in one reply
	// Once a reply has begun, the rest must come at replyRate octets a
	// second on average after Options.ReplyGrace: a drip is cut off in
	// seconds, not at the end of the reply's timeout.
	replyRate = 64
)

// meter reads the connection (plain or TLS, whichever is current) within
// the current reply's bounds: its deadline, and once its first octet is in,
// the minimum rate.
type meter struct {
	c        *Client
	deadline time.Time // the reply's whole deadline
	first    time.Time // when its first octet came; zero before
	n        int64     // octets read since
	slow     bool      // the last deadline set was the rate's
}

func (m *meter) Read(p []byte) (int, error) {
	dl, slow := m.deadline, false
	if !m.first.IsZero() {
		if rate := m.first.Add(m.c.opts.ReplyGrace + time.Duration(m.n)*time.Second/replyRate); rate.Before(dl) {
			dl, slow = rate, true
		}
	}
	m.slow = slow
	m.c.conn.SetReadDeadline(dl)
	n, err := m.c.conn.Read(p)
	if n > 0 && m.first.IsZero() {
		m.first = time.Now()
	}
	m.n += int64(n)
	return n, err
}

// begin starts the bounds of the next reply.
func (m *meter) begin(timeout time.Duration) {
	m.deadline, m.first, m.n, m.slow = time.Now().Add(timeout), time.Time{}, 0, false
}

func newReader(c *Client) *bufio.Reader {
	c.meter = &meter{c: c}
	return bufio.NewReaderSize(c.meter, maxReplyLine)
}

// read reads one reply (RFC 5321 4.2), multiline joined with "\n" and the
// enhanced status code split off when present. A reply beyond the bounds
// (a line, the lines, the octets, the time, the rate) is an error: the
// connection cannot be trusted to be in step any more.
func (c *Client) read(stage string) (*smtp.Reply, error) {
	c.meter.begin(c.opts.Timeout)
	var lines []string
	code, size := 0, 0
	for {
		raw, err := c.r.ReadSlice('\n')
		size += len(raw)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			return nil, &Error{Stage: stage, Err: fmt.Errorf("the server sent a reply line longer than %d octets (RFC 5321 allows 512)", maxReplyLine)}
		case err != nil:
			return nil, &Error{Stage: stage, Err: c.readError(err)}
		case len(lines) >= maxReplyLines || size > maxReply:
			return nil, &Error{Stage: stage, Err: fmt.Errorf("the server sent a reply of more than %d lines or %d octets", maxReplyLines, maxReply)}
		}
		line := strings.TrimRight(string(raw), "\r\n")
		if c.opts.Trace != nil {
			c.opts.Trace(false, line)
		}
		if len(line) < 3 {
			return nil, &Error{Stage: stage, Err: fmt.Errorf("malformed reply %q", line)}
		}
		n, err := strconv.Atoi(line[:3])
		if err != nil || n < 200 || n > 599 || code != 0 && n != code || len(line) > 3 && line[3] != ' ' && line[3] != '-' {
			return nil, &Error{Stage: stage, Err: fmt.Errorf("malformed reply %q", line)}
		}
		code = n
		text := ""
		if len(line) > 4 {
			text = line[4:]
		}
		lines = append(lines, text)
		if len(line) == 3 || line[3] == ' ' {
			break
		}
	}
	rep := &smtp.Reply{Code: code, Text: strings.Join(lines, "\n")}
	if _, ok := c.ext["ENHANCEDSTATUSCODES"]; ok || c.ext == nil {
		if enh, rest, ok := strings.Cut(rep.Text, " "); ok && isEnhanced(enh, code) {
			rep.Enhanced, rep.Text = enh, rest
		}
	}
	return rep, nil
}

// readError words a failure to read a reply.
func (c *Client) readError(err error) error {
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		if c.meter.slow {
			return fmt.Errorf("the server's reply came too slowly (under %d octets a second)", replyRate)
		}
		return fmt.Errorf("no complete reply from the server within %v", c.opts.Timeout)
	}
	return err
}
