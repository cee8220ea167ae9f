package imapwire

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Parser reads the arguments of one command, token by token. Its errors
// are sentences for the client's BAD response.
type Parser struct {
	b    []byte
	pos  int
	lits []*Literal
	lit  int // the next literal
}

// ParseError is an argument that does not follow the grammar.
type ParseError struct{ Text string }

func (e *ParseError) Error() string { return e.Text }

func (p *Parser) errorf(format string, args ...any) error {
	return &ParseError{Text: fmt.Sprintf(format, args...)}
}

// AtEnd reports whether every argument has been read.
func (p *Parser) AtEnd() bool { return p.pos >= len(p.b) }

// End fails unless every argument has been read.
func (p *Parser) End() error {
	if !p.AtEnd() {
		return p.errorf("Unexpected %q after the arguments", clip(p.b[p.pos:]))
	}
	return nil
}

// Peek returns the next octet, or 0 at the end.
func (p *Parser) Peek() byte {
	if p.AtEnd() {
		return 0
	}
	return p.b[p.pos]
}

// Take consumes s (ASCII, compared without case) if it comes next.
func (p *Parser) Take(s string) bool {
	if len(p.b)-p.pos >= len(s) && strings.EqualFold(string(p.b[p.pos:p.pos+len(s)]), s) {
		p.pos += len(s)
		return true
	}
	return false
}

// Expect consumes s or fails.
func (p *Parser) Expect(s string) error {
	if !p.Take(s) {
		if p.AtEnd() {
			return p.errorf("Expected %q, found the end of the command", s)
		}
		return p.errorf("Expected %q at %q", s, clip(p.b[p.pos:]))
	}
	return nil
}

// SP consumes one space.
func (p *Parser) SP() error { return p.Expect(" ") }

// Atom reads an atom.
func (p *Parser) Atom() (string, error) {
	start := p.pos
	for !p.AtEnd() && isAtomChar(p.b[p.pos]) {
		p.pos++
	}
	if p.pos == start {
		return "", p.expected("an atom")
	}
	return string(p.b[start:p.pos]), nil
}

// expected fails, naming what was expected and what was found.
func (p *Parser) expected(what string) error {
	if p.AtEnd() {
		return p.errorf("Expected %s, found the end of the command", what)
	}
	return p.errorf("Expected %s at %q", what, clip(p.b[p.pos:]))
}

// AString reads an atom (with ']' allowed), a quoted string or a literal.
func (p *Parser) AString() (string, error) {
	switch p.Peek() {
	case '"', literalMark:
		return p.String()
	}
	start := p.pos
	for !p.AtEnd() && isAStringChar(p.b[p.pos]) {
		p.pos++
	}
	if p.pos == start {
		return "", p.expected("a string")
	}
	return string(p.b[start:p.pos]), nil
}

// String reads a quoted string or a literal.
func (p *Parser) String() (string, error) {
	switch p.Peek() {
	case '"':
		return p.quoted()
	case literalMark:
		l, err := p.Literal()
		if err != nil {
			return "", err
		}
		b := l.Bytes()
		if b == nil {
			return "", p.errorf("A literal of %d octets is too long for a string here", l.Size)
		}
		return string(b), nil
	}
	return "", p.expected("a quoted string or a literal")
}

// NString reads a string or NIL (returned as ok false).
func (p *Parser) NString() (s string, ok bool, err error) {
	if p.Take("NIL") {
		return "", false, nil
	}
	s, err = p.String()
	return s, err == nil, err
}

// quoted reads a quoted string (RFC 9051 9: quoted-specials escaped by
// '\'; no CR or LF; UTF-8 allowed, as in IMAP4rev2 and RFC 6855).
func (p *Parser) quoted() (string, error) {
	p.pos++ // the opening quote
	var sb strings.Builder
	for !p.AtEnd() {
		c := p.b[p.pos]
		p.pos++
		switch c {
		case '"':
			return sb.String(), nil
		case '\\':
			if p.AtEnd() || (p.b[p.pos] != '"' && p.b[p.pos] != '\\') {
				return "", p.errorf("In a quoted string, '\\' may only escape '\"' or '\\'")
			}
			sb.WriteByte(p.b[p.pos])
			p.pos++
		case '\r', '\n', literalMark:
			return "", p.errorf("A quoted string may not hold CR, LF or NUL")
		default:
			sb.WriteByte(c)
		}
	}
	return "", p.errorf("A quoted string is not closed")
}

// Literal reads a literal (or literal8) and returns it whole.
func (p *Parser) Literal() (*Literal, error) {
	if p.Peek() != literalMark || p.lit >= len(p.lits) {
		return nil, p.expected("a literal")
	}
	p.pos++
	l := p.lits[p.lit]
	p.lit++
	return l, nil
}

