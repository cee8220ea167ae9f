package smtp

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// replyCode returns the SMTP code of err, or 0 when err is not a *Reply.
func replyCode(err error) int {
	var r *Reply
	if errors.As(err, &r) {
		return r.Code
	}
	return 0
}

func TestParseMailParams(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want MailParams
		code int // expected reply code; 0 for success
	}{
		{name: "no parameters give the zero value", in: ""},
		{name: "spaces alone give the zero value", in: "   "},

		// RFC 1870 SIZE.
		{name: "SIZE is parsed", in: "SIZE=1000", want: MailParams{Size: 1000}},
		{name: "parameter names are case-insensitive", in: "size=1000", want: MailParams{Size: 1000}},
		{name: "SIZE=0 is allowed", in: "SIZE=0", want: MailParams{}},
		{name: "the largest int64 SIZE is allowed", in: "SIZE=9223372036854775807", want: MailParams{Size: 9223372036854775807}},
		{name: "a SIZE beyond int64 is refused", in: "SIZE=99999999999999999999", code: 501},
		{name: "a negative SIZE is refused", in: "SIZE=-1", code: 501},
		{name: "a SIZE with a plus sign is refused", in: "SIZE=+5", code: 501},
		{name: "a SIZE with a unit is refused", in: "SIZE=1k", code: 501},
		{name: "a hexadecimal SIZE is refused", in: "SIZE=0x10", code: 501},
		{name: "SIZE without a value is refused", in: "SIZE", code: 501},
		{name: "SIZE with an empty value is refused", in: "SIZE=", code: 501},

		// RFC 6152 BODY.
		{name: "BODY=7BIT is accepted", in: "BODY=7BIT", want: MailParams{Body: "7BIT"}},
		{name: "BODY=8BITMIME is accepted", in: "BODY=8BITMIME", want: MailParams{Body: "8BITMIME"}},
		{name: "a BODY value is upper-cased", in: "body=8bitmime", want: MailParams{Body: "8BITMIME"}},
		{name: "BODY=BINARYMIME is refused as unsupported", in: "BODY=BINARYMIME", code: 555},
		{name: "an unknown BODY value is refused", in: "BODY=9BIT", code: 555},

		// RFC 6531 SMTPUTF8.
		{name: "SMTPUTF8 is accepted", in: "SMTPUTF8", want: MailParams{SMTPUTF8: true}},
		{name: "SMTPUTF8 with a value is refused", in: "SMTPUTF8=yes", code: 501},
		// RFC 8689 REQUIRETLS.
		{name: "REQUIRETLS is accepted", in: "REQUIRETLS", want: MailParams{RequireTLS: true}},
		{name: "REQUIRETLS with a value is refused", in: "requiretls=yes", code: 501},

		// RFC 3461 RET and ENVID.
		{name: "RET=FULL is accepted", in: "RET=FULL", want: MailParams{Ret: "FULL"}},
		{name: "RET=HDRS is accepted in any case", in: "ret=hdrs", want: MailParams{Ret: "HDRS"}},
		{name: "an unknown RET value is refused", in: "RET=BOTH", code: 501},
		{name: "RET without a value is refused", in: "RET", code: 501},
		{name: "a plain ENVID is kept", in: "ENVID=QQ314159", want: MailParams{EnvID: "QQ314159"}},
		{name: "an ENVID has its xtext decoded", in: "ENVID=a+2Bb+3Dc", want: MailParams{EnvID: "a+b=c"}},
		{name: "an ENVID may hold an encoded space", in: "ENVID=a+20b", want: MailParams{EnvID: "a b"}},
		{name: "an ENVID with lower-case hex is refused", in: "ENVID=a+2bb", code: 501},
		{name: "an ENVID with a short escape is refused", in: "ENVID=a+2", code: 501},
		{name: "an ENVID ending in a plus sign is refused", in: "ENVID=a+", code: 501},
		{name: "an ENVID with a non-hex escape is refused", in: "ENVID=a+ZZ", code: 501},
		{name: "an ENVID decoding to CRLF is refused", in: "ENVID=a+0D+0AX-Injected:+20yes", code: 501},
		{name: "an ENVID decoding to NUL is refused", in: "ENVID=a+00", code: 501},
		{name: "an ENVID decoding to non-ASCII is refused", in: "ENVID=+C3+A9", code: 501},
		{name: "ENVID without a value is refused", in: "ENVID", code: 501},
		{name: "an ENVID of 100 characters is allowed", in: "ENVID=" + strings.Repeat("x", 100), want: MailParams{EnvID: strings.Repeat("x", 100)}},
		{name: "an ENVID of 101 characters is refused", in: "ENVID=" + strings.Repeat("x", 101), code: 501},

		// Several parameters.
		{name: "all parameters together are parsed", in: "SIZE=10 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id1",
			want: MailParams{Size: 10, Body: "8BITMIME", SMTPUTF8: true, Ret: "HDRS", EnvID: "id1"}},
		{name: "repeated spaces between parameters are allowed", in: "SIZE=1  BODY=7BIT ", want: MailParams{Size: 1, Body: "7BIT"}},
		{name: "a parameter given twice is refused", in: "SIZE=1 SIZE=2", code: 501},
		{name: "a parameter given twice in different case is refused", in: "SIZE=1 size=1", code: 501},
		{name: "SMTPUTF8 given twice is refused", in: "SMTPUTF8 SMTPUTF8", code: 501},
		{name: "an empty parameter name is refused", in: "=x", code: 501},

		// Unknown parameters.
		{name: "an unknown parameter is refused with 555", in: "FOO=bar", code: 555},
		{name: "AUTH= without a value is refused", in: "AUTH=", code: 501},
		{name: "a RCPT parameter is refused in MAIL", in: "NOTIFY=NEVER", code: 555},
		{name: "an unknown parameter after good ones is refused", in: "SIZE=1 XYZ", code: 555},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMailParams(tt.in)
			if tt.code != 0 {
				if replyCode(err) != tt.code {
					t.Fatalf("ParseMailParams(%q) error = %v, want a %d reply", tt.in, err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseMailParams(%q) error = %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseMailParams(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseRcptParams(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want RcptParams
		code int
	}{
		{name: "no parameters give the zero value", in: ""},

		// RFC 3461 NOTIFY.
		{name: "NOTIFY=NEVER alone is accepted", in: "NOTIFY=NEVER", want: RcptParams{Notify: []string{"NEVER"}}},
		{name: "NOTIFY with all three events is accepted", in: "NOTIFY=SUCCESS,FAILURE,DELAY", want: RcptParams{Notify: []string{"SUCCESS", "FAILURE", "DELAY"}}},
		{name: "NOTIFY values are upper-cased", in: "notify=failure,delay", want: RcptParams{Notify: []string{"FAILURE", "DELAY"}}},
		{name: "NOTIFY=NEVER with SUCCESS is refused", in: "NOTIFY=NEVER,SUCCESS", code: 501},
		{name: "NOTIFY=SUCCESS with NEVER is refused", in: "NOTIFY=SUCCESS,NEVER", code: 501},
		{name: "NOTIFY with an event twice is refused", in: "NOTIFY=SUCCESS,SUCCESS", code: 501},
		{name: "NOTIFY with a trailing comma is refused", in: "NOTIFY=SUCCESS,", code: 501},
		{name: "NOTIFY with an unknown event is refused", in: "NOTIFY=ALWAYS", code: 501},
		{name: "NOTIFY with spaces in the list is refused", in: "NOTIFY=SUCCESS, FAILURE", code: 501},
		{name: "NOTIFY without a value is refused", in: "NOTIFY", code: 501},

		// RFC 3461 ORCPT.
		{name: "ORCPT has its xtext decoded", in: "ORCPT=rfc822;a+40b.example", want: RcptParams{ORcpt: "rfc822;a@b.example"}},
		{name: "ORCPT keeps a plain at sign", in: "ORCPT=rfc822;user@example.com", want: RcptParams{ORcpt: "rfc822;user@example.com"}},
		{name: "the ORCPT address type is lower-cased", in: "ORCPT=RFC822;u@example.com", want: RcptParams{ORcpt: "rfc822;u@example.com"}},
		{name: "an ORCPT with an encoded plus sign is decoded", in: "ORCPT=rfc822;a+2Btag@example.com", want: RcptParams{ORcpt: "rfc822;a+tag@example.com"}},
		{name: "an ORCPT without a type is refused", in: "ORCPT=;u@example.com", code: 501},
		{name: "an ORCPT type with a non-ASCII octet is refused", in: "ORCPT=\x92;0", code: 501},
		{name: "an ORCPT type with a control character is refused", in: "ORCPT=rfc\x1b822;u@example.com", code: 501},
		{name: "an ORCPT type with a special is refused", in: "ORCPT=rfc<822>;u@example.com", code: 501},
		{name: "an ORCPT without a semicolon is refused", in: "ORCPT=rfc822", code: 501},
		{name: "an ORCPT without an address is refused", in: "ORCPT=rfc822;", code: 501},
		{name: "an ORCPT with bad xtext is refused", in: "ORCPT=rfc822;a+4", code: 501},
		{name: "an ORCPT decoding to CRLF is refused", in: "ORCPT=rfc822;a@b+0D+0ASubject:+20x", code: 501},
		{name: "an ORCPT decoding to a tab is refused", in: "ORCPT=rfc822;a+09b@example.com", code: 501},
		{name: "an ORCPT over 500 characters is refused", in: "ORCPT=rfc822;" + strings.Repeat("a", 500), code: 501},

		// Several parameters.
		{name: "NOTIFY and ORCPT together are parsed", in: "NOTIFY=FAILURE ORCPT=rfc822;u@example.com",
			want: RcptParams{Notify: []string{"FAILURE"}, ORcpt: "rfc822;u@example.com"}},
		{name: "NOTIFY given twice is refused", in: "NOTIFY=NEVER NOTIFY=NEVER", code: 501},
		{name: "an unknown parameter is refused with 555", in: "FOO", code: 555},
		{name: "a MAIL parameter is refused in RCPT", in: "SIZE=1", code: 555},
		{name: "RET is refused in RCPT", in: "RET=FULL", code: 555},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRcptParams(tt.in)
			if tt.code != 0 {
				if replyCode(err) != tt.code {
					t.Fatalf("ParseRcptParams(%q) error = %v, want a %d reply", tt.in, err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRcptParams(%q) error = %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseRcptParams(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestDecodeXtext(t *testing.T) {
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"an empty string decodes to nothing", "", "", true},
		{"plain characters are kept", "abc-123@x.example", "abc-123@x.example", true},
		{"an escaped plus sign is decoded", "+2B", "+", true},
		{"an escaped equals sign is decoded", "a+3Db", "a=b", true},
		{"an escaped NUL is decoded", "+00", "\x00", true},
		{"an escaped high octet is decoded", "+FF", "\xff", true},
		{"a lone plus sign is refused", "+", "", false},
		{"a plus sign with one digit is refused", "+2", "", false},
		{"a plus sign at the end is refused", "ab+", "", false},
		{"lower-case hex is refused", "+2b", "", false},
		{"non-hex digits are refused", "+G0", "", false},
		{"a sign after the plus is refused", "+-1", "", false},
		{"a raw equals sign is refused", "a=b", "", false},
		{"a raw space is refused", "a b", "", false},
		{"a raw DEL is refused", "a\x7f", "", false},
		{"a raw control character is refused", "a\r\n", "", false},
		{"raw UTF-8 is refused", "é", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := DecodeXtext(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Errorf("DecodeXtext(%q) = %q, %v, want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestEncodeXtext(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"an empty string encodes to nothing", "", ""},
		{"plain characters are kept", "abc@x.example", "abc@x.example"},
		{"plus, equals and space are escaped", "a+b=c d", "a+2Bb+3Dc+20d"},
		{"control characters are escaped", "\x00\r\n\x7f", "+00+0D+0A+7F"},
		{"UTF-8 is escaped octet by octet", "é", "+C3+A9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EncodeXtext(tt.in); got != tt.want {
				t.Errorf("EncodeXtext(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestXtextRoundTrip(t *testing.T) {
	var all strings.Builder
	for c := 0; c < 256; c++ {
		all.WriteByte(byte(c))
	}
	for _, s := range []string{"", "a", "+", "=", "a+b=c", "ENVID with spaces", "jörg@münchen.de", all.String()} {
		t.Run("xtext of "+EncodeXtext(s)+" decodes back", func(t *testing.T) {
			enc := EncodeXtext(s)
			dec, ok := DecodeXtext(enc)
			if !ok || dec != s {
				t.Errorf("DecodeXtext(EncodeXtext(%q)) = %q, %v", s, dec, ok)
			}
			for i := 0; i < len(enc); i++ {
				if c := enc[i]; c < 33 || c > 126 || c == '=' {
					t.Fatalf("EncodeXtext(%q) = %q holds %q", s, enc, c)
				}
			}
		})
	}
}
