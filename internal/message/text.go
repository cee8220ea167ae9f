package message

import (
	"bytes"
	"encoding/base64"
	"html"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"

	"golang.org/x/text/encoding/htmlindex"
)

// Text is what IMAP's SEARCH compares a message with (RFC 9051 6.4.4), and
// what a search index holds of it: the header fields and the body as a
// reader sees them, not as they travel.
type Text struct {
	// Header has one line a field of the message's header: its name, a
	// colon and its value unfolded with encoded words decoded; then a line
	// a address of the From, To, Cc and Bcc fields as SEARCH FROM and the
	// others compare them ("name <mailbox@host>").
	Header []byte
	// Body is the text of the body's text parts, their transfer encoding
	// undone and their charset converted to UTF-8 (HTML without its tags),
	// with the MIME header fields of the parts and the header of the
	// messages it carries, decoded as Header's.
	Body []byte
}

// wordDecoder decodes RFC 2047 encoded words in any charset htmlindex
// knows.
var wordDecoder = mime.WordDecoder{CharsetReader: func(charset string, r io.Reader) (io.Reader, error) {
	enc, err := htmlindex.Get(charset)
	if err != nil {
		return nil, err
	}
	return enc.NewDecoder().Reader(r), nil
}}

// DecodeWords decodes a header value's RFC 2047 encoded words, leaving
// the text as it is when they do not decode; what they decode to is made
// valid UTF-8.
func DecodeWords(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	d, err := wordDecoder.DecodeHeader(s)
	if err != nil {
		return s
	}
	return strings.ToValidUTF8(d, "\uFFFD")
}

// AddressText is an address as SEARCH FROM, TO, CC and BCC compare it:
// "name <mailbox@host>" with the name decoded, or a group's name.
func AddressText(a Address) string {
	if a.Group != "" {
		return DecodeWords(a.Group)
	}
	return DecodeWords(a.Name) + " <" + a.Mailbox + "@" + a.Host + ">"
}

// SearchText extracts the Text of msg, parsed as root; each of its halves
// is cut at limit octets.
func SearchText(msg []byte, root *Part, limit int) Text {
	t := textWriter{limit: limit}
	t.text = make([]byte, 0, min(limit, len(msg)))
	end := min(root.BodyStart, int64(len(msg)))
	h, _ := splitHeader(msg[min(root.Start, end):end])
	for _, f := range h.fields {
		t.add(&t.header, f.name, ": ", DecodeWords(unfold(h.raw[f.start:f.end])), "\n")
	}
	if env := root.Envelope; env != nil {
		for _, l := range [][]Address{env.From, env.To, env.Cc, env.Bcc} {
			for _, a := range l {
				if !a.GroupEnd {
					t.add(&t.header, AddressText(a), "\n")
				}
			}
		}
	}
	t.body(msg, root, false)
	return Text{Header: t.header, Body: t.text}
}

// textWriter collects a Text up to its limit.
type textWriter struct {
	header, text []byte
	limit        int
}

func (t *textWriter) add(to *[]byte, parts ...string) {
	for _, p := range parts {
		if room := t.limit - len(*to); len(p) > room {
			p = p[:max(room, 0)]
		}
		*to = append(*to, p...)
	}
}

// addBytes is add of one []byte.
func (t *textWriter) addBytes(to *[]byte, b []byte) {
	if room := t.limit - len(*to); len(b) > room {
		b = b[:max(room, 0)]
	}
	*to = append(*to, b...)
}

// body adds the text of part's body; withHeader adds its header fields
// first (a message carried in another).
func (t *textWriter) body(msg []byte, part *Part, withHeader bool) {
	if len(t.text) >= t.limit {
		return
	}
	if withHeader {
		end := min(part.BodyStart, int64(len(msg)))
		h, _ := splitHeader(msg[min(part.Start, end):end])
		for _, f := range h.fields {
			t.add(&t.text, f.name, ": ", DecodeWords(unfold(h.raw[f.start:f.end])), "\n")
		}
	}
	switch {
	case part.Message != nil:
		t.body(msg, part.Message, true)
	case len(part.Parts) > 0:
		for _, c := range part.Parts {
			t.body(msg, c, true) // a part's MIME header is part of the body
		}
	case part.Type == "text":
		start, end := min(part.BodyStart, int64(len(msg))), min(part.End, int64(len(msg)))
		text := decodeText(msg[start:max(start, end)], part.Encoding, param(part.Params, "charset"), t.limit-len(t.text))
		if part.Subtype == "html" {
			text = []byte(htmlText(string(text)))
		}
		t.addBytes(&t.text, text)
		t.add(&t.text, "\n")
	}
}

