package imapserver

import (
	"strconv"
	"strings"

	"mailroom/internal/imapwire"
	"mailroom/internal/message"
)

// nstring appends v as an nstring: NIL when empty, a quoted string when it
// is printable ASCII (or UTF-8 once UTF8=ACCEPT is on), else a literal.
func (s *session) nstring(b []byte, v string) []byte {
	if v == "" {
		return append(b, "NIL"...)
	}
	return s.str(b, v)
}

// str appends v as a string (never NIL).
func (s *session) str(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' || c == 0x7f || (c >= 0x80 && !s.utf8) {
			return imapwire.AppendLiteral(b, v)
		}
	}
	return imapwire.AppendString(b, v)
}

// envelope appends an ENVELOPE (RFC 9051 7.5.2).
func (s *session) envelope(b []byte, e *message.Envelope) []byte {
	if e == nil {
		e = &message.Envelope{}
	}
	b = append(b, '(')
	b = s.nstring(b, e.Date)
	b = append(b, ' ')
	b = s.nstring(b, e.Subject)
	for _, list := range [][]message.Address{e.From, e.Sender, e.ReplyTo, e.To, e.Cc, e.Bcc} {
		b = append(b, ' ')
		b = s.addresses(b, list)
	}
	b = append(b, ' ')
	b = s.nstring(b, e.InReplyTo)
	b = append(b, ' ')
	b = s.nstring(b, e.MessageID)
	return append(b, ')')
}

func (s *session) addresses(b []byte, list []message.Address) []byte {
	if len(list) == 0 {
		return append(b, "NIL"...)
	}
	b = append(b, '(')
	for _, a := range list {
		b = append(b, '(')
		switch {
		case a.GroupEnd:
			b = append(b, "NIL NIL NIL NIL"...)
		case a.Group != "":
			b = append(b, "NIL NIL "...)
			b = s.nstring(b, a.Group)
			b = append(b, " NIL"...)
		default:
			b = s.nstring(b, a.Name)
			b = append(b, ' ')
			b = s.nstring(b, a.Route)
			b = append(b, ' ')
			b = s.nstring(b, a.Mailbox)
			b = append(b, ' ')
			b = s.nstring(b, a.Host)
		}
		b = append(b, ')')
	}
	return append(b, ')')
}

// bodyStructure appends BODYSTRUCTURE (ext) or BODY of a part (RFC 9051
// 7.5.2).
func (s *session) bodyStructure(b []byte, p *message.Part, ext bool) []byte {
	b = append(b, '(')
	if len(p.Parts) > 0 {
		for _, c := range p.Parts {
			b = s.bodyStructure(b, c, ext)
		}
		b = append(b, ' ')
		b = s.str(b, strings.ToUpper(p.Subtype))
		if ext {
			b = append(b, ' ')
			b = s.params(b, p.Params)
			b = s.extension(b, p)
		}
		return append(b, ')')
	}
	b = s.str(b, strings.ToUpper(p.Type))
	b = append(b, ' ')
	b = s.str(b, strings.ToUpper(p.Subtype))
	b = append(b, ' ')
	b = s.params(b, p.Params)
	b = append(b, ' ')
	b = s.nstring(b, p.ID)
	b = append(b, ' ')
	b = s.nstring(b, p.Description)
	b = append(b, ' ')
	enc := p.Encoding
	if enc == "" {
		enc = "7BIT"
	}
	b = s.str(b, enc)
	b = append(b, ' ')
	b = strconv.AppendInt(b, p.End-p.BodyStart, 10)
	switch {
	case p.Message != nil:
		b = append(b, ' ')
		b = s.envelope(b, p.Message.Envelope)
		b = append(b, ' ')
		b = s.bodyStructure(b, p.Message, ext)
		b = append(b, ' ')
		b = strconv.AppendInt(b, p.Lines, 10)
	case p.Type == "text":
		b = append(b, ' ')
		b = strconv.AppendInt(b, p.Lines, 10)
	}
	if ext {
		b = append(b, ' ')
		b = s.nstring(b, p.MD5)
		b = s.extension(b, p)
	}
	return append(b, ')')
}

// extension appends disposition, language and location.
func (s *session) extension(b []byte, p *message.Part) []byte {
	b = append(b, ' ')
	if p.Disposition == "" {
		b = append(b, "NIL"...)
	} else {
		b = append(b, '(')
		b = s.str(b, strings.ToUpper(p.Disposition))
		b = append(b, ' ')
		b = s.params(b, p.DispParams)
		b = append(b, ')')
	}
	b = append(b, ' ')
	switch len(p.Language) {
	case 0:
		b = append(b, "NIL"...)
	case 1:
		b = s.str(b, p.Language[0])
	default:
		b = append(b, '(')
		for i, l := range p.Language {
			if i > 0 {
				b = append(b, ' ')
			}
			b = s.str(b, l)
		}
		b = append(b, ')')
	}
	b = append(b, ' ')
	return s.nstring(b, p.Location)
}

// params appends a body parameter list, or NIL.
func (s *session) params(b []byte, params []string) []byte {
	if len(params) < 2 {
		return append(b, "NIL"...)
	}
	b = append(b, '(')
	for i := 0; i+1 < len(params); i += 2 {
		if i > 0 {
			b = append(b, ' ')
		}
		b = s.str(b, strings.ToUpper(params[i]))
		b = append(b, ' ')
		b = s.str(b, params[i+1])
	}
	return append(b, ')')
}
