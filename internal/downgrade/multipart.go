package downgrade

import "bytes"

// delim is a boundary delimiter line in a multipart body (RFC 2046 5.1.1).
type delim struct {
	start, end int  // from its "--" to past its CRLF
	close      bool // the close delimiter, "--boundary--"
}

// findDelims returns the delimiter lines of a multipart body, up to and
// including the close delimiter. A delimiter line is "--" boundary, linear
// white space and CRLF, and is preceded by a CRLF that belongs to it, unless
// it opens the body; so a part starts after the CRLF ending one delimiter
// line and ends before the CRLF starting the next. A close delimiter may
// also end at the end of the body. These are the lines Go's mime/multipart
// splits at, for CRLF input.
func findDelims(b []byte, boundary string) []delim {
	dash := []byte("--" + boundary)
	var ds []delim
	prevEnd := 0
	for p := 0; p < len(b); {
		end := len(b)
		if i := bytes.IndexByte(b[p:], '\n'); i >= 0 {
			end = p + i + 1
		}
		if p == 0 || (p-2 >= prevEnd && b[p-2] == '\r') {
			if close, ok := isDelim(b[p:end], dash); ok {
				ds = append(ds, delim{start: p, end: end, close: close})
				if close {
					return ds
				}
				prevEnd = end
			}
		}
		p = end
	}
	return ds
}

// isDelim reports whether line (with its line ending) is a delimiter line.
func isDelim(line, dash []byte) (close, ok bool) {
	rest, found := bytes.CutPrefix(line, dash)
	if !found {
		return false, false
	}
	if r, found := bytes.CutPrefix(rest, []byte("--")); found {
		r = bytes.TrimLeft(r, " \t")
		if len(r) == 0 || bytes.Equal(r, crlf) {
			return true, true
		}
	}
	return false, bytes.Equal(bytes.TrimLeft(rest, " \t"), crlf)
}

// multipart writes a multipart entity whose body has the delimiters ds,
// converting each part as an entity of its own.
func (c *converter) multipart(h *header, boundary string, ds []delim, digest bool, s scope) error {
	c.writeHeader(h, c.containerChanges(h, s))
	body := h.body
	if pre := body[:ds[0].start]; is7bit(pre) {
		c.w.Write(pre) // preamble and the CRLF of the first delimiter
	}
	for i, d := range ds {
		c.writeDelim(body[d.start:d.end], boundary, d.close)
		if d.close {
			if epi := body[d.end:]; is7bit(epi) {
				c.w.Write(epi)
			}
			return nil
		}
		end := len(body)
		if i+1 < len(ds) {
			end = ds[i+1].start - 2
		}
		ps := s.child(i + 1)
		ps.digest = digest
		if err := c.entity(body[d.end:end], ps); err != nil {
			return err
		}
		if i+1 < len(ds) {
			c.w.Write(crlf)
		}
	}
	// No close delimiter: the last part ran to the end of the body.
	c.w.WriteString("\r\n--" + boundary + "--")
	return nil
}

// writeDelim writes a delimiter line as it was, or without its white space
// if that made it longer than 998 octets.
func (c *converter) writeDelim(line []byte, boundary string, close bool) {
	hasCRLF := bytes.HasSuffix(line, crlf)
	if n := len(bytes.TrimSuffix(line, crlf)); n <= 998 {
		c.w.Write(line)
		return
	}
	c.w.WriteString("--" + boundary)
	if close {
		c.w.WriteString("--")
	}
	if hasCRLF {
		c.w.Write(crlf)
	}
}
