package message

import "strings"

// ParseAddressList parses an address list (RFC 5322 3.4) leniently, as
// IMAP's ENVELOPE shows it: display names with quotes and comments removed
// but encoded words kept, groups as a start and an end entry, and whatever
// does not parse skipped rather than failing the whole list.
func ParseAddressList(s string) []Address {
	p := addrParser{s: s}
	var out []Address
	for steps := 0; steps <= len(s); steps++ {
		p.skipCFWS()
		if p.eof() {
			break
		}
		if c := p.peek(); c == ',' || c == ';' || c == '>' {
			p.pos++
			continue
		}
		before := p.pos
		out = append(out, p.item(true)...)
		if p.pos == before {
			p.pos++ // a character no rule takes
		}
	}
	return out
}

type addrParser struct {
	s       string
	pos     int
	comment string // the last comment skipped
}

func (p *addrParser) eof() bool  { return p.pos >= len(p.s) }
func (p *addrParser) peek() byte { return p.s[p.pos] }

// skipCFWS skips white space and comments (nested, with quoted pairs).
func (p *addrParser) skipCFWS() {
	for !p.eof() {
		switch c := p.peek(); {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			p.pos++
		case c == '(':
			p.skipComment()
		default:
			return
		}
	}
}

func (p *addrParser) skipComment() {
	depth, start := 0, p.pos+1
	for !p.eof() {
		switch p.peek() {
		case '\\':
			p.pos++
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				p.comment = strings.TrimSpace(p.s[start:p.pos])
				p.pos++
				return
			}
		}
		p.pos++
	}
	p.comment = strings.TrimSpace(p.s[min(start, len(p.s)):])
}

// token is a word of a phrase or local part, or a '.' between them.
type token struct {
	text string
	dot  bool
}

// words reads atoms, quoted strings and dots up to a special character.
func (p *addrParser) words() []token {
	var ts []token
	for {
		p.skipCFWS()
		if p.eof() {
			return ts
		}
		switch c := p.peek(); {
		case c == '"':
			ts = append(ts, token{text: p.quoted()})
		case c == '.':
			p.pos++
			ts = append(ts, token{text: ".", dot: true})
		case isAtext(c):
			start := p.pos
			for !p.eof() && isAtext(p.peek()) {
				p.pos++
			}
			ts = append(ts, token{text: p.s[start:p.pos]})
		default:
			return ts
		}
	}
}

// quoted reads a quoted string and returns its content, unescaped.
func (p *addrParser) quoted() string {
	p.pos++
	var b strings.Builder
	for !p.eof() {
		c := p.peek()
		p.pos++
		switch c {
		case '"':
			return b.String()
		case '\\':
			if !p.eof() {
				b.WriteByte(p.peek())
				p.pos++
			}
		case '\r', '\n':
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// isAtext: printable US-ASCII but specials, or any 8-bit octet (UTF-8 in
// RFC 6532 headers, or raw 8-bit from broken mailers).
func isAtext(c byte) bool {
	if c >= 0x80 {
		return true
	}
	if c <= ' ' || c == 0x7f {
		return false
	}
	return !strings.ContainsRune(`()<>[]:;@\,."`, rune(c))
}

// phrase joins words with spaces, dots attached.
func phrase(ts []token) string {
	var b strings.Builder
	for i, t := range ts {
		if i > 0 && !t.dot && !ts[i-1].dot {
			b.WriteByte(' ')
		}
		b.WriteString(t.text)
	}
	return b.String()
}

// local joins the words of a local part as written.
func local(ts []token) string {
	var b strings.Builder
	for _, t := range ts {
		b.WriteString(t.text)
	}
	return b.String()
}

// item reads a mailbox, or a group when allowed.
func (p *addrParser) item(groupOK bool) []Address {
	p.comment = ""
	ts := p.words()
	if p.eof() {
		if len(ts) == 0 {
			return nil
		}
		return []Address{{Mailbox: local(ts)}}
	}
	switch p.peek() {
	case '<':
		p.pos++
		a := p.angle()
		a.Name = phrase(ts)
		return []Address{a}
	case '@':
		p.pos++
		a := Address{Mailbox: local(ts), Host: p.domain()}
		p.skipCFWS()
		a.Name = p.comment
		return []Address{a}
	case ':':
		if !groupOK {
			p.pos++
			return nil
		}
		p.pos++
		out := []Address{{Group: phrase(ts)}}
		for steps := 0; steps <= len(p.s); steps++ {
			p.skipCFWS()
			if p.eof() {
				break
			}
			if c := p.peek(); c == ';' {
				p.pos++
				break
			} else if c == ',' {
				p.pos++
				continue
			}
			before := p.pos
			out = append(out, p.item(false)...)
			if p.pos == before {
				p.pos++
			}
		}
		return append(out, Address{GroupEnd: true})
	}
	if len(ts) == 0 {
		return nil
	}
	return []Address{{Mailbox: local(ts)}}
}

// angle reads an angle address after its '<': an optional source route,
// the local part, '@' and the domain, and the '>'.
func (p *addrParser) angle() Address {
	var a Address
	p.skipCFWS()
	if !p.eof() && p.peek() == '@' {
		start := p.pos
		for !p.eof() && p.peek() != ':' && p.peek() != '>' {
			p.pos++
		}
		if !p.eof() && p.peek() == ':' {
			a.Route = strings.TrimSpace(p.s[start:p.pos])
			p.pos++
		} else {
			p.pos = start
		}
	}
	a.Mailbox = local(p.words())
	p.skipCFWS()
	if !p.eof() && p.peek() == '@' {
		p.pos++
		a.Host = p.domain()
	}
	for !p.eof() && p.peek() != '>' && p.peek() != ',' {
		p.pos++
	}
	if !p.eof() && p.peek() == '>' {
		p.pos++
	}
	return a
}

// domain reads a domain: dot-atoms or a domain literal.
func (p *addrParser) domain() string {
	p.skipCFWS()
	if !p.eof() && p.peek() == '[' {
		start := p.pos
		for !p.eof() && p.peek() != ']' {
			p.pos++
		}
		if !p.eof() {
			p.pos++
		}
		return p.s[start:p.pos]
	}
	return local(p.words())
}

// String writes an address as "Name <mailbox@host>", for display.
func (a Address) String() string {
	addr := a.Mailbox
	if a.Host != "" {
		addr += "@" + a.Host
	}
	if a.Name == "" {
		return addr
	}
	return a.Name + " <" + addr + ">"
}
