package smtp

import (
	"errors"
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Command
		err  error
	}{
		{name: "a verb alone parses", line: "NOOP\r\n", want: Command{Verb: "NOOP"}},
		{name: "the argument is everything after the first space", line: "MAIL FROM:<a@b.example> SIZE=10\r\n",
			want: Command{Verb: "MAIL", Arg: "FROM:<a@b.example> SIZE=10"}},
		{name: "verbs are case-insensitive and returned in upper case", line: "ehLo client.example\r\n",
			want: Command{Verb: "EHLO", Arg: "client.example"}},
		{name: "the argument keeps its case and inner spaces", line: "HELP  Some Topic \r\n",
			want: Command{Verb: "HELP", Arg: " Some Topic "}},
		{name: "a trailing space gives an empty argument", line: "QUIT \r\n", want: Command{Verb: "QUIT"}},
		{name: "a verb of ten characters is accepted", line: "ABCDEFGHIJ\r\n", want: Command{Verb: "ABCDEFGHIJ"}},
		{name: "digits are allowed in a verb", line: "X2 y\r\n", want: Command{Verb: "X2", Arg: "y"}},
		{name: "non-ASCII in the argument is kept", line: "VRFY ünïcode\r\n", want: Command{Verb: "VRFY", Arg: "ünïcode"}},

		{name: "a line ending in a bare LF is refused", line: "NOOP\n", err: ErrBareLineEnding},
		{name: "a line ending in a bare CR is refused", line: "NOOP\r", err: ErrBareLineEnding},
		{name: "a line without any line ending is refused", line: "NOOP", err: ErrBareLineEnding},
		{name: "a line ending in LF CR is refused", line: "NOOP\n\r", err: ErrBareLineEnding},
		{name: "a bare CR inside the line is refused", line: "MAIL FROM:<a@b>\rRCPT TO:<c@d>\r\n", err: ErrBareLineEnding},
		{name: "a bare LF inside the line is refused", line: "MAIL FROM:<a@b>\nRCPT TO:<c@d>\r\n", err: ErrBareLineEnding},
		{name: "a CRLF inside the line is refused", line: "NOOP\r\nNOOP\r\n", err: ErrBareLineEnding},
		{name: "a doubled CR before LF is refused", line: "NOOP\r\r\n", err: ErrBareLineEnding},
		{name: "an empty input is refused", line: "", err: ErrBareLineEnding},
		{name: "a lone LF is refused", line: "\n", err: ErrBareLineEnding},
		{name: "an empty line is an empty command", line: "\r\n", err: ErrEmptyCommand},
		{name: "a line starting with a space has no verb", line: " NOOP\r\n", err: ErrBadCommand},
		{name: "a line of spaces has no verb", line: "   \r\n", err: ErrBadCommand},
		{name: "a verb of eleven characters is refused", line: "ABCDEFGHIJK\r\n", err: ErrBadCommand},
		{name: "a very long verb is refused", line: strings.Repeat("A", 1000) + "\r\n", err: ErrBadCommand},
		{name: "a colon in the verb is refused", line: "MAIL:FROM\r\n", err: ErrBadCommand},
		{name: "a tab after the verb is not a separator", line: "NOOP\tx\r\n", err: ErrBadCommand},
		{name: "a hyphen in the verb is refused", line: "X-FOO\r\n", err: ErrBadCommand},
		{name: "a NUL in the verb is refused", line: "NO\x00OP\r\n", err: ErrBadCommand},
		{name: "a non-ASCII verb is refused", line: "NÖOP\r\n", err: ErrBadCommand},
		{name: "a TLS record header is refused", line: "\x16\x03\x01\x02\x00\x01\r\n", err: ErrBadCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCommand([]byte(tt.line))
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("ParseCommand(%q) error = %v, want %v", tt.line, err, tt.err)
				}
				if got != (Command{}) {
					t.Errorf("ParseCommand(%q) = %+v with an error, want the zero Command", tt.line, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCommand(%q) error = %v", tt.line, err)
			}
			if got != tt.want {
				t.Errorf("ParseCommand(%q) = %+v, want %+v", tt.line, got, tt.want)
			}
		})
	}
}

func TestCommandErrorsAreSyntaxReplies(t *testing.T) {
	for _, r := range []*Reply{ErrBareLineEnding, ErrLineTooLong, ErrEmptyCommand, ErrBadCommand} {
		t.Run(r.Text+" is a 500 reply", func(t *testing.T) {
			if r.Code != 500 || !r.Permanent() || !strings.HasPrefix(r.Enhanced, "5.5.") {
				t.Errorf("reply = %d %s, want 500 5.5.x", r.Code, r.Enhanced)
			}
		})
	}
}

func TestCutPrefixFold(t *testing.T) {
	tests := []struct {
		name, s, prefix, rest string
		ok                    bool
	}{
		{"an upper-case prefix is cut", "FROM:<a@b>", "FROM:", "<a@b>", true},
		{"a mixed-case prefix is cut", "fRoM:<a@b>", "FROM:", "<a@b>", true},
		{"the prefix alone leaves nothing", "to:", "TO:", "", true},
		{"a different prefix is not cut", "TO:<a@b>", "FROM:", "TO:<a@b>", false},
		{"a string shorter than the prefix is not cut", "FR", "FROM:", "FR", false},
		{"a space before the colon does not match", "FROM :<a@b>", "FROM:", "FROM :<a@b>", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rest, ok := CutPrefixFold(tt.s, tt.prefix)
			if rest != tt.rest || ok != tt.ok {
				t.Errorf("CutPrefixFold(%q, %q) = %q, %v, want %q, %v", tt.s, tt.prefix, rest, ok, tt.rest, tt.ok)
			}
		})
	}
}
