package smtp

import (
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Address is a mailbox (RFC 5321 4.1.2): a local part and a domain. The
// domain is lower case ASCII (A-labels for IDNs) or an address literal in
// brackets; the local part is kept as sent, without quotes.
type Address struct {
	Local  string
	Domain string
}

// String returns the address in the form used in logs and headers.
func (a Address) String() string {
	if a.Local == "" && a.Domain == "" {
		return ""
	}
	return quoteLocal(a.Local) + "@" + a.Domain
}

// IsNull reports whether a is the null reverse-path <>.
func (a Address) IsNull() bool { return a.Local == "" && a.Domain == "" }

// IsLiteral reports whether the domain is an address literal like [192.0.2.1].
func (a Address) IsLiteral() bool { return strings.HasPrefix(a.Domain, "[") }

// UTF8 reports whether the address needs SMTPUTF8 (RFC 6531).
func (a Address) UTF8() bool { return !IsASCII(a.Local) }

// Path errors, each with its reply.
var (
	ErrPathSyntax    = &Reply{Code: 501, Enhanced: "5.1.3", Text: "Syntax error in address: use <local@domain>"}
	ErrDomainSyntax  = &Reply{Code: 501, Enhanced: "5.1.2", Text: "Syntax error in the domain of the address"}
	ErrLocalTooLong  = &Reply{Code: 501, Enhanced: "5.1.3", Text: "The local part of the address is longer than 64 octets"}
	ErrPathTooLong   = &Reply{Code: 501, Enhanced: "5.1.3", Text: "The address is longer than 256 octets"}
	ErrTrailingDot   = &Reply{Code: 501, Enhanced: "5.1.2", Text: "The domain of the address must not end with a dot"}
	ErrNeedsSMTPUTF8 = &Reply{Code: 553, Enhanced: "5.6.7", Text: "This address needs SMTPUTF8: give the SMTPUTF8 parameter in MAIL FROM"}
)

// ParsePath parses a reverse-path or forward-path with its angle brackets
// and returns the address and whatever follows the closing bracket (the
// ESMTP parameters). A source route (<@a,@b:x@y>) is accepted and dropped,
// as RFC 5321 4.1.1.3 and appendix C require. The null path <> is allowed
// only when allowNull is set.
func ParsePath(s string, allowNull bool) (Address, string, error) {
	if !strings.HasPrefix(s, "<") {
		return Address{}, "", ErrPathSyntax
	}
	end := closingBracket(s)
	if end < 0 {
		return Address{}, "", ErrPathSyntax
	}
	inner, rest := s[1:end], s[end+1:]
	if rest != "" && rest[0] != ' ' {
		return Address{}, "", ErrPathSyntax
	}
	rest = strings.TrimLeft(rest, " ")
	if inner == "" {
		if !allowNull {
			return Address{}, "", ErrPathSyntax
		}
		return Address{}, rest, nil
	}
	if end+1 > 256 { // RFC 5321 4.5.3.1.3: 256 octets with the brackets
		return Address{}, "", ErrPathTooLong
	}
	if inner[0] == '@' { // A-d-l ":" Mailbox
		colon := strings.IndexByte(inner, ':')
		if colon < 0 || !validRoute(inner[:colon]) {
			return Address{}, "", ErrPathSyntax
		}
		inner = inner[colon+1:]
	}
	a, err := ParseMailbox(inner)
	return a, rest, err
}

// closingBracket finds the '>' that ends the path, skipping any inside a
// quoted local part.
func closingBracket(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == '>':
			return i
		}
	}
	return -1
}

func validRoute(adl string) bool {
	for _, d := range strings.Split(adl, ",") {
		if !strings.HasPrefix(d, "@") || validateDomain(d[1:]) != nil {
			return false
		}
	}
	return true
}

// ParseMailbox parses local@domain (RFC 5321 4.1.2 Mailbox), with UTF-8
// allowed per RFC 6531; the caller checks SMTPUTF8 with Address.UTF8.
func ParseMailbox(s string) (Address, error) {
	if !utf8.ValidString(s) {
		return Address{}, ErrPathSyntax
	}
	local, rest, err := parseLocal(s)
	if err != nil {
		return Address{}, err
	}
	if !strings.HasPrefix(rest, "@") {
		return Address{}, ErrPathSyntax
	}
	domain, err := normalizeDomain(rest[1:])
	if err != nil {
		return Address{}, err
	}
	return Address{Local: local, Domain: domain}, nil
}

