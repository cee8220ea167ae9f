package smtpclient

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"mailroom/internal/smtp"
)

// Rcpt is one recipient of Send, with its RCPT parameters (NOTIFY, ORCPT)
// already in wire form, or "".
type Rcpt struct {
	Addr   string
	Params string
}

// Result holds the outcome of each recipient: the RCPT reply when it was
// refused, otherwise the reply to the message data.
type Result struct {
	Rcpts []*smtp.Reply
	Data  *smtp.Reply // nil when no recipient was accepted
}

// Send runs one transaction. size is the message's size when known (it
// allows BDAT with CHUNKING and the SIZE parameter), else -1. The body
// must be a complete message; line endings are made CRLF on the way.
// An error means the transaction as a whole failed (MAIL refused, or the
// connection broke); refusals of single recipients are in the Result.
func (c *Client) Send(ctx context.Context, from, mailParams string, rcpts []Rcpt, body io.Reader, size int64) (*Result, error) {
	mail := "MAIL FROM:<" + from + ">"
	if _, ok := c.ext["SIZE"]; ok && size >= 0 {
		mail += fmt.Sprintf(" SIZE=%d", size)
	}
	if mailParams != "" {
		mail += " " + mailParams
	}
	_, chunking := c.ext["CHUNKING"]
	chunking = chunking && size >= 0
	_, pipelining := c.ext["PIPELINING"]
	cmds := []string{mail}
	for _, r := range rcpts {
		line := "RCPT TO:<" + r.Addr + ">"
		if r.Params != "" {
			line += " " + r.Params
		}
		cmds = append(cmds, line)
	}
	replies, err := c.exchange(cmds, pipelining)
	if err != nil {
		return nil, err
	}
	if replies[0].Code != 250 {
		c.cmd("rset", "RSET")
		return nil, &Error{Stage: "mail", Reply: replies[0]}
	}
	res := &Result{Rcpts: replies[1:]}
	accepted := 0
	for _, r := range res.Rcpts {
		if r.Code == 250 || r.Code == 251 {
			accepted++
		}
	}
	if accepted == 0 {
		c.cmd("rset", "RSET")
		return res, nil
	}
	if chunking {
		res.Data, err = c.bdat(body, size)
	} else {
		res.Data, err = c.data(body)
	}
	if err != nil {
		return nil, err
	}
	for i, r := range res.Rcpts {
		if r.Code == 250 || r.Code == 251 {
			res.Rcpts[i] = res.Data
		}
	}
	return res, nil
}

// exchange sends commands, all at once with PIPELINING (RFC 2920 3.1),
// and reads one reply per command in order.
func (c *Client) exchange(cmds []string, pipelining bool) ([]*smtp.Reply, error) {
	var replies []*smtp.Reply
	stage := func(i int) string {
		if i == 0 {
			return "mail"
		}
		return "rcpt"
	}
	if pipelining {
		if err := c.write("mail", strings.Join(cmds, "\r\n")+"\r\n"); err != nil {
			return nil, err
		}
		for i := range cmds {
			read := c.read
			if i == len(cmds)-1 {
				read = c.readLast
			}
			rep, err := read(stage(i))
			if err != nil {
				return nil, err
			}
			replies = append(replies, rep)
		}
		return replies, nil
	}
	for i, cmd := range cmds {
		rep, err := c.cmd(stage(i), cmd)
		if err != nil {
			return nil, err
		}
		replies = append(replies, rep)
		if i == 0 && rep.Code != 250 {
			return replies, nil
		}
	}
	return replies, nil
}

