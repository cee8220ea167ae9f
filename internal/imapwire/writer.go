package imapwire

import (
	"strconv"
	"unicode/utf8"
)

// AppendAString appends s as an astring: an atom when it is one, else a
// quoted string when it can be, else a literal (RFC 9051 4.3).
func AppendAString(b []byte, s string) []byte {
	if s != "" && isAtomString(s) && !equalFoldASCII(s, "NIL") {
		return append(b, s...)
	}
	return AppendString(b, s)
}

// AppendString appends s as a quoted string, or as a literal when it holds
// CR, LF, NUL or is not valid UTF-8 (quoted strings cannot carry those).
func AppendString(b []byte, s string) []byte {
	if !quotable(s) {
		return AppendLiteral(b, s)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// AppendNString appends s as a string, or NIL when it is empty and nil is
// true.
func AppendNString(b []byte, s string, nilWhenEmpty bool) []byte {
	if s == "" && nilWhenEmpty {
		return append(b, "NIL"...)
	}
	return AppendString(b, s)
}

// AppendLiteral appends s as a literal: "{n}" CRLF and the octets.
func AppendLiteral(b []byte, s string) []byte {
	b = AppendLiteralHeader(b, int64(len(s)), false)
	return append(b, s...)
}

// AppendLiteralHeader appends the "{n}" CRLF (or "~{n}" CRLF, binary) that
// precedes a literal's octets written afterwards.
func AppendLiteralHeader(b []byte, n int64, binary bool) []byte {
	if binary {
		b = append(b, '~')
	}
	b = append(b, '{')
	b = strconv.AppendInt(b, n, 10)
	return append(b, "}\r\n"...)
}

func quotable(s string) bool {
	if len(s) > 1024 || !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '\r' || s[i] == '\n' || s[i] == 0 {
			return false
		}
	}
	return true
}

func isAtomString(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isAStringChar(s[i]) {
			return false
		}
	}
	return true
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x >= 'a' && x <= 'z' {
			x -= 32
		}
		if y >= 'a' && y <= 'z' {
			y -= 32
		}
		if x != y {
			return false
		}
	}
	return true
}
