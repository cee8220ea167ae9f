package downgrade

import (
	"bytes"
	"mailroom/internal/message"
	"unicode/utf8"
)

var crlf = []byte("\r\n")

// is7bit reports whether b is 7bit data (RFC 2045 2.7): no octet >= 0x80 or
// NUL, CR and LF only as CRLF, and lines of at most 998 octets before it.
func is7bit(b []byte) bool {
	col := 0
	for i, c := range b {
		switch {
		case c >= 0x80 || c == 0:
			return false
		case c == '\r':
			if i+1 == len(b) || b[i+1] != '\n' {
				return false
			}
			continue
		case c == '\n':
			if i == 0 || b[i-1] != '\r' {
				return false
			}
			col = 0
			continue
		}
		if col++; col > 998 {
			return false
		}
	}
	return true
}

// charset names the charset of a text body that has no Content-Type:
// us-ascii when it is all ASCII, utf-8 when it is valid UTF-8, and
// otherwise unknown-8bit (RFC 1428 3).
func charset(b []byte) string {
	ascii := true
	for _, c := range b {
		if c >= 0x80 {
			ascii = false
			break
		}
	}
	switch {
	case ascii:
		return "us-ascii"
	case utf8.Valid(b):
		return "utf-8"
	}
	return "unknown-8bit"
}

// qpLine is the longest quoted-printable line, soft break included
// (RFC 2045 6.7, rule 5).
const qpLine = 76

const upperHex = "0123456789ABCDEF"

// qpLookahead is the most writeQP looks past the octet it encodes: a
// UTF-8 character and the CRLF after it, or "From ".
const qpLookahead = 8

// writeQP writes b as quoted-printable (RFC 2045 6.7). Each CRLF is a hard
// line break; any other CR or LF is encoded, so decoding gives b back byte
// for byte. Unless final, b is a piece of a longer text: writeQP stops
// qpLookahead octets before its end, as it cannot yet tell how to write
// them, and returns how many octets it wrote; the caller passes the rest
// again at the start of the next piece. c.qpCol carries the column from
// one piece to the next.
func (c *converter) writeQP(b []byte, final bool) int {
	col := c.qpCol
	defer func() { c.qpCol = col }()
	stop := len(b)
	if !final {
		stop -= qpLookahead
	}
	i := 0
	for i < stop {
		if b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n' {
			c.w.Write(crlf)
			col, i = 0, i+2
			continue
		}
		ch := b[i]
		// Last before a hard break or the end: white space there would be
		// taken for padding and dropped (rule 3).
		last := isLast(b, i+1)
		literal := (ch > ' ' && ch <= '~' && ch != '=') || ((ch == ' ' || ch == '\t') && !last)
		if col == 0 && literal && (bytes.HasPrefix(b[i:], []byte("--")) || bytes.HasPrefix(b[i:], []byte("From "))) {
			literal = false // no boundary delimiter or mbox From line
		}
		n, need := 3, 3
		if literal {
			n, need = 1, 1
		} else if r, size := utf8.DecodeRune(b[i:]); size > 1 && r != utf8.RuneError {
			// Keep a UTF-8 character on one line.
			need, last = 3*size, isLast(b, i+size)
		}
		// Leave room for the soft break's '=', unless nothing follows on
		// this line.
		if col+need > qpLine-1 && !(last && col+need <= qpLine) {
			c.w.WriteString("=\r\n")
			col = 0
			continue // at the start of a line again
		}
		if literal {
			c.w.WriteByte(ch)
		} else {
			c.w.WriteByte('=')
			c.w.WriteByte(upperHex[ch>>4])
			c.w.WriteByte(upperHex[ch&15])
		}
		col += n
		i++
	}
	return i
}

// isLast reports whether b[i:] is empty or starts with CRLF.
func isLast(b []byte, i int) bool {
	return i == len(b) || (b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n')
}

// qpPiece is how much decoded text recodeQP holds before writing it (a
// variable so that tests can cut bodies into many pieces).
var qpPiece = 32 << 10

// recodeQP decodes a quoted-printable body that is not 7bit data and
// writes it again as quoted-printable, in pieces of qpPiece octets, so a
// large body is never held decoded.
func (c *converter) recodeQP(b []byte) {
	c.qpCol = 0
	buf := make([]byte, 0, qpPiece+qpLookahead)
	decodeQP(b, func(p []byte) {
		buf = append(buf, p...)
		if len(buf) >= qpPiece {
			n := c.writeQP(buf, false)
			buf = buf[:copy(buf, buf[n:])]
		}
	})
	c.writeQP(buf, true)
}

// decodeQP decodes quoted-printable leniently, as Go's mime/quotedprintable
// does but without failing: white space at the end of a line is dropped, a
// line ending in '=' is joined to the next, "=XX" (either case) is an octet
// and any other octet, '=' included, stands for itself. It passes the
// decoded text to out in pieces of at most a few hundred octets.
func decodeQP(b []byte, out func([]byte)) {
	var piece [256]byte
	p := piece[:0]
	put := func(c ...byte) {
		if len(p)+len(c) > cap(p) {
			out(p)
			p = piece[:0]
		}
		p = append(p, c...)
	}
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line = b[:i+1]
		}
		b = b[len(line):]
		t := bytes.TrimRight(line, " \t\r\n")
		soft := bytes.HasSuffix(t, []byte("="))
		if soft {
			t = t[:len(t)-1]
		}
		for j := 0; j < len(t); j++ {
			if t[j] == '=' && j+2 < len(t) && isHex(t[j+1]) && isHex(t[j+2]) {
				put(unhex(t[j+1])<<4 | unhex(t[j+2]))
				j += 2
				continue
			}
			put(t[j])
		}
		switch {
		case soft || !bytes.HasSuffix(line, []byte("\n")):
		case bytes.HasSuffix(line, crlf):
			put('\r', '\n')
		default:
			put('\n')
		}
	}
	out(p)
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' || c >= 'a' && c <= 'f'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// b64Line is the length of a base64 line (RFC 2045 6.8): 57 octets encoded.
const b64Line = 76

// writeBase64 writes b as base64 in lines of 76 characters, each ending in
// CRLF.
func (c *converter) writeBase64(b []byte) { message.WriteBase64(c.w, b) }

// writeBase64Filtered rewrites a base64 body that is not 7bit data: it keeps
// only the characters of the base64 alphabet and '=', the only ones a
// decoder reads (RFC 2045 6.8), in lines of 76 characters ending in CRLF.
func (c *converter) writeBase64Filtered(b []byte) {
	col := 0
	for _, ch := range b {
		if !(ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '+' || ch == '/' || ch == '=') {
			continue
		}
		c.w.WriteByte(ch)
		if col++; col == b64Line {
			c.w.Write(crlf)
			col = 0
		}
	}
	if col > 0 {
		c.w.Write(crlf)
	}
}
