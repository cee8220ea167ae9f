package downgrade

import (
	"bytes"
	"fmt"
	"mime"
	"strings"
)

// header is an entity's header block, split into fields.
type header struct {
	raw    []byte // the header block, up to (not including) the empty line
	sep    bool   // an empty line ends the block (else the entity is all header)
	fields []field
	body   []byte // what follows the empty line
}

// field is one header field: its first line and any continuation lines.
type field struct {
	start, end int    // in raw, CRLF included
	name       string // lower case; "" for a line without a colon
}

// parseHeader splits an entity at the first empty line and checks that the
// header block is 7bit data (RFC 5322 2.1.1, 2.2).
func parseHeader(e []byte) (*header, error) {
	h := &header{raw: e}
	switch i := bytes.Index(e, []byte("\r\n\r\n")); {
	case bytes.HasPrefix(e, crlf):
		h.raw, h.body, h.sep = e[:0], e[2:], true
	case i >= 0:
		h.raw, h.body, h.sep = e[:i+2], e[i+4:], true
	}
	if err := checkHeader(h.raw); err != nil {
		return nil, err
	}
	raw := h.raw
	for p := 0; p < len(raw); {
		end := len(raw)
		if i := bytes.IndexByte(raw[p:], '\n'); i >= 0 {
			end = p + i + 1
		}
		if n := len(h.fields); n > 0 && (raw[p] == ' ' || raw[p] == '\t') {
			h.fields[n-1].end = end
		} else {
			f := field{start: p, end: end}
			if name, _, ok := bytes.Cut(raw[p:end], []byte(":")); ok {
				f.name = strings.ToLower(strings.TrimRight(string(name), " \t"))
			}
			h.fields = append(h.fields, f)
		}
		p = end
	}
	return h, nil
}

// checkHeader returns ErrHeaders8Bit or ErrHeaderLine, with the line, if
// the header block is not 7bit data.
func checkHeader(raw []byte) error {
	line, col, bad := 1, 0, 0
	for i, c := range raw {
		switch {
		case c >= 0x80:
			return fmt.Errorf("line %d: %w", line, ErrHeaders8Bit)
		case c == '\r' && i+1 < len(raw) && raw[i+1] == '\n':
			continue
		case c == '\n' && i > 0 && raw[i-1] == '\r':
			line, col = line+1, 0
			continue
		case c == 0 || c == '\r' || c == '\n':
			if bad == 0 {
				bad = line // and keep scanning: 8-bit octets say more
			}
			continue
		}
		if col++; col > 998 && bad == 0 {
			bad = line
		}
	}
	if bad > 0 {
		return fmt.Errorf("line %d: %w", bad, ErrHeaderLine)
	}
	return nil
}

// get returns the unfolded value of the first field with the (lower case)
// name, joining lines with one space as net/textproto does.
func (h *header) get(name string) (string, bool) {
	for _, f := range h.fields {
		if f.name != name {
			continue
		}
		_, v, _ := bytes.Cut(h.raw[f.start:f.end], []byte(":"))
		var b strings.Builder
		for line := range bytes.Lines(v) {
			if t := bytes.Trim(line, " \t\r\n"); len(t) > 0 {
				if b.Len() > 0 {
					b.WriteByte(' ')
				}
				b.Write(t)
			}
		}
		return b.String(), true
	}
	return "", false
}

// cte returns the Content-Transfer-Encoding in lower case, "" if none.
// Like most readers, it ignores any ASCII white space around the token.
func (h *header) cte() string {
	v, _ := h.get("content-transfer-encoding")
	return strings.ToLower(strings.TrimSpace(v))
}

// contentType returns the media type in lower case and its parameters.
// Without a Content-Type field it is text/plain, or message/rfc822 in a
// multipart/digest (RFC 2045 5.2, RFC 2046 5.1.5); with one that does not
// parse it is text/plain (RFC 2045 5.2).
func (h *header) contentType(digest bool) (string, map[string]string) {
	v, ok := h.get("content-type")
	if !ok {
		if digest {
			return "message/rfc822", nil
		}
		return "text/plain", nil
	}
	mt, params, err := mime.ParseMediaType(v)
	if mt == "" || (err != nil && err != mime.ErrInvalidMediaParameter) {
		return "text/plain", nil
	}
	return mt, params
}

// writeHeader writes the header block with the changes, and the empty line
// that ends it.
func (c *converter) writeHeader(h *header, ch changes) {
	add := ch.add
	if ch.cte != "" {
		if _, ok := h.get("content-transfer-encoding"); !ok {
			add = append(add[:len(add):len(add)], "Content-Transfer-Encoding: "+ch.cte)
		}
	}
	for _, f := range h.fields {
		if ch.cte != "" && f.name == "content-transfer-encoding" {
			c.w.WriteString("Content-Transfer-Encoding: ")
			c.w.WriteString(ch.cte)
			c.w.Write(crlf)
			continue
		}
		c.w.Write(h.raw[f.start:f.end])
	}
	if len(add) > 0 && len(h.raw) > 0 && !bytes.HasSuffix(h.raw, crlf) {
		c.w.Write(crlf)
	}
	for _, a := range add {
		c.w.WriteString(a)
		c.w.Write(crlf)
	}
	if h.sep {
		c.w.Write(crlf)
	}
}
