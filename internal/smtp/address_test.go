package smtp

import (
	"errors"
	"strings"
	"testing"
)

// longPath returns "<" + local + "@" + domain + ">" with a local part of
// localLen octets and a domain making the whole path total octets long.
func longPath(t *testing.T, localLen, total int) string {
	t.Helper()
	domainLen := total - localLen - 3
	var labels []string
	for domainLen > 0 {
		n := min(domainLen, 63)
		if domainLen-n == 1 { // a label cannot be followed by a lone dot
			n--
		}
		labels = append(labels, strings.Repeat("d", n))
		domainLen -= n + 1
	}
	p := "<" + strings.Repeat("l", localLen) + "@" + strings.Join(labels, ".") + ">"
	if len(p) != total {
		t.Fatalf("longPath(%d, %d) built %d octets", localLen, total, len(p))
	}
	return p
}

func TestParsePath(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		allowNull bool
		want      Address
		rest      string
		err       error
	}{
		// Ordinary addresses.
		{name: "a plain address parses", in: "<user@example.com>", want: Address{Local: "user", Domain: "example.com"}},
		{name: "a dotted local part parses", in: "<first.last+tag@mail.example.com>", want: Address{Local: "first.last+tag", Domain: "mail.example.com"}},
		{name: "an upper-case domain is lower-cased and the local part kept", in: "<User@EXAMPLE.Com>", want: Address{Local: "User", Domain: "example.com"}},
		{name: "all atext specials are allowed unquoted", in: "<!#$%&'*+-/=?^_`{|}~@example.com>", want: Address{Local: "!#$%&'*+-/=?^_`{|}~", Domain: "example.com"}},

		// The null path.
		{name: "the null path is allowed as a reverse path", in: "<>", allowNull: true, want: Address{}},
		{name: "the null path is refused as a forward path", in: "<>", err: ErrPathSyntax},
		{name: "parameters after the null path are returned", in: "<> SIZE=10", allowNull: true, rest: "SIZE=10"},
		{name: "the null path with garbage after it is refused", in: "<>x", allowNull: true, err: ErrPathSyntax},

		// Source routes (RFC 5321 4.1.1.3, appendix C): accepted and dropped.
		{name: "a two-hop source route is dropped", in: "<@a.example,@b.example:u@c.example>", want: Address{Local: "u", Domain: "c.example"}},
		{name: "a one-hop source route is dropped", in: "<@a.example:u@c.example>", want: Address{Local: "u", Domain: "c.example"}},
		{name: "a source route before a quoted local part is dropped", in: `<@a.example:"x:y"@c.example>`, want: Address{Local: "x:y", Domain: "c.example"}},
		{name: "a source route without a colon is refused", in: "<@a.example,u@c.example>", err: ErrPathSyntax},
		{name: "a source route hop without an at sign is refused", in: "<@a.example,b.example:u@c.example>", err: ErrPathSyntax},
		{name: "a source route with a bad domain is refused", in: "<@a_b.example:u@c.example>", err: ErrPathSyntax},
		{name: "an empty source route is refused", in: "<@:u@c.example>", err: ErrPathSyntax},
		{name: "a source route without a mailbox is refused", in: "<@a.example:>", err: ErrPathSyntax},
		{name: "a domain without a local part is refused", in: "<@example.com>", err: ErrPathSyntax},

		// Quoted local parts.
		{name: "an at sign inside a quoted local part is kept", in: `<"a@b"@example.com>`, want: Address{Local: "a@b", Domain: "example.com"}},
		{name: "spaces inside a quoted local part are kept", in: `<"john smith"@example.com>`, want: Address{Local: "john smith", Domain: "example.com"}},
		{name: "an escaped quote is unescaped", in: `<"a\"b"@example.com>`, want: Address{Local: `a"b`, Domain: "example.com"}},
		{name: "an escaped backslash is unescaped", in: `<"a\\b"@example.com>`, want: Address{Local: `a\b`, Domain: "example.com"}},
		{name: "an escaped ordinary character is unescaped", in: `<"\a"@example.com>`, want: Address{Local: "a", Domain: "example.com"}},
		{name: "a closing bracket inside quotes does not end the path", in: `<"a>b"@example.com> SIZE=1`, want: Address{Local: "a>b", Domain: "example.com"}, rest: "SIZE=1"},
		{name: "unnecessary quotes are removed", in: `<"abc"@example.com>`, want: Address{Local: "abc", Domain: "example.com"}},
		{name: "consecutive dots are allowed in quotes", in: `<"a..b"@example.com>`, want: Address{Local: "a..b", Domain: "example.com"}},
		{name: "UTF-8 in a quoted local part is allowed", in: `<"ü ü"@example.com>`, want: Address{Local: "ü ü", Domain: "example.com"}},
		{name: "an empty quoted local part is refused", in: `<""@example.com>`, err: ErrPathSyntax},
		{name: "an unterminated quoted local part is refused", in: `<"abc@example.com>`, err: ErrPathSyntax},
		{name: "text after the closing quote is refused", in: `<"a"b@example.com>`, err: ErrPathSyntax},
		{name: "a control character in quotes is refused", in: "<\"a\x01b\"@example.com>", err: ErrPathSyntax},
		{name: "a DEL in quotes is refused", in: "<\"a\x7fb\"@example.com>", err: ErrPathSyntax},
		{name: "an escaped control character is refused", in: "<\"a\\\x01\"@example.com>", err: ErrPathSyntax},
		{name: "an escaped non-ASCII octet is refused", in: "<\"a\\ü\"@example.com>", err: ErrPathSyntax},
		{name: "a tab in quotes is refused", in: "<\"a\tb\"@example.com>", err: ErrPathSyntax},

		// Old relaying syntaxes are just local parts.
		{name: "the percent hack parses as a plain local part", in: "<a%b@local.example>", want: Address{Local: "a%b", Domain: "local.example"}},
		{name: "a bang path parses as a plain local part", in: "<b!a@local.example>", want: Address{Local: "b!a", Domain: "local.example"}},

		// Address literals.
		{name: "an IPv4 literal parses", in: "<u@[192.0.2.1]>", want: Address{Local: "u", Domain: "[192.0.2.1]"}},
		{name: "an IPv6 literal parses", in: "<u@[IPv6:2001:db8::1]>", want: Address{Local: "u", Domain: "[IPv6:2001:db8::1]"}},
		{name: "an IPv6 literal is normalised", in: "<u@[IPv6:2001:DB8:0:0:0:0:0:1]>", want: Address{Local: "u", Domain: "[IPv6:2001:db8::1]"}},
		{name: "the IPv6 tag is case-insensitive", in: "<u@[ipv6:2001:db8::1]>", want: Address{Local: "u", Domain: "[IPv6:2001:db8::1]"}},
		{name: "an IPv4-mapped IPv6 literal parses", in: "<u@[IPv6:::ffff:192.0.2.1]>", want: Address{Local: "u", Domain: "[IPv6:::ffff:192.0.2.1]"}},
		{name: "an IPv6 literal without its tag is refused", in: "<u@[2001:db8::1]>", err: ErrDomainSyntax},
		{name: "an IPv4 address under the IPv6 tag is refused", in: "<u@[IPv6:192.0.2.1]>", err: ErrDomainSyntax},
		{name: "an IPv4 literal with leading zeros is refused", in: "<u@[192.0.2.01]>", err: ErrDomainSyntax},
		{name: "an IPv4 literal with three octets is refused", in: "<u@[192.0.2]>", err: ErrDomainSyntax},
		{name: "an IPv6 literal with a zone is refused", in: "<u@[IPv6:fe80::1%eth0]>", err: ErrDomainSyntax},
		{name: "an IPv6 zone holding a space is refused", in: "<u@[IPv6:fe80::1%a b]>", err: ErrDomainSyntax},
		{name: "an IPv6 zone holding a tab is refused", in: "<u@[IPv6:fe80::1%\t]>", err: ErrDomainSyntax},
		{name: "a general address literal is refused", in: "<u@[x400:foo]>", err: ErrDomainSyntax},
		{name: "a host name in brackets is refused", in: "<u@[example.com]>", err: ErrDomainSyntax},
		{name: "an unclosed literal is refused", in: "<u@[192.0.2.1>", err: ErrDomainSyntax},
		{name: "an empty literal is refused", in: "<u@[]>", err: ErrDomainSyntax},

		// Domains.
		{name: "a trailing dot in the domain is refused", in: "<u@example.com.>", err: ErrTrailingDot},
		{name: "an IDN domain becomes A-labels", in: "<u@bücher.example>", want: Address{Local: "u", Domain: "xn--bcher-kva.example"}},
		{name: "an upper-case IDN domain becomes lower-case A-labels", in: "<u@BÜCHER.example>", want: Address{Local: "u", Domain: "xn--bcher-kva.example"}},
		{name: "an A-label domain is kept", in: "<u@xn--mnchen-3ya.de>", want: Address{Local: "u", Domain: "xn--mnchen-3ya.de"}},
		{name: "an IDN that breaks the hyphen rules is refused", in: "<u@ü-.example>", err: ErrDomainSyntax},
		{name: "an underscore in the domain is refused", in: "<u@ex_ample.com>", err: ErrDomainSyntax},
		{name: "a label starting with a hyphen is refused", in: "<u@-x.example>", err: ErrDomainSyntax},
		{name: "a label ending with a hyphen is refused", in: "<u@x-.example>", err: ErrDomainSyntax},
		{name: "an empty label is refused", in: "<u@a..example>", err: ErrDomainSyntax},
		{name: "a label of 63 octets is allowed", in: "<u@" + strings.Repeat("a", 63) + ".example>", want: Address{Local: "u", Domain: strings.Repeat("a", 63) + ".example"}},
		{name: "a label of 64 octets is refused", in: "<u@" + strings.Repeat("a", 64) + ".example>", err: ErrDomainSyntax},
		{name: "an empty domain is refused", in: "<u@>", err: ErrDomainSyntax},
		{name: "an ideographic full stop at the end is refused", in: "<u@example。>", err: ErrDomainSyntax},

		// UTF-8 local parts (RFC 6531).
		{name: "a UTF-8 local part parses", in: "<ü@example.com>", want: Address{Local: "ü", Domain: "example.com"}},
		{name: "a UTF-8 local part with an IDN domain parses", in: "<jörg@münchen.de>", want: Address{Local: "jörg", Domain: "xn--mnchen-3ya.de"}},
		{name: "invalid UTF-8 in the local part is refused", in: "<\xff@example.com>", err: ErrPathSyntax},
		{name: "invalid UTF-8 in the domain is refused", in: "<u@ex\xffample.com>", err: ErrPathSyntax},

		// Local part syntax.
		{name: "a leading dot is refused", in: "<.a@example.com>", err: ErrPathSyntax},
		{name: "a trailing dot in the local part is refused", in: "<a.@example.com>", err: ErrPathSyntax},
		{name: "consecutive dots are refused unquoted", in: "<a..b@example.com>", err: ErrPathSyntax},
		{name: "a space in an unquoted local part is refused", in: "<a b@example.com>", err: ErrPathSyntax},
		{name: "two at signs are refused", in: "<a@b@example.com>", err: ErrPathSyntax},
		{name: "a local part without a domain is refused", in: "<user>", err: ErrPathSyntax},
		{name: "a bare postmaster is refused by the parser", in: "<postmaster>", err: ErrPathSyntax},

		// Lengths (RFC 5321 4.5.3.1).
		{name: "a local part of 64 octets is allowed", in: "<" + strings.Repeat("a", 64) + "@example.com>", want: Address{Local: strings.Repeat("a", 64), Domain: "example.com"}},
		{name: "a local part of 65 octets is refused", in: "<" + strings.Repeat("a", 65) + "@example.com>", err: ErrLocalTooLong},
		{name: "an SRS local part of 150 octets is allowed", in: "<SRS0=HHHHHHHH=TT=" + strings.Repeat("b", 132) + "@example.com>", want: Address{Local: "SRS0=HHHHHHHH=TT=" + strings.Repeat("b", 132), Domain: "example.com"}},
		{name: "an SRS local part of 201 octets is refused", in: "<SRS0=" + strings.Repeat("b", 196) + "@example.com>", err: ErrLocalTooLong},
		{name: "a quoted local part of 64 octets is allowed", in: `<"` + strings.Repeat(" ", 64) + `"@example.com>`, want: Address{Local: strings.Repeat(" ", 64), Domain: "example.com"}},
		{name: "a quoted local part of 65 octets is refused", in: `<"` + strings.Repeat(" ", 65) + `"@example.com>`, err: ErrLocalTooLong},

		// Brackets and what follows them.
		{name: "a path without brackets is refused", in: "user@example.com", err: ErrPathSyntax},
		{name: "a path without its closing bracket is refused", in: "<user@example.com", err: ErrPathSyntax},
		{name: "a path without its opening bracket is refused", in: "user@example.com>", err: ErrPathSyntax},
		{name: "a space before the opening bracket is refused", in: " <user@example.com>", err: ErrPathSyntax},
		{name: "doubled brackets are refused", in: "<<user@example.com>>", err: ErrPathSyntax},
		{name: "garbage right after the closing bracket is refused", in: "<user@example.com>x", err: ErrPathSyntax},
		{name: "a second closing bracket is refused", in: "<user@example.com>>", err: ErrPathSyntax},
		{name: "a tab after the closing bracket is refused", in: "<user@example.com>\tSIZE=1", err: ErrPathSyntax},
		{name: "parameters after the closing bracket are returned", in: "<user@example.com> SIZE=100 BODY=8BITMIME", want: Address{Local: "user", Domain: "example.com"}, rest: "SIZE=100 BODY=8BITMIME"},
		{name: "extra spaces before the parameters are skipped", in: "<user@example.com>   SIZE=1", want: Address{Local: "user", Domain: "example.com"}, rest: "SIZE=1"},
		{name: "a trailing space leaves no parameters", in: "<user@example.com> ", want: Address{Local: "user", Domain: "example.com"}},
		{name: "an empty string is refused", in: "", err: ErrPathSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rest, err := ParsePath(tt.in, tt.allowNull)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("ParsePath(%q) error = %v, want %v", tt.in, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePath(%q) error = %v", tt.in, err)
			}
			if got != tt.want || rest != tt.rest {
				t.Errorf("ParsePath(%q) = %#v, %q, want %#v, %q", tt.in, got, rest, tt.want, tt.rest)
			}
		})
	}
}

