package message

import (
	"bytes"
	"strings"
)

// Delim is a boundary delimiter line in a multipart body (RFC 2046 5.1.1).
type Delim struct {
	Start, End int  // from its "--" to past its line ending
	Close      bool // the close delimiter, "--boundary--"
}

var crlf = []byte("\r\n")

// FindDelims returns the delimiter lines of a multipart body, up to and
// including the close delimiter. A delimiter line is "--" boundary, linear
// white space and CRLF, and is preceded by a CRLF that belongs to it, unless
// it opens the body; so a part starts after the CRLF ending one delimiter
// line and ends before the CRLF starting the next. A close delimiter may
// also end at the end of the body. These are the lines Go's mime/multipart
// splits at, for CRLF input.
func FindDelims(b []byte, boundary string) []Delim {
	dash := []byte("--" + boundary)
	var ds []Delim
	prevEnd := 0
	for p := 0; p < len(b); {
		end := len(b)
		if i := bytes.IndexByte(b[p:], '\n'); i >= 0 {
			end = p + i + 1
		}
		if p == 0 || (p-2 >= prevEnd && b[p-2] == '\r') {
			if close, ok := isDelim(b[p:end], dash); ok {
				ds = append(ds, Delim{Start: p, End: end, Close: close})
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

// Boundary returns b if it is a boundary that fits on a delimiter line:
// printable US-ASCII, not ending in a space. RFC 2046 5.1.1 allows fewer
// characters and at most 70; longer ones are seen in the wild.
func Boundary(b string) (string, bool) {
	if b == "" || len(b) > 998-4 || strings.HasSuffix(b, " ") {
		return "", false
	}
	for i := 0; i < len(b); i++ {
		if b[i] < ' ' || b[i] > '~' {
			return "", false
		}
	}
	return b, true
}
