package imapwire

import (
	"encoding/base64"
	"errors"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Mailbox names are sent in modified UTF-7 (RFC 3501 5.1.3) unless the
// client enabled UTF8=ACCEPT (RFC 6855, and IMAP4rev2), when they are
// UTF-8 as they are.

var b64 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding).Strict()

// ErrBadUTF7 is a mailbox name that is not valid modified UTF-7.
var ErrBadUTF7 = errors.New("the mailbox name is not valid modified UTF-7 (RFC 3501 5.1.3)")

// EncodeUTF7 encodes a UTF-8 mailbox name in modified UTF-7.
func EncodeUTF7(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c <= 0x7e {
			if c == '&' {
				b.WriteString("&-")
			} else {
				b.WriteByte(c)
			}
			i++
			continue
		}
		// A run of characters outside printable ASCII.
		j := i
		var units []uint16
		for j < len(s) && (s[j] < 0x20 || s[j] > 0x7e) {
			r, size := utf8.DecodeRuneInString(s[j:])
			units = utf16.AppendRune(units, r)
			j += size
		}
		raw := make([]byte, 0, 2*len(units))
		for _, u := range units {
			raw = append(raw, byte(u>>8), byte(u))
		}
		b.WriteByte('&')
		b.WriteString(b64.EncodeToString(raw))
		b.WriteByte('-')
		i = j
	}
	return b.String()
}

// DecodeUTF7 decodes a modified UTF-7 mailbox name, strictly: characters
// that must be encoded appear only encoded and those that must not only
// as they are, so that each name has one spelling.
func DecodeUTF7(s string) (string, error) {
	var b strings.Builder
	prevEncoded := false
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return "", ErrBadUTF7
		}
		if c != '&' {
			b.WriteByte(c)
			i++
			prevEncoded = false
			continue
		}
		end := strings.IndexByte(s[i+1:], '-')
		if end < 0 {
			return "", ErrBadUTF7
		}
		enc := s[i+1 : i+1+end]
		i += end + 2
		if enc == "" {
			b.WriteByte('&')
			prevEncoded = false
			continue
		}
		if prevEncoded {
			return "", ErrBadUTF7 // two runs side by side should be one
		}
		raw, err := b64.DecodeString(enc)
		if err != nil || len(raw)%2 != 0 || len(raw) == 0 {
			return "", ErrBadUTF7
		}
		units := make([]uint16, len(raw)/2)
		for k := range units {
			units[k] = uint16(raw[2*k])<<8 | uint16(raw[2*k+1])
		}
		for k := 0; k < len(units); k++ {
			u := units[k]
			var r rune
			switch {
			case utf16.IsSurrogate(rune(u)):
				if k+1 >= len(units) {
					return "", ErrBadUTF7
				}
				r = utf16.DecodeRune(rune(u), rune(units[k+1]))
				k++
				if r == utf8.RuneError {
					return "", ErrBadUTF7
				}
			default:
				r = rune(u)
			}
			if r >= 0x20 && r <= 0x7e {
				return "", ErrBadUTF7 // printable ASCII must not be encoded
			}
			b.WriteRune(r)
		}
		prevEncoded = true
	}
	return b.String(), nil
}
