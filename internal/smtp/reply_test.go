package smtp

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestReplyAppendTo(t *testing.T) {
	tests := []struct {
		name  string
		reply Reply
		want  string
	}{
		{name: "a one-line reply has a space after the code",
			reply: Reply{Code: 250, Enhanced: "2.0.0", Text: "OK"}, want: "250 2.0.0 OK\r\n"},
		{name: "a reply without an enhanced code has only the basic code",
			reply: Reply{Code: 220, Text: "mx.example.com ESMTP"}, want: "220 mx.example.com ESMTP\r\n"},
		{name: "a multi-line reply uses hyphens on all but the last line",
			reply: Reply{Code: 250, Text: "mx.example.com greets you\nPIPELINING\n8BITMIME"},
			want:  "250-mx.example.com greets you\r\n250-PIPELINING\r\n250 8BITMIME\r\n"},
		{name: "the enhanced code is repeated on every line",
			reply: Reply{Code: 550, Enhanced: "5.1.1", Text: "No such user\nSee the docs"},
			want:  "550-5.1.1 No such user\r\n550 5.1.1 See the docs\r\n"},
		{name: "an empty text gives one line",
			reply: Reply{Code: 354, Text: ""}, want: "354 \r\n"},
		{name: "a trailing newline gives an empty last line",
			reply: Reply{Code: 250, Text: "a\n"}, want: "250-a\r\n250 \r\n"},
		{name: "a CR in the text is replaced",
			reply: Reply{Code: 501, Enhanced: "5.1.3", Text: "bad <a@b>\r250 2.0.0 OK"},
			want:  "501 5.1.3 bad <a@b>?250 2.0.0 OK\r\n"},
		{name: "a CRLF in the text cannot start a reply of its own",
			reply: Reply{Code: 501, Enhanced: "5.1.3", Text: "bad\r\n250 OK"},
			want:  "501-5.1.3 bad?\r\n501 5.1.3 250 OK\r\n"},
		{name: "control characters are replaced",
			reply: Reply{Code: 500, Text: "a\x00b\x7fc\td\x1be"}, want: "500 a?b?c?d?e\r\n"},
		{name: "non-ASCII characters are replaced one for one",
			reply: Reply{Code: 250, Text: "jörg@münchen"}, want: "250 j?rg@m?nchen\r\n"},
		{name: "invalid UTF-8 is replaced",
			reply: Reply{Code: 250, Text: "a\xffb"}, want: "250 a?b\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(tt.reply.AppendTo(nil))
			if got != tt.want {
				t.Errorf("AppendTo = %q, want %q", got, tt.want)
			}
			lines := strings.SplitAfter(got, "\r\n")
			if lines[len(lines)-1] != "" {
				t.Fatalf("AppendTo = %q does not end in CRLF", got)
			}
			code := fmt.Sprint(tt.reply.Code)
			for i, l := range lines[:len(lines)-1] {
				sep := "-"
				if i == len(lines)-2 {
					sep = " "
				}
				body := strings.TrimSuffix(l, "\r\n")
				if !strings.HasPrefix(l, code+sep) || strings.ContainsAny(body, "\r\n") {
					t.Errorf("line %d = %q is not %q%q followed by text without CR or LF", i, l, code, sep)
				}
			}
		})
	}
	t.Run("AppendTo appends to what is already there", func(t *testing.T) {
		b := (&Reply{Code: 250, Text: "b"}).AppendTo([]byte("250-a\r\n"))
		if string(b) != "250-a\r\n250 b\r\n" {
			t.Errorf("AppendTo = %q", b)
		}
	})
}

func TestReplyError(t *testing.T) {
	tests := []struct {
		name  string
		reply *Reply
		str   string
		temp  bool
		perm  bool
	}{
		{"a success is neither temporary nor permanent", &Reply{250, "2.0.0", "OK"}, "250 2.0.0 OK", false, false},
		{"a reply without an enhanced code prints without it", &Reply{220, "", "ready"}, "220 ready", false, false},
		{"a 354 is neither temporary nor permanent", &Reply{354, "", "go ahead"}, "354 go ahead", false, false},
		{"a 421 is temporary", &Reply{421, "4.3.2", "shutting down"}, "421 4.3.2 shutting down", true, false},
		{"a 499 is temporary", &Reply{499, "4.0.0", "x"}, "499 4.0.0 x", true, false},
		{"a 500 is permanent", &Reply{500, "5.5.2", "x"}, "500 5.5.2 x", false, true},
		{"a 554 is permanent", &Reply{554, "5.0.0", "x"}, "554 5.0.0 x", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.reply
			if r.Error() != tt.str || r.Temporary() != tt.temp || r.Permanent() != tt.perm {
				t.Errorf("%+v: Error=%q Temporary=%v Permanent=%v, want %q %v %v", r, r.Error(), r.Temporary(), r.Permanent(), tt.str, tt.temp, tt.perm)
			}
		})
	}
}

func TestErrorf(t *testing.T) {
	t.Run("Errorf formats the text", func(t *testing.T) {
		r := Errorf(552, "5.3.4", "Message size %d exceeds %d", 10, 5)
		if *r != (Reply{552, "5.3.4", "Message size 10 exceeds 5"}) {
			t.Errorf("Errorf = %+v", r)
		}
	})
	t.Run("a wrapped reply is found with errors.As", func(t *testing.T) {
		err := fmt.Errorf("session: mail: %w", ErrPathSyntax)
		var r *Reply
		if !errors.As(err, &r) || r != ErrPathSyntax {
			t.Errorf("errors.As(%v) = %v", err, r)
		}
	})
}