func TestParsePathLengthLimit(t *testing.T) {
	tests := []struct {
		name string
		in   string
		err  error
	}{
		{name: "a path of 256 octets with its brackets is allowed", in: longPath(t, 64, 256)},
		{name: "a path of 257 octets is refused", in: longPath(t, 64, 257), err: ErrPathTooLong},
		{name: "a path of 258 octets is refused", in: longPath(t, 64, 258), err: ErrPathTooLong},
		{name: "a source route counts towards the limit", in: "<@a.example:" + longPath(t, 64, 256)[1:], err: ErrPathTooLong},
		{name: "a very long path is refused", in: "<" + strings.Repeat("a", 10000) + "@example.com>", err: ErrPathTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParsePath(tt.in, false)
			if !errors.Is(err, tt.err) {
				t.Errorf("ParsePath(%d octets) error = %v, want %v", len(tt.in), err, tt.err)
			}
		})
	}
}

func TestAddressMethods(t *testing.T) {
	tests := []struct {
		name                string
		addr                Address
		null, literal, utf8 bool
		str                 string
	}{
		{name: "the null address is null and prints empty", addr: Address{}, null: true},
		{name: "a plain address is plain", addr: Address{Local: "u", Domain: "example.com"}, str: "u@example.com"},
		{name: "an IPv4 literal domain is a literal", addr: Address{Local: "u", Domain: "[192.0.2.1]"}, literal: true, str: "u@[192.0.2.1]"},
		{name: "an IPv6 literal domain is a literal", addr: Address{Local: "u", Domain: "[IPv6:2001:db8::1]"}, literal: true, str: "u@[IPv6:2001:db8::1]"},
		{name: "a UTF-8 local part needs SMTPUTF8", addr: Address{Local: "jörg", Domain: "example.com"}, utf8: true, str: "jörg@example.com"},
		{name: "an A-label domain alone does not need SMTPUTF8", addr: Address{Local: "u", Domain: "xn--bcher-kva.example"}, str: "u@xn--bcher-kva.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.addr
			if a.IsNull() != tt.null || a.IsLiteral() != tt.literal || a.UTF8() != tt.utf8 || a.String() != tt.str {
				t.Errorf("%#v: IsNull=%v IsLiteral=%v UTF8=%v String=%q, want %v %v %v %q",
					a, a.IsNull(), a.IsLiteral(), a.UTF8(), a.String(), tt.null, tt.literal, tt.utf8, tt.str)
			}
		})
	}
}

func TestAddressStringRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   string // as the client sends it, inside the brackets
		str  string // String()
	}{
		{"a plain address prints as is", "u@example.com", "u@example.com"},
		{"unnecessary quotes are dropped", `"abc"@example.com`, "abc@example.com"},
		{"a quoted space is quoted again", `"john smith"@example.com`, `"john smith"@example.com`},
		{"a quoted at sign is quoted again", `"a@b"@example.com`, `"a@b"@example.com`},
		{"a quote is escaped again", `"a\"b"@example.com`, `"a\"b"@example.com`},
		{"a backslash is escaped again", `"a\\b"@example.com`, `"a\\b"@example.com`},
		{"an unnecessary escape is dropped", `"\a\b"@example.com`, "ab@example.com"},
		{"consecutive dots are quoted again", `"a..b"@example.com`, `"a..b"@example.com`},
		{"a leading dot is quoted again", `".a"@example.com`, `".a"@example.com`},
		{"a closing bracket is quoted again", `"a>b"@example.com`, `"a>b"@example.com`},
		{"a UTF-8 local part needs no quotes", "jörg@example.com", "jörg@example.com"},
		{"a quoted replacement character is quoted again", "\"\uFFFD\"@example.com", "\"\uFFFD\"@example.com"},
		{"an IPv6 literal prints normalised", "u@[IPv6:2001:DB8::0:1]", "u@[IPv6:2001:db8::1]"},
		{"an IDN prints as A-labels", "u@Bücher.Example", "u@xn--bcher-kva.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _, err := ParsePath("<"+tt.in+">", false)
			if err != nil {
				t.Fatalf("ParsePath(<%s>) error = %v", tt.in, err)
			}
			if s := a.String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
			b, err := ParseMailbox(a.String())
			if err != nil {
				t.Fatalf("ParseMailbox(%q) error = %v", a.String(), err)
			}
			if b != a {
				t.Errorf("ParseMailbox(%q) = %#v, want %#v", a.String(), b, a)
			}
		})
	}
}