// decodeText undoes a body's transfer encoding and converts it to UTF-8,
// reading at most about limit octets of text. A body that needs neither is
// returned as it is, not copied.
func decodeText(b []byte, encoding, charset string, limit int) []byte {
	identity := charset == "" || strings.EqualFold(charset, "utf-8") || strings.EqualFold(charset, "us-ascii")
	// An encoding that cannot be undone is searched as it is, as the
	// identity ones.
	r, _ := DecodeTransfer(bytes.NewReader(b), encoding)
	if identity && r == nil {
		return b[:min(len(b), max(limit, 0))]
	}
	if r == nil {
		r = bytes.NewReader(b)
	}
	if !identity {
		if enc, err := htmlindex.Get(charset); err == nil {
			r = enc.NewDecoder().Reader(r)
		}
	}
	out := bytes.NewBuffer(make([]byte, 0, min(len(b), max(limit, 0))+bytes.MinRead))
	out.ReadFrom(io.LimitReader(r, int64(max(limit, 0))))
	return out.Bytes()
}

// DecodeTransfer returns a reader of r with a Content-Transfer-Encoding
// (as Part.Encoding has it, upper case) undone: nil for the identity
// encodings ("", 7BIT, 8BIT, BINARY), and known false for one it cannot
// decode.
func DecodeTransfer(r io.Reader, encoding string) (_ io.Reader, known bool) {
	switch encoding {
	case "", "7BIT", "8BIT", "BINARY":
		return nil, true
	case "BASE64":
		return base64.NewDecoder(base64.StdEncoding, &base64Alphabet{r: r}), true
	case "QUOTED-PRINTABLE":
		return quotedprintable.NewReader(r), true
	}
	return nil, false
}

// base64Alphabet passes on only the characters of the base64 alphabet, as
// a decoder of mail should (RFC 2045 6.8: line breaks and others are
// ignored).
type base64Alphabet struct{ r io.Reader }

func (c *base64Alphabet) Read(p []byte) (int, error) {
	for {
		n, err := c.r.Read(p)
		j := 0
		for _, b := range p[:n] {
			if b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '+' || b == '/' || b == '=' {
				p[j] = b
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

// htmlText is the text of an HTML body: tags, comments, scripts and
// styles removed, character references decoded.
func htmlText(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		lt := strings.IndexByte(s, '<')
		if lt < 0 {
			b.WriteString(html.UnescapeString(s))
			break
		}
		b.WriteString(html.UnescapeString(s[:lt]))
		s = s[lt:]
		skipTo := ">"
		switch lower := strings.ToLower(s[:min(len(s), 8)]); {
		case strings.HasPrefix(lower, "<!--"):
			skipTo = "-->"
		case strings.HasPrefix(lower, "<script"):
			skipTo = "</script>"
		case strings.HasPrefix(lower, "<style"):
			skipTo = "</style>"
		}
		end := indexFold(s, skipTo)
		if end < 0 {
			break
		}
		if blockTags[tagName(s)] {
			b.WriteByte('\n')
		}
		s = s[end+len(skipTo):]
	}
	return b.String()
}

// blockTags are the HTML elements that break the text; the others
// (b, i, a, span...) run on within it.
var blockTags = map[string]bool{
	"br": true, "p": true, "div": true, "li": true, "tr": true, "td": true, "th": true, "table": true, "ul": true, "ol": true,
	"h1": true, "h2": true, "h3": true, "h4": true, "h5": true, "h6": true, "blockquote": true, "hr": true, "title": true, "pre": true,
}

// tagName is the lower-case name of the tag s starts with ("<p>",
// "</P>", "<br/>").
func tagName(s string) string {
	s = strings.TrimPrefix(s[1:], "/")
	end := strings.IndexAny(s, " \t\r\n/>")
	if end < 0 {
		end = len(s)
	}
	return strings.ToLower(s[:end])
}

// indexFold is strings.Index without regard to ASCII case.
func indexFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

// param returns a parameter's value from a name, value list.
func param(params []string, name string) string {
	for i := 0; i+1 < len(params); i += 2 {
		if params[i] == name {
			return params[i+1]
		}
	}
	return ""
}