// data sends DATA and the dot-stuffed message (RFC 5321 4.5.2).
func (c *Client) data(body io.Reader) (*smtp.Reply, error) {
	rep, err := c.cmd("data", "DATA")
	if err != nil {
		return nil, err
	}
	switch {
	case rep.Code >= 400:
		return rep, nil // refused: the reply applies to every recipient
	case rep.Code != 354:
		// RFC 5321 4.3.2: 354 is the only go-ahead; a 250 here would
		// count a message as delivered that was never sent.
		return nil, &Error{Stage: "data", Err: fmt.Errorf("the server answered DATA with %d, not 354", rep.Code)}
	}
	w := dataWriters.Get().(*bufio.Writer)
	w.Reset(chunkWriter{c})
	defer func() { w.Reset(nil); dataWriters.Put(w) }()
	if err := writeDotStuffed(w, body); err != nil {
		return nil, &Error{Stage: "data", Err: err}
	}
	if err := w.Flush(); err != nil {
		return nil, &Error{Stage: "data", Err: err}
	}
	if c.opts.Trace != nil {
		c.opts.Trace(true, "(the message, then a line with a dot)")
	}
	return c.readLast("data")
}

// chunkWriter writes message data with a fresh deadline for each chunk: a
// large message over a slow link goes, as long as every chunk does within
// the timeout (one deadline for the whole message would cut it off).
type chunkWriter struct{ c *Client }

func (w chunkWriter) Write(p []byte) (int, error) {
	w.c.conn.SetWriteDeadline(time.Now().Add(w.c.opts.Timeout))
	return w.c.conn.Write(p)
}

// bdat sends the message in one BDAT LAST chunk (RFC 3030); size must be
// exact and the body already CRLF-clean (as stored messages are).
func (c *Client) bdat(body io.Reader, size int64) (*smtp.Reply, error) {
	if err := c.write("data", fmt.Sprintf("BDAT %d LAST\r\n", size)); err != nil {
		return nil, err
	}
	n, err := io.Copy(chunkWriter{c}, io.LimitReader(body, size))
	if err != nil || n != size {
		return nil, &Error{Stage: "data", Err: fmt.Errorf("sent %d of %d octets: %v", n, size, err)}
	}
	if c.opts.Trace != nil {
		c.opts.Trace(true, fmt.Sprintf("(%d octets of the message)", size))
	}
	return c.readLast("data")
}

// Buffers for sending a message, reused: a delivery allocated 64 KiB of
// them each.
var (
	bodyReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }}
	dataWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}
)

// writeDotStuffed writes body with CRLF line endings only (a bare CR or LF
// becomes CRLF), a '.' doubled at the start of each line, and the end
// marker. Whole CRLF lines (all of a stored message's) are copied as they
// are; anything else goes octet by octet.
func writeDotStuffed(w *bufio.Writer, body io.Reader) error {
	br := bodyReaders.Get().(*bufio.Reader)
	br.Reset(body)
	defer func() { br.Reset(nil); bodyReaders.Put(br) }()
	sol, cr := true, false
	for {
		chunk, err := br.ReadSlice('\n')
		if n := len(chunk); !cr && n >= 2 && chunk[n-1] == '\n' && chunk[n-2] == '\r' && bytes.IndexByte(chunk[:n-2], '\r') < 0 {
			if sol && chunk[0] == '.' {
				w.WriteByte('.')
			}
			w.Write(chunk)
			sol = true
		} else {
			sol, cr = stuffOctets(w, chunk, sol, cr)
		}
		if err == io.EOF {
			break
		}
		if err != nil && err != bufio.ErrBufferFull {
			return err
		}
	}
	if cr || !sol {
		w.WriteString("\r\n")
	}
	_, err := w.WriteString(".\r\n")
	return err
}

// stuffOctets is writeDotStuffed for any octets: sol tells whether the
// output is at the start of a line, cr whether a CR is pending.
func stuffOctets(w *bufio.Writer, p []byte, sol, cr bool) (bool, bool) {
	for _, b := range p {
		switch {
		case b == '\n':
			w.WriteString("\r\n")
			sol, cr = true, false
			continue
		case cr: // a CR not followed by LF
			w.WriteString("\r\n")
			sol = true
		}
		cr = false
		if b == '\r' {
			cr = true
			continue
		}
		if sol && b == '.' {
			w.WriteByte('.')
		}
		w.WriteByte(b)
		sol = false
	}
	return sol, cr
}