func TestParseMailbox(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Address
		err  error
	}{
		{name: "a mailbox without brackets parses", in: "postmaster@Example.COM", want: Address{Local: "postmaster", Domain: "example.com"}},
		{name: "brackets are not part of a mailbox", in: "<u@example.com>", err: ErrPathSyntax},
		{name: "a source route is not part of a mailbox", in: "@a.example:u@example.com", err: ErrPathSyntax},
		{name: "an empty string is refused", in: "", err: ErrPathSyntax},
		{name: "a missing local part is refused", in: "@example.com", err: ErrPathSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMailbox(tt.in)
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Errorf("ParseMailbox(%q) = %#v, %v, want %#v, %v", tt.in, got, err, tt.want, tt.err)
			}
		})
	}
}

func TestNormalizeDomain(t *testing.T) {
	tests := []struct {
		name, in, want string
		err            error
	}{
		{name: "a domain is lower-cased", in: "Mail.Example.COM", want: "mail.example.com"},
		{name: "an IDN becomes A-labels", in: "münchen.de", want: "xn--mnchen-3ya.de"},
		{name: "an address literal is not a domain", in: "[192.0.2.1]", err: ErrDomainSyntax},
		{name: "a trailing dot is refused", in: "example.com.", err: ErrTrailingDot},
		{name: "an empty domain is refused", in: "", err: ErrDomainSyntax},
		{name: "a space is refused", in: "exa mple.com", err: ErrDomainSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeDomain(tt.in)
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Errorf("NormalizeDomain(%q) = %q, %v, want %q, %v", tt.in, got, err, tt.want, tt.err)
			}
		})
	}
}
