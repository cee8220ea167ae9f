package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// LineEndings says what to do with a bare CR or bare LF in message data.
type LineEndings int

const (
	// RejectBareLineEndings refuses the whole message after its end
	// (the protocol stays in sync, nothing is stored).
	RejectBareLineEndings LineEndings = iota
	// NormalizeBareLineEndings stores every bare CR or LF as CRLF.
	NormalizeBareLineEndings
)

// ErrBareLineEndingData is the reply for message data holding a bare CR or LF.
var ErrBareLineEndingData = &Reply{Code: 550, Enhanced: "5.6.0",
	Text: "Message refused: it contains a bare CR or LF; lines must end with CRLF (see SMTP smuggling)"}

// ErrNULData is the reply for message data holding a NUL octet, which
// RFC 5322 2.3 and 3.5 forbid in a message (and which many readers, IMAP
// clients among them, cut text at). Without BINARYMIME nothing can carry
// it, so the message is refused rather than stored raw or silently changed.
var ErrNULData = &Reply{Code: 554, Enhanced: "5.6.0",
	Text: "Message refused: it contains a NUL character, which Internet mail does not allow; encode binary content (base64) before sending"}

// ErrMessageTooBig is the reply for a message over the size limit.
var ErrMessageTooBig = &Reply{Code: 552, Enhanced: "5.3.4", Text: "Message too big for this server"}

// DataResult describes message data read by ReadData or a ChunkWriter.
type DataResult struct {
	Size     int64 // octets of message content, after dot-unstuffing
	TooBig   bool  // Size went over the limit; content past it was dropped
	BareEOL  bool  // a bare CR or LF was seen
	NUL      bool  // a NUL octet was seen
	Complete bool  // the end-of-data marker was read
}

// Err returns the reply for a problem found in the data, or nil.
func (d DataResult) Err(policy LineEndings) error {
	switch {
	case d.TooBig:
		return ErrMessageTooBig
	case d.BareEOL && policy == RejectBareLineEndings:
		return ErrBareLineEndingData
	case d.NUL:
		return ErrNULData
	}
	return nil
}

// limitWriter writes to w until limit octets have gone by, then only counts.
type limitWriter struct {
	w     io.Writer
	limit int64
	n     int64
	nul   bool // a NUL octet went by
	err   error
}

func (l *limitWriter) write(p []byte) {
	if !l.nul && bytes.IndexByte(p, 0) >= 0 {
		l.nul = true
	}
	if l.err != nil {
		return
	}
	if l.n+int64(len(p)) > l.limit {
		l.n += int64(len(p))
		return
	}
	l.n += int64(len(p))
	_, l.err = l.w.Write(p)
}

var crlf = []byte("\r\n")

// ReadData reads dot-stuffed message data after DATA's 354 up to and
// including the end marker, writing the content to w with dots unstuffed.
//
// The only end of data is CRLF "." CRLF (RFC 5321 4.1.1.4): a "." line that
// follows a bare LF or CR, or ends in one, is content. Content past limit
// octets is read and dropped so that the session stays in sync. With the
// reject policy a bare CR or LF is only noted (the caller refuses the
// message); with the normalize policy it is written as CRLF.
//
// An error is returned only for failures to read (the connection is then
// unusable) or to write to w.
func ReadData(r *bufio.Reader, w io.Writer, limit int64, policy LineEndings) (DataResult, error) {
	var res DataResult
	lw := &limitWriter{w: w, limit: limit}
	sol := true        // at the start of a line that follows a proper CRLF
	pendingCR := false // the previous chunk ended in CR, its LF not seen yet
	for {
		line, err := r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return res, err
		}
		full := err == nil // line ends in LF
		if pendingCR {
			pendingCR = false
			if len(line) > 0 && line[0] == '\n' {
				lw.write(crlf)
				line = line[1:]
				sol = true
				if len(line) == 0 {
					continue
				}
			} else {
				res.BareEOL = true
				if policy == NormalizeBareLineEndings {
					lw.write(crlf)
				}
				sol = false
			}
		}
		if sol && full && len(line) == 3 && line[0] == '.' && line[1] == '\r' {
			res.Size, res.TooBig, res.NUL, res.Complete = lw.n, lw.n > limit, lw.nul, true
			return res, lw.err
		}
		if sol && len(line) > 0 && line[0] == '.' {
			line = line[1:] // RFC 5321 4.5.2 transparency
		}
		sol = writeLine(lw, line, full, policy, &res, &pendingCR)
	}
}

// writeLine writes one line or partial line and reports whether it ended in
// a proper CRLF. A trailing CR of a partial line is held back in pendingCR.
func writeLine(lw *limitWriter, line []byte, full bool, policy LineEndings, res *DataResult, pendingCR *bool) bool {
	body, proper := line, false
	switch {
	case full && len(line) >= 2 && line[len(line)-2] == '\r':
		body, proper = line[:len(line)-2], true
	case full:
		body = line[:len(line)-1]
		res.BareEOL = true
	case len(line) > 0 && line[len(line)-1] == '\r':
		body = line[:len(line)-1]
		*pendingCR = true
	}
	if bytes.IndexByte(body, '\r') >= 0 {
		res.BareEOL = true
		if policy == NormalizeBareLineEndings {
			body = bytes.ReplaceAll(body, []byte("\r"), crlf)
		}
	}
	lw.write(body)
	if full {
		lw.write(crlf) // proper, or a bare LF written as CRLF
	}
	return proper
}

// ChunkWriter receives BDAT chunks (RFC 3030), which carry no dot-stuffing,
// and applies the same size limit and line-ending policy as ReadData.
type ChunkWriter struct {
	lw       limitWriter
	policy   LineEndings
	res      DataResult
	prevCR   bool
	lastByte byte
}

// NewChunkWriter returns a ChunkWriter writing to w.
func NewChunkWriter(w io.Writer, limit int64, policy LineEndings) *ChunkWriter {
	return &ChunkWriter{lw: limitWriter{w: w, limit: limit}, policy: policy}
}

// Write takes the next octets of the message.
func (c *ChunkWriter) Write(p []byte) (int, error) {
	start := 0
	for i, b := range p {
		switch {
		case b == '\n' && !c.prevCR:
			c.res.BareEOL = true
			if c.policy == NormalizeBareLineEndings {
				c.lw.write(p[start:i])
				c.lw.write(crlf)
				start = i + 1
			}
		case b != '\n' && c.prevCR:
			c.res.BareEOL = true
			if c.policy == NormalizeBareLineEndings {
				c.lw.write(p[start:i])
				c.lw.write([]byte("\n"))
				start = i
			}
		}
		c.prevCR = b == '\r'
	}
	c.lw.write(p[start:])
	if len(p) > 0 {
		c.lastByte = p[len(p)-1]
	}
	return len(p), c.lw.err
}

// Close ends the message: a trailing bare CR is settled and a missing final
// CRLF added, so that stored messages always end in CRLF.
func (c *ChunkWriter) Close() (DataResult, error) {
	if c.prevCR {
		c.res.BareEOL = true
		c.lw.write([]byte("\n"))
	} else if c.lw.n > 0 && c.lastByte != '\n' {
		c.lw.write(crlf)
	}
	c.res.Size, c.res.TooBig, c.res.NUL, c.res.Complete = c.lw.n, c.lw.n > c.lw.limit, c.lw.nul, true
	return c.res, c.lw.err
}
