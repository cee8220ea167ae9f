package webhook

import (
	"testing"
	"unicode/utf8"
)

func TestParseInbound(t *testing.T) {
	msg := "From: =?UTF-8?q?J=C3=B6rg?= <j@example.org>\r\nTo: a@example.test, \"B\" <b@example.test>\r\nSubject: hi\r\n" +
		"Content-Type: multipart/alternative; boundary=z\r\n\r\n--z\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain\r\n" +
		"--z\r\nContent-Type: text/html; charset=windows-1252\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>caf=E9</p>\r\n--z--\r\n"
	in := Parse([]byte(msg))
	if in.From != "Jörg <j@example.org>" || len(in.To) != 2 || in.Text != "plain" || in.HTML != "<p>café</p>" || len(in.Headers) != 4 {
		t.Errorf("Parse = %+v", in)
	}
	if in := Parse([]byte("not a message")); in.Raw == "" || in.Text != "" {
		t.Errorf("Parse of nonsense = %+v", in)
	}
}

func FuzzParseInbound(f *testing.F) {
	f.Add("Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n")
	f.Fuzz(func(t *testing.T, msg string) {
		in := Parse([]byte(msg))
		if in.Raw == "" && msg != "" {
			t.Error("no raw message")
		}
		if len(in.Attachments) > maxParts {
			t.Errorf("%d parts", len(in.Attachments))
		}
		if !utf8.ValidString(in.Text) || !utf8.ValidString(in.HTML) {
			t.Errorf("text or HTML not UTF-8: %q %q", in.Text, in.HTML)
		}
	})
}