// parseLocal reads a Dot-string or Quoted-string local part and returns it
// unquoted, with the rest of s.
func parseLocal(s string) (string, string, error) {
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			c := s[i]
			switch {
			case c == '\\':
				if i+1 >= len(s) || s[i+1] < 32 || s[i+1] > 126 {
					return "", "", ErrPathSyntax
				}
				i++
				b.WriteByte(s[i])
			case c == '"':
				if b.Len() == 0 {
					return "", "", ErrPathSyntax
				}
				if b.Len() > 64 {
					return "", "", ErrLocalTooLong
				}
				return b.String(), s[i+1:], nil
			case c >= 32 && c != 127 || c >= 0x80:
				b.WriteByte(c)
			default:
				return "", "", ErrPathSyntax
			}
		}
		return "", "", ErrPathSyntax
	}
	i := strings.LastIndexByte(s, '@')
	if i <= 0 {
		return "", "", ErrPathSyntax
	}
	local := s[:i]
	if len(local) > maxLocal(local) {
		return "", "", ErrLocalTooLong
	}
	for _, atom := range strings.Split(local, ".") {
		if atom == "" {
			return "", "", ErrPathSyntax
		}
		for _, r := range atom {
			if !isAtext(r) {
				return "", "", ErrPathSyntax
			}
		}
	}
	return local, s[i:], nil
}

// isAtext reports whether r is atext (RFC 5322 3.2.3) or UTF-8 (RFC 6532).
func isAtext(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	case r >= 0x80:
		return r != utf8.RuneError
	}
	return strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)
}

// normalizeDomain checks a Domain or address-literal and returns it in
// canonical form: lower case, IDNs as A-labels, literals as [ip].
func normalizeDomain(d string) (string, error) {
	if strings.HasPrefix(d, "[") {
		if !strings.HasSuffix(d, "]") {
			return "", ErrDomainSyntax
		}
		lit := d[1 : len(d)-1]
		if tag, v6, ok := strings.Cut(lit, ":"); ok && strings.EqualFold(tag, "IPv6") {
			// A zone ("%eth0") has no meaning off the host and may hold
			// any octet, so it is refused.
			ip, err := netip.ParseAddr(v6)
			if err != nil || !ip.Is6() || ip.Zone() != "" {
				return "", ErrDomainSyntax
			}
			return "[IPv6:" + ip.String() + "]", nil
		}
		ip, err := netip.ParseAddr(lit)
		if err != nil || !ip.Is4() {
			return "", ErrDomainSyntax
		}
		return "[" + ip.String() + "]", nil
	}
	if strings.HasSuffix(d, ".") {
		return "", ErrTrailingDot
	}
	if !IsASCII(d) {
		a, err := idna.Lookup.ToASCII(d)
		if err != nil {
			return "", ErrDomainSyntax
		}
		d = a
	}
	d = strings.ToLower(d)
	if err := validateDomain(d); err != nil {
		return "", err
	}
	return d, nil
}

// validateDomain checks an ASCII domain: LDH labels of 1 to 63 octets.
func validateDomain(d string) error {
	if d == "" || len(d) > 253 {
		return ErrDomainSyntax
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return ErrDomainSyntax
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return ErrDomainSyntax
			}
		}
	}
	return nil
}

// NormalizeHelo canonicalises the name a client gives with EHLO or HELO: a
// domain (A-labels, lower case) or an address literal (RFC 5321 4.1.1.1);
// anything else is an error.
func NormalizeHelo(name string) (string, error) { return normalizeDomain(name) }

// NormalizeDomain canonicalises a domain name given by an administrator.
func NormalizeDomain(d string) (string, error) {
	if strings.HasPrefix(d, "[") {
		return "", ErrDomainSyntax
	}
	return normalizeDomain(d)
}

func quoteLocal(l string) string {
	for _, atom := range strings.Split(l, ".") {
		ok := atom != ""
		for _, r := range atom {
			ok = ok && isAtext(r)
		}
		if !ok {
			return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(l) + `"`
		}
	}
	return l
}

// IsASCII reports whether s has no octet over 127.
func IsASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// maxLocal is how long a local part may be: RFC 5321's 64 octets, and 200
// for an SRS address (a forwarder's rewriting of a sender, often longer:
// RFC 5321 4.5.3.1 asks to accept larger objects where possible).
func maxLocal(local string) int {
	if len(local) > 5 && (strings.EqualFold(local[:5], "SRS0=") || strings.EqualFold(local[:5], "SRS1=")) {
		return 200
	}
	return 64
}
