package message

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSearchText(t *testing.T) {
	for _, c := range []struct {
		name, msg          string
		header, body, lack []string // in Header, in Body, in neither
	}{
		{
			name:   "encoded words and addresses",
			msg:    "From: =?utf-8?q?J=C3=B6rg?= <jorg@example.org>\r\nTo: a@b.example, Team: c@d.example;\r\nSubject: =?iso-8859-1?q?caf=E9?=\r\n folded\r\n\r\nplain body\r\n",
			header: []string{"from: Jörg <jorg@example.org>\n", "subject: café folded\n", "Jörg <jorg@example.org>\n", " <a@b.example>\n", "Team\n"},
			body:   []string{"plain body"},
		},
		{
			name: "base64 and quoted-printable in charsets",
			msg: "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
				"R3LDvMOfZSBhdXMg\r\nQmVybGlu\r\n--b\r\nContent-Type: text/plain; charset=iso-8859-15\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
				"Preis: 5 =A4, sof=\r\nt lieferbar\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nc2VjcmV0IGJpbmFyeQ==\r\n--b--\r\n",
			body: []string{"Grüße aus Berlin", "Preis: 5 €, soft lieferbar"},
			lack: []string{"secret binary", "R3LDvMOf"},
		},
		{
			name: "HTML without its markup",
			msg:  "Content-Type: text/html\r\n\r\n<html><style>p{color:red}</style><p>Fish &amp; <b>chips</b></p><!-- hidden --><script>var x</script></html>",
			body: []string{"Fish & chips"},
			lack: []string{"<b>", "color:red", "hidden", "var x"},
		},
		{
			name: "a forwarded message's header and text",
			msg:  "Content-Type: message/rfc822\r\n\r\nSubject: inner subject\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ninner=20text\r\n",
			body: []string{"subject: inner subject\n", "inner text"},
			lack: []string{"inner=20"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			txt := SearchText([]byte(c.msg), Parse([]byte(c.msg)), 1<<20)
			for _, w := range c.header {
				if !strings.Contains(string(txt.Header), w) {
					t.Errorf("header lacks %q:\n%s", w, txt.Header)
				}
			}
			for _, w := range c.body {
				if !strings.Contains(string(txt.Body), w) {
					t.Errorf("body lacks %q:\n%s", w, txt.Body)
				}
			}
			for _, w := range c.lack {
				if strings.Contains(string(txt.Header)+string(txt.Body), w) {
					t.Errorf("text has %q:\n%s\n%s", w, txt.Header, txt.Body)
				}
			}
		})
	}
}

// FuzzSearchText: any message gives text within the limit, and valid
// UTF-8 where the message's text was.
func FuzzSearchText(f *testing.F) {
	f.Add([]byte(nested), 100)
	f.Add([]byte("Content-Type: text/html; charset=shift_jis\r\nContent-Transfer-Encoding: base64\r\n\r\n<p>gqA=</p>"), 10)
	f.Fuzz(func(t *testing.T, msg []byte, limit int) {
		limit = max(0, min(limit, 1<<16))
		txt := SearchText(msg, Parse(msg), limit)
		if len(txt.Header) > limit || len(txt.Body) > limit {
			t.Fatalf("text over the limit %d: %d, %d", limit, len(txt.Header), len(txt.Body))
		}
		if utf8.Valid(msg) && !utf8.Valid(txt.Header) && len(txt.Header) < limit {
			t.Fatalf("header text not UTF-8: %q", txt.Header)
		}
	})
}
