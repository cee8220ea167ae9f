package downgrade

import (
	"bytes"

	"mailroom/internal/message"
)

// multipart writes a multipart entity whose body has the delimiters ds,
// converting each part as an entity of its own.
func (c *converter) multipart(h *header, boundary string, ds []message.Delim, digest bool, s scope) error {
	c.writeHeader(h, c.containerChanges(h, s))
	body := h.body
	if pre := body[:ds[0].Start]; is7bit(pre) {
		c.w.Write(pre) // preamble and the CRLF of the first delimiter
	}
	for i, d := range ds {
		c.writeDelim(body[d.Start:d.End], boundary, d.Close)
		if d.Close {
			if epi := body[d.End:]; is7bit(epi) {
				c.w.Write(epi)
			}
			return nil
		}
		end := len(body)
		if i+1 < len(ds) {
			end = ds[i+1].Start - 2
		}
		ps := s.child(i + 1)
		ps.digest = digest
		if err := c.entity(body[d.End:end], ps); err != nil {
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
