package webhook

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"

	"golang.org/x/text/encoding/htmlindex"
)

// Inbound is a received message as an application wants it: the fields
// it reads most, the text and HTML bodies decoded to UTF-8, the
// attachments, and the raw message for anything else.
type Inbound struct {
	From        string       `json:"from"`
	To          []string     `json:"to"`
	Cc          []string     `json:"cc,omitempty"`
	Subject     string       `json:"subject"`
	Date        string       `json:"date,omitempty"`
	MessageID   string       `json:"message_id,omitempty"`
	InReplyTo   string       `json:"in_reply_to,omitempty"`
	Headers     [][2]string  `json:"headers"` // every field in order, decoded
	Text        string       `json:"text,omitempty"`
	HTML        string       `json:"html,omitempty"`
	Attachments []Attachment `json:"attachments,omitempty"`
	Raw         string       `json:"raw"` // base64 of the message as stored
}

// Attachment is a part that is not the text or the HTML body.
type Attachment struct {
	Filename    string `json:"filename,omitempty"`
	ContentType string `json:"content_type"`
	ContentID   string `json:"content_id,omitempty"`
	Size        int    `json:"size"`
	Content     string `json:"content,omitempty"` // base64; left out of a message over 5 MiB (Raw has it)
}

// Bounds on what Parse walks: a message nested deeper or split further is
// posted with what was read until then (and always whole in Raw).
const (
	maxDepth = 10
	maxParts = 200
)

var decoder = &mime.WordDecoder{CharsetReader: func(charset string, r io.Reader) (io.Reader, error) {
	enc, err := htmlindex.Get(charset)
	if err != nil {
		return nil, err
	}
	return enc.NewDecoder().Reader(r), nil
}}

func decodeHeader(v string) string {
	if d, err := decoder.DecodeHeader(v); err == nil {
		return d
	}
	return v
}

// Parse reads a message; what cannot be parsed is left out (Raw has it
// all).
func Parse(raw []byte) *Inbound {
	in := &Inbound{Raw: base64.StdEncoding.EncodeToString(raw), Headers: [][2]string{}}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return in
	}
	for _, f := range headerOrder(raw) {
		for _, v := range m.Header[f] {
			in.Headers = append(in.Headers, [2]string{f, decodeHeader(v)})
		}
	}
	in.From = decodeHeader(m.Header.Get("From"))
	in.Subject = decodeHeader(m.Header.Get("Subject"))
	in.Date = m.Header.Get("Date")
	in.MessageID = m.Header.Get("Message-Id")
	in.InReplyTo = m.Header.Get("In-Reply-To")
	for _, f := range []struct {
		name string
		dst  *[]string
	}{{"To", &in.To}, {"Cc", &in.Cc}} {
		if list, err := (&mail.AddressParser{WordDecoder: decoder}).ParseList(m.Header.Get(f.name)); err == nil {
			for _, a := range list {
				*f.dst = append(*f.dst, a.String())
			}
		}
	}
	parts := 0
	in.walk(m.Header.Get("Content-Type"), m.Header.Get("Content-Transfer-Encoding"), "", "", m.Body, 0, &parts)
	return in
}

// headerOrder lists the header's field names in order, each once, as
// net/textproto canonicalizes them.
func headerOrder(raw []byte) []string {
	end := bytes.Index(raw, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(raw)
	}
	var names []string
	seen := map[string]bool{}
	for _, line := range strings.Split(string(raw[:end]), "\r\n") {
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		name, _, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name = textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name))
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	return names
}

// walk reads one part: a text or HTML body the first time one is met
// outside an attachment, an attachment otherwise, or the parts of a
// multipart.
func (in *Inbound) walk(ctype, cte, disposition, cid string, body io.Reader, depth int, parts *int) {
	if *parts++; *parts > maxParts || depth > maxDepth {
		return
	}
	mt, params, err := mime.ParseMediaType(ctype)
	if ctype == "" || err != nil {
		mt, params = "text/plain", map[string]string{"charset": "us-ascii"}
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				return
			}
			in.walk(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p.Header.Get("Content-Disposition"),
				p.Header.Get("Content-Id"), p, depth+1, parts)
		}
	}
	data, err := io.ReadAll(decodeBody(cte, body))
	if err != nil {
		return
	}
	disp, dparams, _ := mime.ParseMediaType(disposition)
	filename := decodeHeader(dparams["filename"])
	if filename == "" {
		filename = decodeHeader(params["name"])
	}
	if disp != "attachment" && filename == "" {
		switch {
		case mt == "text/plain" && in.Text == "":
			in.Text = toUTF8(data, params["charset"])
			return
		case mt == "text/html" && in.HTML == "":
			in.HTML = toUTF8(data, params["charset"])
			return
		}
	}
	in.Attachments = append(in.Attachments, Attachment{Filename: filename, ContentType: mt, ContentID: strings.Trim(cid, "<> "),
		Size: len(data), Content: base64.StdEncoding.EncodeToString(data)})
}

func decodeBody(cte string, r io.Reader) io.Reader {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, &lineless{r: r})
	case "quoted-printable":
		return quotedprintable.NewReader(r)
	}
	return r
}

// lineless drops line breaks and spaces from base64 text, which
// base64.NewDecoder does not take.
type lineless struct{ r io.Reader }

func (l *lineless) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	j := 0
	for _, c := range p[:n] {
		if c != '\r' && c != '\n' && c != ' ' && c != '\t' {
			p[j] = c
			j++
		}
	}
	if j == 0 && err == nil && n > 0 {
		return l.Read(p)
	}
	return j, err
}

func toUTF8(b []byte, charset string) string {
	charset = strings.ToLower(charset)
	if charset == "" || charset == "utf-8" || charset == "us-ascii" {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	enc, err := htmlindex.Get(charset)
	if err != nil {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	out, err := enc.NewDecoder().Bytes(b)
	if err != nil {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	return string(out)
}