// IsLiteral reports whether a literal comes next.
func (p *Parser) IsLiteral() bool { return p.Peek() == literalMark }

// Number reads a number (RFC 9051 9: 32 bits, unsigned).
func (p *Parser) Number() (uint32, error) {
	n, err := p.number(32)
	return uint32(n), err
}

// Number64 reads a 63-bit number (a MODSEQ, RFC 7162 7).
func (p *Parser) Number64() (int64, error) {
	n, err := p.number(63)
	return int64(n), err
}

func (p *Parser) number(bits int) (uint64, error) {
	start := p.pos
	for !p.AtEnd() && p.b[p.pos] >= '0' && p.b[p.pos] <= '9' {
		p.pos++
	}
	if p.pos == start {
		return 0, p.expected("a number")
	}
	n, err := strconv.ParseUint(string(p.b[start:p.pos]), 10, bits)
	if err != nil {
		return 0, p.errorf("The number %s is too large", p.b[start:p.pos])
	}
	return n, nil
}

// SeqSet reads a sequence set (RFC 9051 9: numbers, '*', ranges with ':'
// and lists with ','), or "$" for the saved result (RFC 5182).
func (p *Parser) SeqSet() (SeqSet, error) {
	if p.Take("$") {
		return SeqSet{Saved: true}, nil
	}
	var set SeqSet
	for {
		lo, err := p.seqNumber()
		if err != nil {
			return set, err
		}
		hi := lo
		if p.Take(":") {
			if hi, err = p.seqNumber(); err != nil {
				return set, err
			}
		}
		if lo != Star && hi != Star {
			lo, hi = min(lo, hi), max(lo, hi)
		}
		set.Ranges = append(set.Ranges, SeqRange{Lo: lo, Hi: hi})
		if !p.Take(",") {
			return set, nil
		}
	}
}

func (p *Parser) seqNumber() (uint32, error) {
	if p.Take("*") {
		return Star, nil
	}
	n, err := p.Number()
	if err != nil {
		return 0, p.expected("a message number, a UID or '*'")
	}
	if n == 0 {
		return 0, p.errorf("Message numbers and UIDs start at 1")
	}
	return n, nil
}

// Flag reads a flag: a system flag ("\Seen"), "\*" where allowed, or a
// keyword (an atom).
func (p *Parser) Flag() (string, error) {
	if p.Take(`\`) {
		if p.Take("*") {
			return `\*`, nil
		}
		a, err := p.Atom()
		if err != nil {
			return "", p.errorf("Expected a flag name after '\\'")
		}
		return `\` + a, nil
	}
	return p.Atom()
}

// FlagList reads a parenthesized list of flags, or a single flag when
// bare is allowed (STORE takes both).
func (p *Parser) FlagList(bare bool) ([]string, error) {
	if !p.Take("(") {
		if !bare {
			return nil, p.expected("a list of flags in parentheses")
		}
		var flags []string
		for {
			f, err := p.Flag()
			if err != nil {
				return nil, err
			}
			flags = append(flags, f)
			if p.Peek() != ' ' || p.pos+1 >= len(p.b) || (p.b[p.pos+1] != '\\' && !isAtomChar(p.b[p.pos+1])) {
				return flags, nil
			}
			p.pos++
		}
	}
	var flags []string
	for !p.Take(")") {
		if len(flags) > 0 {
			if err := p.SP(); err != nil {
				return nil, err
			}
		}
		f, err := p.Flag()
		if err != nil {
			return nil, err
		}
		flags = append(flags, f)
	}
	return flags, nil
}

// DateTime reads a quoted date-time ("01-Jan-2024 10:00:00 +0100").
func (p *Parser) DateTime() (time.Time, error) {
	if p.Peek() != '"' {
		return time.Time{}, p.expected("a quoted date and time")
	}
	s, err := p.quoted()
	if err != nil {
		return time.Time{}, err
	}
	for _, layout := range []string{"_2-Jan-2006 15:04:05 -0700", "02-Jan-2006 15:04:05 -0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, p.errorf("%q is not a date and time like \"07-Feb-1994 21:52:25 -0800\"", s)
}

// Date reads a date ("1-Feb-1994", quoted or not).
func (p *Parser) Date() (time.Time, error) {
	var s string
	var err error
	if p.Peek() == '"' {
		s, err = p.quoted()
	} else {
		s, err = p.Atom()
	}
	if err != nil {
		return time.Time{}, err
	}
	for _, layout := range []string{"_2-Jan-2006", "02-Jan-2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, p.errorf("%q is not a date like 7-Feb-1994", s)
}

// clip returns the start of what is left, for an error message.
func clip(b []byte) string {
	if i := bytes.IndexByte(b, literalMark); i >= 0 {
		b = b[:i]
	}
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}
