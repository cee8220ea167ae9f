package smtp

import (
	"fmt"
	"strconv"
	"strings"
)

// Reply is one SMTP reply: a three-digit code, an enhanced status code
// (RFC 3463, e.g. "5.1.1"; empty only for the greeting and EHLO), and text
// for a human. Text may hold several lines separated by "\n"; each becomes
// one line of a multiline reply (RFC 5321 4.2.1).
type Reply struct {
	Code     int
	Enhanced string
	Text     string
}

// Error makes a Reply usable as an error, so that any layer can return the
// exact reply the client must see and callers can find it with errors.As.
func (r *Reply) Error() string {
	if r.Enhanced == "" {
		return fmt.Sprintf("%d %s", r.Code, r.Text)
	}
	return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text)
}

// Temporary reports whether the reply is a 4xx (transient) failure.
func (r *Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }

// Permanent reports whether the reply is a 5xx (permanent) failure.
func (r *Reply) Permanent() bool { return r.Code >= 500 }

// Errorf returns a Reply as an error with a formatted text.
func Errorf(code int, enhanced, format string, args ...any) *Reply {
	return &Reply{Code: code, Enhanced: enhanced, Text: fmt.Sprintf(format, args...)}
}

// AppendTo appends the wire form of r, CRLF-terminated, to b.
func (r *Reply) AppendTo(b []byte) []byte {
	lines := strings.Split(r.Text, "\n")
	for i, l := range lines {
		b = strconv.AppendInt(b, int64(r.Code), 10)
		if i < len(lines)-1 {
			b = append(b, '-')
		} else {
			b = append(b, ' ')
		}
		if r.Enhanced != "" {
			b = append(b, r.Enhanced...)
			b = append(b, ' ')
		}
		b = append(b, sanitizeText(l)...)
		b = append(b, '\r', '\n')
	}
	return b
}

// sanitizeText keeps a reply line printable ASCII so that text derived from
// client input can never inject a line ending or a second reply.
func sanitizeText(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return strings.Map(func(r rune) rune {
				if r < 0x20 || r > 0x7e {
					return '?'
				}
				return r
			}, s)
		}
	}
	return s
}
