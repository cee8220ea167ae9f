package message

import (
	"bytes"
	"strings"
)

// header is an entity's header section split into fields.
type header struct {
	raw    []byte
	fields []field
}

// field is one header field: raw[start:end] is its value, folded, after
// the name and colon, up to the end of its last line.
type field struct {
	name       string // lower case
	line       int    // where the field begins, its name
	start, end int
}

// splitHeader parses the header section at the start of b and returns it
// with the offset of the body: after the first empty line (CRLF CRLF, or
// LF LF in a message stored with bare LFs), or the end of b when there is
// none. Lines that are neither fields nor continuations are skipped.
func splitHeader(b []byte) (header, int) {
	h := header{raw: b}
	end := len(b)
	for p := 0; p < len(b); {
		lineEnd := len(b)
		if nl := bytes.IndexByte(b[p:], '\n'); nl >= 0 {
			lineEnd = p + nl + 1
		}
		line := b[p:lineEnd]
		switch name, _, ok := bytes.Cut(line, []byte(":")); {
		case len(bytes.TrimRight(line, "\r\n")) == 0:
			return h, lineEnd
		case line[0] == ' ' || line[0] == '\t':
			if len(h.fields) > 0 {
				h.fields[len(h.fields)-1].end = lineEnd
			}
		case ok:
			if n := bytes.TrimRight(name, " \t"); len(n) > 0 && !bytes.ContainsAny(n, " \t") {
				h.fields = append(h.fields, field{name: strings.ToLower(string(n)), line: p, start: p + len(name) + 1, end: lineEnd})
			}
		}
		p = lineEnd
	}
	return h, end
}

// Field is one header field as written: Name in lower case, Raw the whole
// field (name, colon, folded value, line end).
type Field struct {
	Name string
	Raw  []byte
}

// Fields splits the header section at the start of b into its fields, in
// order, and returns where the body starts (as splitHeader does: lines
// that are neither fields nor continuations are left out).
func Fields(b []byte) ([]Field, int) {
	h, body := splitHeader(b)
	out := make([]Field, len(h.fields))
	for i, f := range h.fields {
		out[i] = Field{Name: f.name, Raw: b[f.line:f.end]}
	}
	return out, body
}

// get returns the unfolded value of the first field of the name, trimmed;
// "" when there is none.
func (h header) get(name string) string {
	for _, f := range h.fields {
		if f.name == name {
			return unfold(h.raw[f.start:f.end])
		}
	}
	return ""
}

// unfold joins the lines of a folded value (RFC 5322 2.2.3), dropping
// CR and LF, and trims the white space around it.
func unfold(v []byte) string {
	var b strings.Builder
	for line := range bytes.Lines(v) {
		line = bytes.TrimRight(line, "\r\n")
		b.Write(line)
	}
	return strings.Trim(b.String(), " \t")
}

// envelope builds the ENVELOPE of a message's header (RFC 9051 7.5.2):
// Sender and Reply-To default to From.
func envelope(h header) *Envelope {
	e := &Envelope{
		Date:       h.get("date"),
		Subject:    h.get("subject"),
		From:       ParseAddressList(h.get("from")),
		Sender:     ParseAddressList(h.get("sender")),
		ReplyTo:    ParseAddressList(h.get("reply-to")),
		To:         ParseAddressList(h.get("to")),
		Cc:         ParseAddressList(h.get("cc")),
		Bcc:        ParseAddressList(h.get("bcc")),
		InReplyTo:  h.get("in-reply-to"),
		MessageID:  h.get("message-id"),
		References: MessageIDs(h.get("references")),
	}
	if len(e.Sender) == 0 {
		e.Sender = e.From
	}
	if len(e.ReplyTo) == 0 {
		e.ReplyTo = e.From
	}
	return e
}

// MessageIDs returns the "<...>" message ids of a field (References,
// In-Reply-To), in order; what is between them (comments, phrases) is
// skipped.
func MessageIDs(v string) []string {
	var out []string
	for {
		i := strings.IndexByte(v, '<')
		if i < 0 {
			return out
		}
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			return out
		}
		if id := v[i : i+j+1]; len(id) > 2 && !strings.ContainsAny(id, " \t") {
			out = append(out, id)
		}
		v = v[i+j+1:]
	}
}
